"""``DIR/state.json``: per training (by train key) and per cell (by name) its launcher state.

Each record holds ``state`` (pending, running, done, failed), ``job_id``,
``log`` and, for failures, ``error`` (the log's last lines). One writer, the
submitting process, with atomic writes. The truth of "done" stays on disk
beside the runs: ``train/<key>/run.json`` and ``cells/<cell>/results.json``.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..errors import UserError
from ..io_utils import atomic_write_text


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
