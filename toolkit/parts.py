"""Build registered parts and record how they were built.

A checkpoint stores, for each part, its registered name and the keyword
arguments it was built with (gin bindings + explicit ones), in plain types,
so that ``separate``/``evaluate`` rebuild the same model without the gin
file, and a mismatch can be named parameter by parameter.
"""
from __future__ import annotations

import gin

from . import registry


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or type(value) in (bool, int, float, str):
        return value
    for kind in (bool, int, float, str):  # subclasses (TorchVersion, numpy scalars) -> plain types
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return str(value)


plain = _plain


def bindings_of(kind: str, name: str) -> dict:
    try:
        bound = gin.get_bindings(f"{kind}.{name}")
    except (ValueError, KeyError):
        bound = {}
    return {k: _plain(v) for k, v in bound.items()}


def build(kind: str, name_or_obj, **explicit):
    """Build a part; returns (object, record) with record = {'name', 'kwargs'}."""
    name = registry.name_of(kind, name_or_obj)
    factory = registry.get(kind, name)
    obj = factory(**explicit)
    record = {"name": name, "kwargs": {**bindings_of(kind, name), **_plain(explicit)}}
    return obj, record


def rebuild(kind: str, record: dict):
    """Build a part from a record, outside any gin scope (bindings cleared by the caller)."""
    factory = registry.get(kind, record["name"])
    kwargs = dict(record.get("kwargs", {}))
    return factory(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def differences(recorded: dict | None, current: dict | None) -> list[str]:
    """``['base_channels=16 (now 8)', ...]``: the arguments where two records of one part disagree.

    Names the gin parameters behind a weight-shape mismatch, so "size mismatch
    for backbone.time_mlp.0.weight" becomes "base_channels=16 (now 8)".
    """
    if not recorded or not current:
        return []
    if recorded.get("name") != current.get("name"):
        return [f"{recorded.get('name')} (now {current.get('name')})"]
    old, new = _plain(recorded.get("kwargs") or {}), _plain(current.get("kwargs") or {})
    return [f"{k}={old.get(k)!r} (now {new.get(k)!r})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
