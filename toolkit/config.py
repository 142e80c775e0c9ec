"""Gin composition: load plugins, parse files and bindings, explain mistakes.

Every gin error is turned into a :class:`UserError` of one line (what, where,
what to do); unknown names get a ``did you mean`` from the registries.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Iterable, Sequence

import gin

from . import experiment, gin_check, registry  # noqa: F401  (experiment: the core's own configurables Experiment, Sweep, TrainConfig)
from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def configurables() -> dict[str, object]:
    """``{selector: object}`` of every configurable a gin file may bind: the core's and each registered part."""
    found = dict(experiment.CORE_CONFIGURABLES)
    for kind in registry.KINDS:
        for name, obj in registry.items(kind):
            found[f"{kind}.{name}"] = obj
    return found


def known_configurables() -> list[str]:
    """Every gin-configurable selector (``samplers.ddim``, ``Experiment``, ...) and its short name."""
    names = set()
    for selector in configurables():
        names.add(selector)
        names.add(selector.rsplit(".", 1)[-1])
    return sorted(names)


def _where(text: str) -> str:
    m = re.search(r'In file "([^"]+)", line (\d+)', text)
    if m:
        return f"{m.group(1)}:{m.group(2)}: "
    m = re.search(r"In bindings string line (\d+)", text)
    if m:
        return "--gin_param: "
    return ""


def explain_gin_error(exc: BaseException) -> UserError:
    """Turn gin's multi-line errors into one actionable line."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    where = _where(text)
    m = re.match(r"No configurable matching '([^']+)'", first)
    if m:
        name = m.group(1)
        hint = registry.suggest(name, known_configurables())
        return UserError(f"{where}unknown configurable '{name}';{hint} run `toolkit list` for the registered names")
    m = re.match(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", first)
    if m:
        conf, param = m.groups()
        params = _parameters_of(conf)
        hint = registry.suggest(param, params)
        return UserError(f"{where}'{conf}' has no parameter '{param}';{hint} its parameters: {', '.join(params) or '(none)'}")
    m = re.match(r"No bindings specified for '([^'/]+)/gin.macro'", first)
    if m:
        return UserError(f"macro %{m.group(1)} is used but never set; add `{m.group(1)} = ...` to the gin file or pass --gin_param \"{m.group(1)}=...\"")
    if isinstance(exc, SyntaxError):
        loc = ""
        if getattr(exc, "filename", None):
            loc = f"{exc.filename}:{exc.lineno}: "
        elif getattr(exc, "lineno", None):
            loc = f"line {exc.lineno}: "
        msg = getattr(exc, "msg", None) or first
        msg = re.sub(r"\s*\([^()]*line \d+\)$", "", msg)
        return UserError(f"{loc}gin syntax error: {msg}; check quoting (strings need quotes: NAME = 'value')")
    return UserError(f"{where}{first}")


def _parameters_of(selector: str) -> list[str]:
    known = configurables()
    matches = [obj for name, obj in known.items() if name == selector or name.endswith("." + selector)]
    if len(matches) != 1:
        return []
    fn = getattr(matches[0], "__wrapped__", matches[0])
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        return []


def load_plugins(plugins: Iterable[str] = ()) -> None:
    """Register the built-in parts, then each ``--plugin`` module or file."""
    registry.load_builtin_plugins()
    for spec in plugins or ():
        registry.load_plugin(spec)


def parse(files: Sequence[str | Path], bindings: Sequence[str] = (), plugins: Iterable[str] = (), finalize: bool = True) -> None:
    """Clear gin, load plugins, then parse ``files`` and ``bindings`` (later ones win)."""
    load_plugins(plugins)
    gin_check.check_quoting(bindings)
    gin.clear_config()
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise UserError(f"{f}: no such gin file; give the path to an existing .gin file (e.g. experiments/quickstart.gin)")
        gin.add_config_file_search_path(str(path.resolve().parent))
    gin.add_config_file_search_path(str(REPO_ROOT))
    try:
        gin.parse_config_files_and_bindings([str(f) for f in files], list(bindings), finalize_config=finalize)
    except (ValueError, SyntaxError, TypeError, KeyError) as exc:
        if isinstance(exc, UserError):
            raise
        raise explain_gin_error(exc) from exc
    except ImportError as exc:  # a gin `import my_plugin` line
        raise UserError(f"gin import failed: cannot import '{exc.name}'; check the `import` line or pass --plugin FILE.py") from exc
    except IOError as exc:
        raise UserError(f"gin include failed: {exc}; includes are resolved relative to the gin file and the repo root") from exc
    gin_check.check_unread_macros(gin.config_str(), bindings)


def finish(bindings: Sequence[str] = ()) -> None:
    """Add ``bindings`` to a config parsed with ``finalize=False``, then finalize it."""
    try:
        gin.parse_config(list(bindings))
    except (ValueError, SyntaxError, TypeError, KeyError) as exc:
        raise explain_gin_error(exc) from exc
    gin.finalize()


def operative_config() -> str:
    return gin.operative_config_str()


def config_str() -> str:
    return gin.config_str()


def macro(name: str, default=None):
    """Value of gin macro ``name`` (``default`` when unset)."""
    try:
        return gin.query_parameter(f"{name}/gin.macro.value")
    except ValueError:
        return default
