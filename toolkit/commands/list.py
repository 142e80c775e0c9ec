"""``toolkit list [KIND]``: the registered parts, as a rich table."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .. import registry
from ..errors import UserError


def add_parser(sub, parent):
    p = sub.add_parser("list", parents=[parent], help="list registered parts (kind, name, doc, module)")
    p.add_argument("kind", nargs="?", help=f"one of: {', '.join(registry.KINDS)}")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import config

    config.load_plugins(args.plugin)
    kinds = registry.KINDS
    if args.kind:
        if args.kind not in registry.KINDS:
            raise UserError(f"unknown kind '{args.kind}';{registry.suggest(args.kind, registry.KINDS)} known: {', '.join(registry.KINDS)}")
        kinds = (args.kind,)
    table = Table(title="registered parts")
    for col in ("kind", "name", "description", "module"):
        table.add_column(col, overflow="fold")
    for kind in kinds:
        for name in registry.names(kind):
            doc, module = registry.describe(kind, name)
            table.add_row(kind, name, doc, module)
    Console(width=160).print(table)
    return 0
