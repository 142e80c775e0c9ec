"""What ``toolkit list`` prints: each registered part's doc, the file that defines it and its options.

Tables stay within the terminal's width (80 columns when not a terminal):
long descriptions and option lists wrap inside their cell.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from . import registry

# Arguments a part receives at call time from the core, not options a user sets.
RUNTIME_ARGS = {"self", "cond", "generator", "callback", "model_fn", "diffusion", "x_T", "run_dir"}


def defining_file(obj) -> str:
    """The source file of a registered object, relative to the working folder when inside it."""
    inner = getattr(obj, "__wrapped__", obj)
    try:
        path = Path(inspect.getsourcefile(inner) or "")
    except TypeError:
        return getattr(inner, "__module__", "?")
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path).replace(os.path.expanduser("~"), "~", 1)


def options(obj) -> list[str]:
    """``name=default`` of each keyword argument a gin file or ``--gin_param`` may set."""
    inner = getattr(obj, "__wrapped__", obj)
    target = inner.__init__ if inspect.isclass(inner) else inner
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    return [f"{p.name}={p.default!r}" for p in params
            if p.default is not p.empty and p.name not in RUNTIME_ARGS]


def parts_table(kind: str) -> Table:
    """One kind's parts: name, then description, options with defaults and the defining file."""
    table = Table(title=kind, title_justify="left", expand=True)
    table.add_column("name", no_wrap=True)
    table.add_column("description; options=defaults; file", overflow="fold")
    for name, obj in registry.items(kind):
        doc, _ = registry.describe(kind, name)
        lines = [escape(doc)]
        opts = options(obj)
        if opts:
            lines.append(escape(", ".join(opts)))
        lines.append(f"[dim]{escape(defining_file(obj))}[/]")
        table.add_row(name, "\n".join(lines))
    return table
