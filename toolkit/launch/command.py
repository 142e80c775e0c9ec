"""What ``toolkit sweep`` does: plan, launch, report (``toolkit.commands.sweep`` parses its arguments)."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from .. import config, registry, sweep
from ..errors import UserError
from ..io_utils import atomic_write_text
from ..launch.failures import failures_markdown, write_failures
from ..launch.lock import submitter_lock, submitter_running
from ..launch.params import make_launcher
from ..launch.state import SweepState
from ..launch.status import status_table
from ..paths import check_writable_dir
from ..run_data import data_bindings
from ..sweep_report import summary_table, write_report


def main(args) -> int:
    console = Console()
    if args.report:
        return _report(Path(args.report), console)
    if args.status:
        return _status(Path(args.status), console)
    if not args.gin_file:
        raise UserError("toolkit sweep: give a gin file (or --report DIR / --status DIR); see `toolkit sweep --help`")
    launcher = make_launcher(args.launcher, args.launcher_param)  # bad names fail before any planning
    out = Path(args.out or Path("sweeps") / Path(args.gin_file[0]).stem)
    check_writable_dir(out)
    plugins = with_recorded_plugins(out, args.plugin, console)
    data_extra, _ = data_bindings(args.gin_file, args.gin_param, plugins, getattr(args, "data", None))
    spec = sweep.plan(args.gin_file, args.grid, [*args.gin_param, *data_extra], plugins, out)
    with submitter_lock(out):
        sweep.save_manifest(spec)
        state = SweepState.load(out)
        _refuse_other_launchers_jobs(out, state, args.launcher)
        launcher.launch(spec, state, console)
        failures = write_failures(spec, state)
    done = [c for c in spec.cells if (spec.cell_dir(c) / "results.json").exists()]
    if done:
        base = sweep.baseline(spec, console)
        _write_report(out, base, failures, console)
    if failures:
        console.print(f"[red]{len(failures)} of {len(spec.cells)} cells failed[/]: {', '.join(f['cell'] for f in failures)}; "
                      f"see {out / 'failures.json'} and `toolkit sweep --status {out}`")
        return 1
    return 0


def with_recorded_plugins(out: Path, given, console) -> list[str]:
    """The plugins ``DIR/sweep.json`` recorded, then those given now: a re-run needs no ``--plugin`` again.

    Plugin files are recorded by absolute path, so a re-run from another folder finds them.
    """
    given = [str(Path(p).resolve()) if p.endswith(".py") and Path(p).is_file() else p for p in given]
    manifest = out / "sweep.json"
    recorded = json.loads(manifest.read_text()).get("plugins", []) if manifest.is_file() else []
    extra = [p for p in recorded if p not in given]
    if extra:
        console.print(f"loading the plugins {manifest} records: {', '.join(extra)}", highlight=False, soft_wrap=True)
    return [*extra, *given]


def _job_alive_fn(state):
    """``alive(job_id) -> bool | None`` from the launcher that wrote ``state`` (None if it cannot tell)."""
    name = state.data.get("launcher")
    if not name:
        return None
    registry.load_builtin_plugins()
    try:
        job_alive = getattr(registry.get("launchers", name), "job_alive", None)
    except KeyError:  # a plugin launcher that is not loaded now: show the recorded states
        return None
    return (lambda job_id: job_alive(job_id, state.data)) if job_alive else None


def _refuse_other_launchers_jobs(out: Path, state, launcher: str) -> None:
    """Another launcher's jobs that still run would race this launcher on the same cells: stop first."""
    previous = state.data.get("launcher")
    alive = _job_alive_fn(state) if previous and previous != launcher else None
    if not alive:
        return
    running = [str(e["job_id"]) for group in ("trainings", "cells") for e in state.data.get(group, {}).values()
               if e.get("state") == "running" and e.get("job_id") and alive(e["job_id"]) is not False]
    if running:
        raise UserError(f"{out}: jobs of the earlier --launcher {previous} still run ({', '.join(running[:5])}); "
                        f"re-run with --launcher {previous}, or wait for them (`toolkit sweep --status {out}`)")


def _write_report(out: Path, base, failures, console) -> None:
    info = write_report(out, base)
    if failures:  # sweep_report knows finished cells only: add the failed ones to results.md
        md = out / "results.md"
        atomic_write_text(md, md.read_text() + failures_markdown(failures))
    console.print(summary_table(out))
    console.print(f"[bold]{info['cells']} cells[/] -> {out / 'results.csv'}, {out / 'results.md'}; plots: {', '.join(info['plots'])}")


def _report(out: Path, console) -> int:
    failures = json.loads((out / "failures.json").read_text()) if (out / "failures.json").is_file() else []
    if failures:
        _write_report(out, None, failures, console)
    else:
        info = write_report(out)
        console.print(summary_table(out))
        console.print(f"{info['cells']} cells -> {out / 'results.md'}; plots: {', '.join(info['plots'])}")
    return 0


def _status(out: Path, console) -> int:
    spec = sweep.load_manifest(out)
    try:
        config.load_plugins(spec.plugins)  # a plugin launcher can then say whether its jobs still run
    except UserError as exc:
        console.print(f"[yellow]{exc}; showing the recorded states", highlight=False)
    state = SweepState.load(out)
    submitter = submitter_running(out)
    table = status_table(spec, state, _job_alive_fn(state), submitter)
    Console(width=max(console.width, 160)).print(table)
    counts: dict[str, int] = {}
    for cell in spec.cells:
        st = state.entry("cells", cell.name)["state"]
        counts[st] = counts.get(st, 0) + 1
    line = ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(spec.cells)} cells"
    if submitter is not None:
        line += "; a `toolkit sweep` is driving it" if submitter else "; no `toolkit sweep` is driving it now"
    console.print(line)
    return 0
