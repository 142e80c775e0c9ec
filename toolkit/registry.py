"""Registries of named parts: one ``Registry`` per kind (as in fvcore/mmengine).

Plugin authors use::

    from toolkit import registry

    @registry.register("samplers", "my_sampler")
    def my_sampler(model_fn, diffusion, x_T, *, cond=None, steps=None,
                   generator=None, callback=None): ...

    registry.get("samplers", "my_sampler")   # the registered (gin-wrapped) object
    registry.names("samplers")               # sorted names

Registering also makes the object gin-configurable as ``<kind>.<name>``
(``samplers.ddim.eta = 0.0``, ``@samplers.ddim``). The core never imports a
particular plugin: built-ins come from importing ``diffmsst_plugins`` (the ``plugins/`` folder) once
(:func:`load_builtin_plugins`), third-party ones from a gin ``import`` line,
``--plugin MODULE_OR_FILE.py`` (:func:`load_plugin`) or the entry-point group
``toolkit.plugins``.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
from importlib.metadata import entry_points
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

import gin

from .errors import UnknownNameError, UserError

KINDS = ("transforms", "backbones", "schedules", "samplers", "losses", "datasets", "loggers", "launchers")


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: a swap of two neighbours costs 1 (``ddmi`` -> ``ddim``)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def closest(name: str, known) -> str | None:
    """The known name nearest to ``name`` (edit distance, then difflib), or None if none is close."""
    known = list(known)
    if not known:
        return None
    best = min(known, key=lambda k: (edit_distance(name, k), -difflib.SequenceMatcher(None, name, k).ratio()))
    if edit_distance(name, best) <= max(2, len(name) // 3) or difflib.SequenceMatcher(None, name, best).ratio() >= 0.6:
        return best
    return None


def suggest(name: str, known) -> str:
    """``" did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = closest(name, known)
    return f" did you mean '{close}'?" if close else ""


class Registry:
    """Names -> objects for one kind of part; each name registered once."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj):
            if name in self._entries:
                old = self._entries[name]
                raise ValueError(
                    f"{self.kind} '{name}' is registered twice: first in {_module_of(old)}, "
                    f"again in {getattr(obj, '__module__', '?')}; rename one of them"
                )
            wrapped = gin.configurable(name, module=self.kind)(obj)
            self._entries[name] = wrapped
            return wrapped

        return decorator

    def get(self, name: str):
        if not isinstance(name, str):
            return name  # already an object (e.g. a gin reference @samplers.ddim)
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} '{name}';"
                f"{suggest(name, self._entries)} known: {known}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self):
        return sorted(self._entries.items())

    def __contains__(self, name):
        return name in self._entries


_REGISTRIES: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}


def _registry(kind: str) -> Registry:
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise UnknownNameError(f"unknown kind '{kind}';{suggest(kind, KINDS)} known: {', '.join(KINDS)}") from None


def register(kind: str, name: str):
    """Decorator: register a function or class as ``<kind>.<name>``."""
    return _registry(kind).register(name)


def get(kind: str, name: str):
    """The object registered as ``name`` under ``kind``; unknown names raise with a suggestion."""
    return _registry(kind).get(name)


def names(kind: str) -> list[str]:
    return _registry(kind).names()


def items(kind: str):
    return _registry(kind).items()


def _module_of(obj) -> str:
    inner = getattr(obj, "__wrapped__", obj)
    return getattr(inner, "__module__", None) or getattr(obj, "__module__", "?")


def describe(kind: str, name: str) -> tuple[str, str]:
    """(one-line doc, defining module) of a registered object."""
    obj = get(kind, name)
    doc = inspect.getdoc(getattr(obj, "__wrapped__", obj)) or inspect.getdoc(obj) or ""
    return (doc.strip().splitlines() or [""])[0], _module_of(obj)


_BUILTINS_LOADED = False


def load_builtin_plugins() -> None:
    """Import the built-in parts (``plugins/``, installed as ``diffmsst_plugins``) once, then the ``toolkit.plugins`` entry points."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    importlib.import_module("diffmsst_plugins")
    for ep in entry_points(group="toolkit.plugins"):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party package must say which one
            raise UserError(f"plugin entry point '{ep.name}' ({ep.value}) failed to load: {exc}") from exc


_LOADED_FILES: dict[str, Any] = {}


def load_plugin(spec: str):
    """Import a plugin given as a module name or a path to a ``.py`` file (once)."""
    if spec in _LOADED_FILES:
        return _LOADED_FILES[spec]
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"--plugin {spec}: no such file; pass an existing .py file or an importable module name")
        resolved = str(path.resolve())
        if resolved in _LOADED_FILES:
            return _LOADED_FILES[resolved]
        mod_name = f"toolkit_plugin_{path.stem}_{abs(hash(resolved)) % 10**8}"
        module_spec = importlib.util.spec_from_file_location(mod_name, resolved)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except (UserError, ValueError) as exc:
            sys.modules.pop(mod_name, None)
            raise UserError(f"--plugin {spec}: {exc}") from exc
        except SyntaxError as exc:
            sys.modules.pop(mod_name, None)
            raise UserError(f"--plugin {spec}:{exc.lineno}: syntax error: {exc.msg}; fix the file") from exc
        _LOADED_FILES[resolved] = module
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            raise UserError(f"--plugin {spec}: cannot import module '{exc.name}'; pass a .py file path or install the module") from exc
    _LOADED_FILES[spec] = module
    return module


def name_of(kind: str, obj) -> str:
    """The registered name of ``obj`` (a name string passes through, checked)."""
    if isinstance(obj, str):
        get(kind, obj)
        return obj
    for name, entry in _registry(kind).items():
        if entry is obj or getattr(entry, "__wrapped__", None) is obj:
            return name
    raise UserError(f"{obj!r} is not a registered {kind[:-1]}; register it with @registry.register('{kind}', NAME)")
