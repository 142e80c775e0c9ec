"""Gin mistakes gin itself lets through, caught before any work.

gin refuses an unknown configurable or parameter, but a misspelled macro
(``TRAIN_STEP = 30``) is just a new macro that nothing reads, and an
unquoted string on the command line fails deep in its parser. Both are
refused here with the fix spelled out.
"""
from __future__ import annotations

import re
from typing import Sequence

from . import registry
from .errors import UserError

_BINDING = re.compile(r"^\s*([A-Za-z_][\w./]*)\s*=\s*(.*?)\s*$", re.DOTALL)
_BARE_WORD = re.compile(r"[A-Za-z_][\w.-]*")
_MACRO_DEF = re.compile(r"^([A-Za-z_][\w.]*) = ", re.MULTILINE)
_MACRO_REF = re.compile(r"%([A-Za-z_][\w.]*)")


def check_quoting(bindings: Sequence[str], flag: str = "--gin_param") -> None:
    """Refuse ``NAME=word``: gin reads a bare word as Python code, not as the string the user meant."""
    for text in bindings:
        m = _BINDING.match(text)
        if not m:
            continue
        name, value = m.groups()
        if _BARE_WORD.fullmatch(value) and value not in ("True", "False", "None"):
            raise UserError(f"{flag} {text.strip()}: strings need quotes: {name}='{value}' "
                            f"(in the shell: \"{name}='{value}'\")")


def check_unread_macros(config_text: str, bindings: Sequence[str] = ()) -> None:
    """Refuse a macro that no binding reads (``config_text``: ``gin.config_str()`` of the parsed config).

    A macro is read when some value (of a binding or another macro) holds
    ``%NAME``; one that nothing reads is a typo of one that is, so the
    run would silently use the other's value.
    """
    macros_part = config_text.split("# Parameters for", 1)[0]
    defined = _MACRO_DEF.findall(macros_part)
    read = set(_MACRO_REF.findall(config_text))
    unread = [name for name in defined if name not in read]
    if not unread:
        return
    name = unread[0]
    given = next((b.strip() for b in bindings if (m := _BINDING.match(b)) and m.group(1) == name), None)
    where = f"--gin_param {given}: " if given else ""
    hint = registry.suggest(name, sorted(read))
    raise UserError(f"{where}macro {name} is set but nothing reads it;{hint} "
                    f"macros this config reads: {', '.join(sorted(read)) or '(none)'}")
