"""Sweeps: grids of gin bindings -> ordinary runs -> one table and plots.

Each grid cell is a set of bindings on top of a base gin file. Bindings
that only change how a trained model samples (sampler, steps, eta,
post-filter) do not change training, so cells that differ only in those
share one training run: ``DIR/train/<key>/`` is an ordinary run directory,
``DIR/cells/<cell>/`` holds the cell's operative config and scores. A cell
with ``results.json`` is done and skipped on re-run; an interrupted training
resumes from its newest checkpoint.

Who runs the cells is a launcher (``toolkit.launch``: ``local`` in this
process, ``submitit`` as Slurm or local jobs); ``DIR/state.json`` records
each training's and cell's job, state and log.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gin
from rich.console import Console

from . import checkpoint, config, parts, registry
from .api import Separator
from .evaluate import evaluate_tracks
from .errors import UserError
from .final_eval import evaluation_roots, test_tracks
from .io_utils import atomic_write_text
from .runner import build_experiment, run
from .separate import separate_array

# Bindings that only affect sampling: a cell that differs only in these reuses a trained checkpoint.
SAMPLING_ONLY = re.compile(
    r"^(SAMPLER|SAMPLING_STEPS|SAMPLING_START|SAMPLING_START_T|POST_FILTER|ETA|FINAL_EVALUATION|"
    r"Experiment\.(sampler|sampling_steps|sampling_start|sampling_start_t|sampler_options|post_filter|"
    r"final_evaluation|evaluation_tracks|evaluation_sets)|samplers\..*)$")


def parse_value(text: str) -> str:
    """A grid value as gin text: numbers, booleans, None, lists and quoted strings pass; bare words get quoted."""
    text = text.strip()
    if not text:
        raise UserError("--grid: empty value; write BINDING=v1,v2")
    if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text) or text in ("True", "False", "None"):
        return text
    if text[0] in "'\"[(@%{":
        return text
    return repr(text)


def split_values(text: str) -> list[str]:
    """Split on commas that are not inside quotes or brackets."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return parts


def parse_grid_arg(arg: str) -> tuple[str, list[str]]:
    if "=" not in arg:
        raise UserError(f"--grid {arg}: expected BINDING=v1,v2,... (e.g. SCHEDULE=linear,cosine)")
    name, values = arg.split("=", 1)
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_][\w./]*", name):
        raise UserError(f"--grid {arg}: '{name}' is not a gin binding name (e.g. SCHEDULE or samplers.ddim.eta)")
    return name, [parse_value(v) for v in split_values(values)]


