"""Sweep launchers: what runs a sweep's cells, and the state a sweep keeps on disk.

A launcher is any class registered under the ``launchers`` kind whose
keyword-only ``__init__`` arguments are its parameters (``--launcher-param
KEY=VALUE``, converted with the annotation) and which has
``launch(spec, state, console)``: run the cells of a :class:`~toolkit.sweep.SweepSpec`,
recording each training and cell in ``state``. Built-ins: ``local`` (in
process, one after another) and ``submitit`` (Slurm jobs, or local processes
without Slurm). A plugin adds one (e.g. Ray) with one file::

    @registry.register("launchers", "ray")
    class RayLauncher:
        def __init__(self, *, address: str = "auto"): ...
        def launch(self, spec, state, console): ...   # sweep.run_training / sweep.run_cell per cell
        @staticmethod
        def job_alive(job_id, state: dict) -> bool | None: ...  # optional: --status tells lost jobs

``DIR/state.json`` (one writer: the submitting process, atomic writes) holds,
per training (by train key) and per cell (by name): ``state`` (pending,
running, done, failed), ``job_id``, ``log`` and, for failures, ``error`` (the
log's last lines). The truth of "done" stays on disk beside the runs:
``train/<key>/run.json`` and ``cells/<cell>/results.json``.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import typing
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from . import registry
from .errors import UserError
from .io_utils import atomic_write_text

# ----------------------------------------------------------------------------- choosing a launcher

def launcher_params(cls) -> dict[str, type]:
    """``{name: type}`` of a launcher's keyword parameters (from ``__init__``'s annotations)."""
    init = getattr(cls, "__wrapped__", cls).__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that cannot be evaluated: treat the value as text
        hints = {}
    params = {}
    for name, p in inspect.signature(init).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(name, str)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        params[name] = args[0] if args else hint
    return params


def _convert(launcher: str, key: str, text: str, kind: type):
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
    elif kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    else:
        return text
    example = {bool: "true", int: "2", float: "0.5"}.get(kind, "...")
    raise UserError(f"--launcher-param {key}={text}: launcher '{launcher}' needs {'an' if kind is int else 'a'} {kind.__name__} for {key} "
                    f"(e.g. {key}={example})")


def make_launcher(name: str, params=()):
    """The launcher registered as ``name``, built from ``KEY=VALUE`` strings; bad names or keys raise UserError."""
    registry.load_builtin_plugins()
    cls = registry.get("launchers", name)
    known = launcher_params(cls)
    kwargs = {}
    for item in params:
        if "=" not in item:
            raise UserError(f"--launcher-param {item}: expected KEY=VALUE (e.g. max_parallel=2)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in known:
            raise UserError(f"--launcher-param {key}: unknown parameter of launcher '{name}';"
                            f"{registry.suggest(key, known)} known: {', '.join(sorted(known)) or '(none)'}")
        kwargs[key] = _convert(name, key, value, known[key])
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise UserError(f"--launcher {name}: {str(exc).splitlines()[0]}") from exc


# ----------------------------------------------------------------------------- the state file

class SweepState:
    """``DIR/state.json``: per training and per cell, ``{state, job_id, log, error, ...}``."""

    def __init__(self, out, data: dict | None = None):
        self.path = Path(out) / "state.json"
        self.data = data or {"launcher": None, "trainings": {}, "cells": {}}

    @classmethod
    def load(cls, out) -> "SweepState":
        path = Path(out) / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = None
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); delete it and re-run the sweep (finished cells are kept)") from exc
        return cls(out, data)

    def entry(self, kind: str, key: str) -> dict:
        """The record of a training (kind ``trainings``) or cell (kind ``cells``); created pending."""
        return self.data.setdefault(kind, {}).setdefault(key, {"state": "pending", "job_id": None, "log": None})

    def set(self, kind: str, key: str, **fields) -> dict:
        entry = self.entry(kind, key)
        entry.update(fields)
        if fields.get("state") in ("done", "failed"):
            entry["finished"] = datetime.now().isoformat(timespec="seconds")
        elif fields.get("state") == "running":
            entry.pop("error", None)
        self.save()
        return entry

    def save(self) -> None:
        self.data["updated"] = datetime.now().isoformat(timespec="seconds")
        atomic_write_text(self.path, json.dumps(self.data, indent=2))

    def failures(self, spec) -> list[dict]:
        """One record per failed cell (a failed training fails each of its cells)."""
        out = []
        for cell in spec.cells:
            entry = self.data.get("cells", {}).get(cell.name, {})
            if entry.get("state") == "failed":
                out.append({"cell": cell.name, "bindings": cell.bindings, "job_id": entry.get("job_id"),
                            "log": entry.get("log"), "error": entry.get("error", "")})
        return out


def mark_finished_on_disk(spec, state: SweepState, save: bool = True) -> None:
    """Set trainings with ``run.json`` and cells with ``results.json`` to done (the files are the truth)."""
    for key in dict.fromkeys(c.train_key for c in spec.cells):
        if (spec.train_dir(key) / "run.json").exists() and state.entry("trainings", key)["state"] != "done":
            state.entry("trainings", key)["state"] = "done"
    for cell in spec.cells:
        state.entry("cells", cell.name)["train_key"] = cell.train_key
        if (spec.cell_dir(cell) / "results.json").exists():
            state.entry("cells", cell.name)["state"] = "done"
    if save:
        state.save()


def write_failures(spec, state: SweepState) -> list[dict]:
    """``DIR/failures.json`` (an empty list when every cell finished); returns the records."""
    records = state.failures(spec)
    atomic_write_text(Path(spec.out) / "failures.json", json.dumps(records, indent=2))
    return records


def failures_markdown(records: list[dict]) -> str:
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


def log_tail(path, lines: int = 12) -> str:
    """The last ``lines`` non-empty lines of a log file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


