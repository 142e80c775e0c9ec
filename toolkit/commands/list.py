"""``toolkit list [KIND]``: the registered parts, their files and options, as tables."""
from __future__ import annotations

from .. import registry


def add_parser(sub, parent):
    p = sub.add_parser("list", parents=[parent], help="list registered parts (name, doc, options, file)",
                       description="Registered parts with their options and defaults; a plugin shows the file that "
                                   "defines it. Writing a sampler: docs/samplers.md.")
    p.add_argument("kind", nargs="?", help=f"one of: {', '.join(registry.KINDS)}")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from .. import config
    from ..errors import UserError
    from ..listing import parts_table

    config.load_plugins(args.plugin)
    kinds = registry.KINDS
    if args.kind:
        if args.kind not in registry.KINDS:
            raise UserError(f"unknown kind '{args.kind}';{registry.suggest(args.kind, registry.KINDS)} known: {', '.join(registry.KINDS)}")
        kinds = (args.kind,)
    console = Console()
    for kind in kinds:
        console.print(parts_table(kind))
    return 0