def expand(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Cartesian product, in the order the grid was given: [{name: gin value}, ...]."""
    if not grid:
        return [{}]
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _key(bindings: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(sorted(bindings.items())).encode()).hexdigest()[:10]


def cell_name(bindings: dict[str, str]) -> str:
    if not bindings:
        return "base"
    text = "__".join(f"{k.split('.')[-1]}={v.strip(chr(39)).strip(chr(34))}" for k, v in bindings.items())
    return re.sub(r"[^\w=.,+-]+", "_", text)[:120]


@dataclass
class Cell:
    name: str
    bindings: dict
    train_key: str
    train_bindings: dict

    def to_gin(self) -> list[str]:
        return [f"{k} = {v}" for k, v in self.bindings.items()]


@dataclass
class SweepSpec:
    """Everything a worker needs to run a cell (plain data, so it can be sent to another process)."""

    files: list
    fixed: list
    plugins: list
    out: str
    cells: list = field(default_factory=list)

    def train_dir(self, key: str) -> Path:
        return Path(self.out) / "train" / key

    def cell_dir(self, cell: Cell) -> Path:
        return Path(self.out) / "cells" / cell.name


def gin_sweep(files) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    """``(grid, variants)`` declared in the gin file(s) as ``Sweep.grid`` / ``Sweep.variants``, as gin text values.

    ``variants`` is ``[{}]`` when none are declared (the config as it is).
    """
    config.parse(files, ())
    try:
        declared = {}
        for name in ("grid", "variants"):
            try:
                declared[name] = gin.query_parameter(f"Sweep.{name}")
            except ValueError:
                declared[name] = None
    finally:
        gin.clear_config()
    grid = {str(k): [_gin_literal(v) for v in (vals if isinstance(vals, (list, tuple)) else [vals])]
            for k, vals in (declared["grid"] or {}).items()}
    variants = declared["variants"]
    if variants is None:
        return grid, [{}]
    if not isinstance(variants, (list, tuple)) or not variants or not all(isinstance(v, dict) for v in variants):
        raise UserError("Sweep.variants must be a non-empty list of binding dicts, e.g. "
                        "[{}, {'datasets.synthetic.augment_gain': True}]")
    return grid, [{str(k): _gin_literal(v) for k, v in variant.items()} for variant in variants]


def _gin_literal(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def plan(files, grid_args, fixed, plugins, out) -> SweepSpec:
    config.load_plugins(plugins)
    grid, variants = gin_sweep(files)
    for arg in grid_args:
        name, values = parse_grid_arg(arg)
        grid[name] = values
    check_grid_macros(files, fixed, plugins, {**grid, **{k: [] for v in variants for k in v}})
    cells = []
    for bindings in ({**variant, **combo} for variant in variants for combo in expand(grid)):
        train_b = {k: v for k, v in bindings.items() if not SAMPLING_ONLY.match(k)}
        cells.append(Cell(cell_name(bindings), bindings, _key(train_b), train_b))
    names = [c.name for c in cells]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise UserError(f"sweep: two cells would both be {twice}; make Sweep.variants and the grid differ")
    spec = SweepSpec([str(f) for f in files], list(fixed), list(plugins), str(out), cells)
    # Parse every cell now: a bad binding fails before any training starts, naming the binding.
    for cell in cells:
        try:
            config.parse(files, [*fixed, *cell.to_gin()], plugins)
            build_experiment()
        except UserError as exc:
            raise UserError(f"sweep cell {cell.name}: {str(exc).splitlines()[0]}") from exc
        finally:
            gin.clear_config()
    return spec


def check_grid_macros(files, fixed, plugins, grid: dict) -> None:
    """Refuse a grid axis on a macro the base config never reads: its cells would all train the same model."""
    macros = [name for name in grid if "." not in name and "/" not in name]
    if not macros:
        return
    config.parse(files, fixed, plugins)
    try:
        text = config.config_str()
    finally:
        gin.clear_config()
    read = set(re.findall(r"%([A-Za-z_][\w.]*)", text))
    for name in macros:
        if name not in read:
            raise UserError(f"--grid {name}: no binding reads macro {name};{registry.suggest(name, sorted(read))} "
                            f"macros this config reads: {', '.join(sorted(read))}")


def train_bindings(spec: SweepSpec, cell: Cell) -> list[str]:
    return [*spec.fixed, *[f"{k} = {v}" for k, v in cell.train_bindings.items()], "FINAL_EVALUATION = False"]


def run_training(spec: SweepSpec, cell: Cell, console=None) -> Path:
    """Train (or resume, or skip) the run that ``cell`` reuses; returns its run directory."""
    run_dir = spec.train_dir(cell.train_key)
    if (run_dir / "run.json").exists():
        return run_dir
    resume = checkpoint.has_checkpoints(run_dir / "checkpoints")
    run(spec.files, train_bindings(spec, cell), spec.plugins, out=run_dir, resume=resume, console=console)
    return run_dir


def run_cell(spec: SweepSpec, cell: Cell, console=None) -> dict:
    """Evaluate one cell with its training run's checkpoint; writes ``results.json`` last."""
    console = console or Console()
    cell_dir = spec.cell_dir(cell)
    done = cell_dir / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    run_dir = run_training(spec, cell, console)
    config.parse(spec.files, [*spec.fixed, *cell.to_gin()], spec.plugins)
    try:
        exp = build_experiment()
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_dir / "operative_config.gin", config.config_str())
        sep = Separator.from_checkpoint(run_dir / "checkpoints" / "last.pt", sampler=exp.sampler if isinstance(exp.sampler, str) else None,
                                        steps=exp.sampling_steps, post_filter=exp.post_filter, seed=exp.seed,
                                        start=exp.sampling_start, start_t=exp.sampling_start_t,
                                        sampler_options=exp.sampler_options)
        tracks = test_tracks(trained_root(run_dir), exp.evaluation_tracks)
        res = evaluate_tracks(tracks, lambda m, r, t: separate_array(sep.engine, m, r), cell_dir, baseline=False,
                              save_estimates=False)
        atomic_write_text(cell_dir / "operative_config.gin", config.operative_config() + "\n" + config.config_str())
    finally:
        gin.clear_config()
    train_info = json.loads((run_dir / "run.json").read_text())
    result = {
        "cell": cell.name, "bindings": cell.bindings, "train_dir": str(run_dir),
        "scores": res["model"], "tracks": res["tracks"],
        "separation_s_per_s": res["seconds_separation"] / max(1e-9, res["seconds_audio"]) if res["seconds_audio"] else None,
        "training_minutes": train_info.get("training", {}).get("minutes"),
        "machine": train_info.get("machine"),
    }
    atomic_write_text(done, json.dumps(result, indent=2))
    return result


