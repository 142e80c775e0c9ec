"""The ``toolkit sweep --status DIR`` table: every training and cell with its state, job, log and score."""
from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .failures import error_summary
from .state import SweepState, mark_finished_on_disk

COLOURS = {"done": "green", "running": "cyan", "failed": "red", "lost": "yellow", "pending": "white"}


def status_table(spec, state: SweepState, alive=None, submitter: bool | None = None) -> Table:
    """A rich Table of trainings and cells: name, bindings, state, job id, log, vocal cSDR.

    ``alive(job_id) -> bool | None`` tells whether a recorded running job still lives
    (None: unknown); a running record whose job is gone, or that ran inside a submitter
    that is gone (``submitter`` False), shows as ``lost``.
    """
    mark_finished_on_disk(spec, state, save=False)  # read-only: the submitter is the one writer
    cluster = state.data.get("cluster")
    table = Table(title=f"sweep {spec.out} ({state.data.get('launcher') or 'not launched'}"
                        f"{', ' + cluster if cluster else ''})")
    for col in ("cell", "bindings", "state", "job id", "log", "vocal cSDR / error"):
        table.add_column(col, overflow="fold")

    def shown(entry):
        st = entry.get("state", "pending")
        if st == "running":
            if entry.get("job_id") and alive and alive(entry["job_id"]) is False:
                st = "lost"
            elif not entry.get("job_id") and submitter is False:
                st = "lost"
        return f"[{COLOURS.get(st, 'white')}]{st}[/]"

    seen = set()
    for cell in spec.cells:
        if cell.train_key in seen:
            continue
        seen.add(cell.train_key)
        e = state.entry("trainings", cell.train_key)
        table.add_row(f"train/{cell.train_key}", _bindings_text(cell.train_bindings) or "(base)", shown(e),
                      str(e.get("job_id") or "-"), _short(e.get("log"), spec.out), "")
    for cell in spec.cells:
        e = state.entry("cells", cell.name)
        sdr = ""
        results = spec.cell_dir(cell) / "results.json"
        if results.exists():
            voc = json.loads(results.read_text()).get("scores", {}).get("vocals", {}).get("SDR")
            sdr = f"{voc:+.3f}" if voc is not None else ""
        elif e.get("state") == "failed":
            sdr = f"[red]{escape(error_summary(e.get('error', ''))[:100])}[/]"
        table.add_row(cell.name, _bindings_text(cell.bindings), shown(e), str(e.get("job_id") or "-"),
                      _short(e.get("log"), spec.out), sdr)
    return table


def _short(path, out) -> str:
    """A log path relative to the sweep folder when it lies inside it."""
    if not path:
        return "-"
    try:
        return str(Path(path).resolve().relative_to(Path(out).resolve()))
    except ValueError:
        return str(path)


def _bindings_text(bindings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in bindings.items())
