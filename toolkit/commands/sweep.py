"""``toolkit sweep FILE.gin --grid BINDING=v1,v2 ... [--launcher NAME --launcher-param K=V] [--out DIR]``,
``toolkit sweep --report DIR`` and ``toolkit sweep --status DIR``."""
from __future__ import annotations


def add_parser(sub, parent):
    p = sub.add_parser("sweep", parents=[parent], help="run a grid of gin bindings; table and plots of the results")
    p.add_argument("gin_file", nargs="*", help="base gin file(s) (may declare Sweep.grid = {...})")
    p.add_argument("--grid", action="append", default=[], metavar="BINDING=v1,v2",
                   help="a grid axis, e.g. SCHEDULE=linear,cosine; repeatable (cartesian product)")
    p.add_argument("--gin_param", "--gin-param", action="append", default=[], metavar="BINDING",
                   help="a binding fixed for every cell; repeatable")
    p.add_argument("--out", help="sweep folder (default: sweeps/<name>)")
    p.add_argument("--data", metavar="ROOT",
                   help="MUSDB18 root every cell trains, validates and evaluates on (default: the gin files' root, "
                        "else $MUSDB_PATH); drops the experiment's extra evaluation sets")
    p.add_argument("--launcher", default="local", metavar="NAME",
                   help="who runs the cells: local (this process, default), submitit (Slurm jobs, or local processes "
                        "without Slurm), or a plugin's; `toolkit list launchers`")
    p.add_argument("--launcher-param", "--launcher_param", action="append", default=[], metavar="KEY=VALUE",
                   help="a launcher parameter, e.g. max_parallel=4, partition=gpu, gpus_per_node=1, timeout_min=600; repeatable")
    p.add_argument("--report", metavar="DIR", help="only regenerate results.csv/.md and plots from finished cells in DIR")
    p.add_argument("--status", metavar="DIR", help="print the state of every training and cell of the sweep in DIR")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..launch.command import main as sweep_main

    return sweep_main(args)