def trained_root(run_dir: Path) -> Path:
    """The data root a finished training ran on, as its checkpoint records it."""
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt", map_location="cpu")  # reports run on any node
    return Path(state["meta"]["parts"]["dataset"]["root"])


def baseline(spec: SweepSpec, console=None) -> dict | None:
    """Scores of the mixture-as-estimate baseline on the sweep's test set (once per sweep)."""
    path = Path(spec.out) / "baseline.json"
    if path.exists():
        return json.loads(path.read_text())
    # a cell whose training finished: its checkpoint names the data set when the config does not
    cell = next((c for c in spec.cells if (spec.train_dir(c.train_key) / "run.json").exists()), spec.cells[0])
    config.parse(spec.files, [*spec.fixed, *cell.to_gin()], spec.plugins)
    try:
        limit = build_experiment().evaluation_tracks
    finally:
        gin.clear_config()
    tracks = test_tracks(trained_root(spec.train_dir(cell.train_key)), limit)
    res = evaluate_tracks(tracks, lambda m, r, t: (m, m), Path(spec.out) / "baseline", baseline=False, save_estimates=False)
    atomic_write_text(path, json.dumps(res["model"], indent=2))
    return res["model"]


def save_manifest(spec: SweepSpec) -> None:
    data = asdict(spec)
    atomic_write_text(Path(spec.out) / "sweep.json", json.dumps(data, indent=2))


def load_manifest(out) -> SweepSpec:
    path = Path(out) / "sweep.json"
    if not path.exists():
        raise UserError(f"{out}: no sweep.json; point at a folder made by `toolkit sweep ... --out DIR`")
    data = json.loads(path.read_text())
    data["cells"] = [Cell(**c) for c in data["cells"]]
    return SweepSpec(**data)


def prepare_data(spec: SweepSpec) -> None:
    """Build each data set the sweep's trainings and evaluations use once, in this process.

    Generated sets are made on first use; jobs running in parallel would otherwise wait on one another.
    """
    for key in dict.fromkeys(c.train_key for c in spec.cells):
        cell = next(c for c in spec.cells if c.train_key == key)
        config.parse(spec.files, [*spec.fixed, *cell.to_gin()], spec.plugins)
        try:
            exp = build_experiment()
            dataset, _ = parts.build("datasets", exp.dataset, subset="train", split="train", random_segments=True,
                                     seed=exp.seed)
            evaluation_roots(exp, dataset.root)
        finally:
            gin.clear_config()
