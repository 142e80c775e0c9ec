"""What a launcher's job runs: one training or one cell of a sweep."""
from __future__ import annotations

import torch

from .. import sweep


def run_job(kind: str, spec, cell, threads: int | None = None) -> str:
    """Entry point of a launcher's job: ``"train"`` (``sweep.run_training``) or ``"cell"`` (``sweep.run_cell``).

    A top-level core function, so pickled jobs find it by reference in the worker. ``threads``
    caps torch's intra-op threads (jobs sharing a machine would otherwise oversubscribe it).
    Returns the training's run folder or the cell's ``results.json``.
    """
    if threads:
        torch.set_num_threads(int(threads))
    if kind == "train":
        return str(sweep.run_training(spec, cell))
    sweep.run_cell(spec, cell)
    return str(spec.cell_dir(cell) / "results.json")
