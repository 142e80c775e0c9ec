"""The data a run reads: the root named by ``--data`` or ``$MUSDB_PATH``, checked up front, and its audio cache.

``--data ROOT`` binds the chosen dataset's ``root`` (every dataset plugin
takes one), so any experiment, the quickstart's synthetic one included,
trains, validates and evaluates on ROOT; the experiment's extra
``evaluation_sets`` are dropped, since the run is pointed at ROOT alone.
``$MUSDB_PATH`` does the same (keeping ``evaluation_sets``) unless the gin
files or ``--gin_param`` bind a root themselves.
"""
from __future__ import annotations

import os
from pathlib import Path

import gin
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import config, parts, registry
from .data import open_db, prepare_cache, resolve_root, track_ref
from .errors import UserError
from .final_eval import evaluation_roots


def _bound_dataset():
    """``Experiment.dataset`` of the parsed config (a name or a configurable reference)."""
    try:
        return gin.query_parameter("Experiment.dataset")
    except ValueError:  # not bound: Experiment's default
        return "musdb"


def data_bindings(files, bindings, plugins, data=None) -> tuple[list[str], dict | None]:
    """:func:`root_bindings` of the config that ``files`` and ``bindings`` make (parsed, then cleared)."""
    config.parse(files, bindings, plugins)
    try:
        return root_bindings(data)
    finally:
        gin.clear_config()


def root_bindings(data=None) -> tuple[list[str], dict | None]:
    """``(bindings to add to the parsed config, {'dataset', 'root', 'source'} or None)`` for ``data``.

    ``data`` (``--data``) overrides any root binding; else ``$MUSDB_PATH``
    applies when the gin config in force binds no root for the chosen
    dataset. The root is checked (``UserError`` for a missing or empty
    folder) and made absolute.
    """
    source = "--data" if data else None
    name = registry.name_of("datasets", _bound_dataset())
    bound = parts.bindings_of("datasets", name).get("root")
    if not data and os.environ.get("MUSDB_PATH") and bound is None:
        data, source = os.environ["MUSDB_PATH"], "MUSDB_PATH"
    if not data:
        return [], None
    root = resolve_root(data).resolve()
    extra = [f"datasets.{name}.root = {str(root)!r}"]
    if source == "--data":
        extra.append("Experiment.evaluation_sets = {}")
    return extra, {"dataset": name, "root": str(root), "source": source}


def check_evaluation_roots(exp, train_root) -> dict[str, Path]:
    """``{label: root}`` of the final evaluation, each ``test`` subset checked readable before any training."""
    roots = evaluation_roots(exp, train_root)
    for root in roots.values():
        for track in open_db(root, "test").tracks:
            track_ref(track)
    return roots


def prepare_dataset_cache(datasets, workers: int, console) -> None:
    """Decode what ``datasets`` (with ``disk_cache``) read into their cache, once; ``UserError`` naming a bad track.

    Datasets sharing a cache, rate and channels (train and valid) are decoded
    in one pass: one set of worker processes, shared evenly.
    """
    passes: dict[tuple, list] = {}
    for dataset in datasets:
        if dataset is not None and getattr(dataset, "disk_cache", False):
            key = (str(dataset.cache_dir), dataset.sample_rate, dataset.channels)
            passes.setdefault(key, []).append(dataset)
    for (cache_dir, sample_rate, channels), group in passes.items():
        tracks = list({track_ref(t).paths: t for dataset in group for t in dataset.tracks}.values())
        with Progress(TextColumn("[bold]cache[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(cache_dir, total=len(tracks))
            failures = prepare_cache(tracks, sample_rate, channels, cache_dir, workers,
                                     lambda done, total, name: bar.update(task, completed=done, description=name))
        if failures:
            raise UserError(f"{failures[0]} ({len(failures)} of {len(tracks)} tracks could not be decoded; "
                            f"`toolkit data prepare {group[0].root}` lists them)")
