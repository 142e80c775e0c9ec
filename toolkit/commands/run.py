"""``toolkit run FILE.gin [--gin_param B]... [--data ROOT] [--out DIR] [--resume] [--plugin P]...``"""
from __future__ import annotations


def add_parser(sub, parent):
    p = sub.add_parser("run", parents=[parent], help="train (and evaluate) the experiment in a gin file")
    p.add_argument("gin_file", nargs="+", help="gin file(s); later ones override earlier ones")
    p.add_argument("--gin_param", "--gin-param", action="append", default=[], metavar="BINDING",
                   help="a gin binding, e.g. \"SCHEDULE='cosine'\" or TRAIN_STEPS=100; repeatable")
    p.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop training after M minutes of training, saying so (the result then depends on the "
                        "machine's speed; default: the gin file's TrainConfig.max_minutes)")
    p.add_argument("--data", metavar="ROOT",
                   help="MUSDB18 root (stem mp4 or HQ wav) for training, validation and the final evaluation "
                        "(default: the gin files' root, else $MUSDB_PATH); drops the experiment's extra evaluation sets")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..errors import UserError
    from ..runner import run

    bindings = list(args.gin_param)
    if args.max_minutes is not None:
        if not args.max_minutes > 0:
            raise UserError(f"--max-minutes {args.max_minutes}: must be > 0 (leave it out for no time limit)")
        bindings.append(f"TrainConfig.max_minutes = {args.max_minutes!r}")
    run(args.gin_file, bindings, args.plugin, out=args.out, resume=args.resume, data=args.data)
    return 0
