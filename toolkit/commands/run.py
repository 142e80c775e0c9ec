"""``toolkit run FILE.gin [--gin_param B]... [--data ROOT] [--out DIR] [--resume] [--plugin P]...``"""
from __future__ import annotations


def add_parser(sub, parent):
    p = sub.add_parser("run", parents=[parent], help="train (and evaluate) the experiment in a gin file")
    p.add_argument("gin_file", nargs="+", help="gin file(s); later ones override earlier ones")
    p.add_argument("--gin_param", "--gin-param", action="append", default=[], metavar="BINDING",
                   help="a gin binding, e.g. \"SCHEDULE='cosine'\" or TRAIN_STEPS=100; repeatable")
    p.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    p.add_argument("--data", metavar="ROOT",
                   help="MUSDB18 root (stem mp4 or HQ wav) for training, validation and the final evaluation "
                        "(default: the gin files' root, else $MUSDB_PATH); drops the experiment's extra evaluation sets")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..runner import run

    run(args.gin_file, args.gin_param, args.plugin, out=args.out, resume=args.resume, data=args.data)
    return 0