# ----------------------------------------------------------------------------- one submitter per folder

@contextmanager
def submitter_lock(out):
    """Hold ``DIR/.submitter.lock`` while launching: a second ``toolkit sweep`` on DIR stops with a UserError.

    An flock dies with its process (even SIGKILL), so a stale lock never blocks a re-run.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard
        yield
        return
    path = Path(out) / ".submitter.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise UserError(f"{out}: another `toolkit sweep` (pid {pid}) is running this sweep; "
                            f"watch it with `toolkit sweep --status {out}`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def submitter_running(out) -> bool | None:
    """Whether a ``toolkit sweep`` process holds DIR's lock now (None where that cannot be told)."""
    try:
        import fcntl
    except ImportError:
        return None
    path = Path(out) / ".submitter.lock"
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


# ----------------------------------------------------------------------------- what a job runs

def run_job(kind: str, spec, cell, threads: int | None = None) -> str:
    """Entry point of a launcher's job: ``"train"`` (``sweep.run_training``) or ``"cell"`` (``sweep.run_cell``).

    A top-level core function, so pickled jobs find it by reference in the worker. ``threads``
    caps torch's intra-op threads (jobs sharing a machine would otherwise oversubscribe it).
    """
    from . import sweep

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if kind == "train":
        return str(sweep.run_training(spec, cell))
    sweep.run_cell(spec, cell)
    return str(spec.cell_dir(cell) / "results.json")


# ----------------------------------------------------------------------------- --status

def status_table(spec, state: SweepState, alive=None, submitter: bool | None = None):
    """A rich Table of trainings and cells: name, bindings, state, job id, log, vocal SDR.

    ``alive(job_id) -> bool | None`` tells whether a recorded running job still lives
    (None: unknown); a running record whose job is gone, or that ran inside a submitter
    that is gone (``submitter`` False), shows as ``lost``.
    """
    from rich.markup import escape
    from rich.table import Table

    mark_finished_on_disk(spec, state, save=False)  # read-only: the submitter is the one writer
    cluster = state.data.get("cluster")
    table = Table(title=f"sweep {spec.out} ({state.data.get('launcher') or 'not launched'}"
                        f"{', ' + cluster if cluster else ''})")
    for col in ("cell", "bindings", "state", "job id", "log", "vocal SDR / error"):
        table.add_column(col, overflow="fold")
    colours = {"done": "green", "running": "cyan", "failed": "red", "lost": "yellow", "pending": "white"}

    def shown(entry):
        st = entry.get("state", "pending")
        if st == "running":
            if entry.get("job_id") and alive and alive(entry["job_id"]) is False:
                st = "lost"
            elif not entry.get("job_id") and submitter is False:
                st = "lost"
        return f"[{colours.get(st, 'white')}]{st}[/]"

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
