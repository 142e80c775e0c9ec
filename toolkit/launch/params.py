"""The launcher named by ``--launcher NAME``, built from ``--launcher-param KEY=VALUE`` strings."""
from __future__ import annotations

import inspect
import typing

from .. import registry
from ..errors import UserError


def launcher_params(cls) -> dict[str, type]:
    """``{name: type}`` of a launcher's keyword parameters (from ``__init__``'s annotations)."""
    init = getattr(cls, "__wrapped__", cls).__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that cannot be evaluated: treat the value as text
        hints = {}
    params = {}
    for name, p in inspect.signature(init).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(name, str)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        params[name] = args[0] if args else hint
    return params


def _convert(launcher: str, key: str, text: str, kind: type):
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
    elif kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    else:
        return text
    example = {bool: "true", int: "2", float: "0.5"}.get(kind, "...")
    raise UserError(f"--launcher-param {key}={text}: launcher '{launcher}' needs {'an' if kind is int else 'a'} {kind.__name__} for {key} "
                    f"(e.g. {key}={example})")


def make_launcher(name: str, params=()):
    """The launcher registered as ``name``, built from ``KEY=VALUE`` strings; bad names or keys raise UserError."""
    registry.load_builtin_plugins()
    cls = registry.get("launchers", name)
    known = launcher_params(cls)
    kwargs = {}
    for item in params:
        if "=" not in item:
            raise UserError(f"--launcher-param {item}: expected KEY=VALUE (e.g. max_parallel=2)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in known:
            raise UserError(f"--launcher-param {key}: unknown parameter of launcher '{name}';"
                            f"{registry.suggest(key, known)} known: {', '.join(sorted(known)) or '(none)'}")
        kwargs[key] = _convert(name, key, value, known[key])
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise UserError(f"--launcher {name}: {str(exc).splitlines()[0]}") from exc
