"""``toolkit sweep FILE.gin --grid BINDING=v1,v2 ... [--out DIR]`` and ``toolkit sweep --report DIR``."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub, parent):
    p = sub.add_parser("sweep", parents=[parent], help="run a grid of gin bindings; table and plots of the results")
    p.add_argument("gin_file", nargs="*", help="base gin file(s) (may declare Sweep.grid = {...})")
    p.add_argument("--grid", action="append", default=[], metavar="BINDING=v1,v2",
                   help="a grid axis, e.g. SCHEDULE=linear,cosine; repeatable (cartesian product)")
    p.add_argument("--gin_param", "--gin-param", action="append", default=[], metavar="BINDING",
                   help="a binding fixed for every cell; repeatable")
    p.add_argument("--out", help="sweep folder (default: sweeps/<name>)")
    p.add_argument("--report", metavar="DIR", help="only regenerate results.csv/.md and plots from finished cells in DIR")
    p.set_defaults(func=main)


def main(args) -> int:
    from rich.console import Console

    from .. import sweep
    from ..errors import UserError
    from ..paths import check_writable_dir
    from ..sweep_report import write_report

    console = Console()
    if args.report:
        info = write_report(Path(args.report))
        console.print(f"{info['cells']} cells -> {Path(args.report) / 'results.md'}; plots: {', '.join(info['plots'])}")
        return 0
    if not args.gin_file:
        raise UserError("toolkit sweep: give a gin file (or --report DIR); see `toolkit sweep --help`")
    out = Path(args.out or Path("sweeps") / Path(args.gin_file[0]).stem)
    check_writable_dir(out)
    spec = sweep.plan(args.gin_file, args.grid, args.gin_param, args.plugin, out)
    sweep.save_manifest(spec)
    sweep.run_local(spec, console)
    base = sweep.baseline(spec, console)
    info = write_report(out, base)
    console.print(f"[bold]{info['cells']} cells[/] -> {out / 'results.csv'}, {out / 'results.md'}; plots: {', '.join(info['plots'])}")
    return 0
