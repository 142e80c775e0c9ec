"""Failed cells: ``DIR/failures.json``, the failed-cells section of ``results.md``, and log tails."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..io_utils import atomic_write_text


def failure_records(spec, state) -> list[dict]:
    """One record per failed cell of ``state`` (a failed training fails each of its cells)."""
    out = []
    for cell in spec.cells:
        entry = state.data.get("cells", {}).get(cell.name, {})
        if entry.get("state") == "failed":
            out.append({"cell": cell.name, "bindings": cell.bindings, "job_id": entry.get("job_id"),
                        "log": entry.get("log"), "error": entry.get("error", "")})
    return out


def write_failures(spec, state) -> list[dict]:
    """``DIR/failures.json`` (an empty list when every cell finished); returns the records."""
    records = failure_records(spec, state)
    atomic_write_text(Path(spec.out) / "failures.json", json.dumps(records, indent=2))
    return records


def failures_markdown(records: list[dict]) -> str:
    """The ``## Failed cells`` section appended to ``results.md``: one line per failed cell."""
    lines = ["", f"## Failed cells ({len(records)})", "",
             "Each failed while the others went on; details in `failures.json` and the logs.", ""]
    for r in records:
        lines.append(f"- `{r['cell']}` (job {r.get('job_id') or '-'}, log `{r.get('log') or '-'}`): "
                     f"{error_summary(r.get('error', ''))}")
    return "\n".join(lines) + "\n"


def error_summary(error: str) -> str:
    """The line of a traceback or log tail that names the exception (``RuntimeError: ...``), else its last line."""
    lines = [ln.rstrip() for ln in (error or "").splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Interrupted|Exit)\b.*?:", line):
            return line
    return lines[-1].strip() if lines else "no error text"


def text_tail(text: str, lines: int = 12) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def log_tail(path, lines: int = 12) -> str:
    """The last ``lines`` non-empty lines of a log file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))  # the tail is all we show: skip the rest of a long log
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text_tail(text, lines)
