"""Records -> built parts: the one place that assembles a model.

A record is a part's registered name and the keyword arguments it is built
with (gin bindings + explicit ones), in plain types. ``toolkit run`` takes
the records from the gin config in force (:func:`experiment_records`); a
checkpoint keeps them in ``meta.parts``; :func:`build_parts` turns either
into the same :class:`Parts`, for training, separation, evaluation and
sweeps alike, and :func:`differences` names the arguments where two records
of one part disagree.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import gin

from . import registry
from .checkpoint import plain
from .diffusion import GaussianDiffusion
from .errors import UserError
from .model import Denoiser
from .separate import Engine
from .settings import SeparationSettings


def bindings_of(kind: str, name: str) -> dict:
    """The gin bindings in force for ``<kind>.<name>``, in plain types."""
    try:
        bound = gin.get_bindings(f"{kind}.{name}")
    except (ValueError, KeyError):
        bound = {}
    return {k: plain(v) for k, v in bound.items()}


def record(kind: str, name_or_obj, **explicit) -> dict:
    """``{'name', 'kwargs'}`` of a part as the gin config in force would build it."""
    name = registry.name_of(kind, name_or_obj)
    return {"name": name, "kwargs": {**bindings_of(kind, name), **plain(explicit)}}


def build(kind: str, name_or_obj, **explicit):
    """Build a part under the gin config in force; returns ``(object, record)``."""
    rec = record(kind, name_or_obj, **explicit)
    return registry.get(kind, rec["name"])(**explicit), rec


def rebuild(kind: str, rec: dict):
    """Build a part from its record (lists become tuples, as gin passes them).

    Arguments that the gin config in force binds to the recorded value are left
    to gin, so that a run's operative config lists them; every other recorded
    argument is passed explicitly, so the record always wins.
    """
    factory = registry.get(kind, rec["name"])
    bound = bindings_of(kind, rec["name"])
    kwargs = {k: v for k, v in (rec.get("kwargs") or {}).items() if k not in bound or bound[k] != v}
    return factory(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def differences(recorded: dict | None, current: dict | None, label: str = "now") -> list[str]:
    """``['base_channels=16 (now 8)', ...]``: the arguments where two records of one part disagree.

    Names the gin parameters behind a weight-shape mismatch, so "size mismatch
    for backbone.time_mlp.0.weight" becomes "base_channels=16 (now 8)".
    """
    if not recorded or not current:
        return []
    if recorded.get("name") != current.get("name"):
        return [f"{recorded.get('name')} ({label} {current.get('name')})"]
    old, new = plain(recorded.get("kwargs") or {}), plain(current.get("kwargs") or {})
    return [f"{k}={old.get(k)!r} ({label} {new.get(k)!r})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def record_in_config(config_text: str, kind: str, name: str) -> dict:
    """The record of ``<kind>.<name>`` as an operative-config text binds it (values it cannot parse are left out)."""
    kwargs = {}
    pattern = rf"^(?:{re.escape(kind)}\.)?{re.escape(name)}\.(\w+) = (.+)$"
    for key, value in re.findall(pattern, config_text or "", re.MULTILINE):
        try:
            kwargs[key] = plain(ast.literal_eval(value.strip()))
        except (ValueError, SyntaxError):
            continue
    return {"name": name, "kwargs": kwargs}


def experiment_records(exp, dataset) -> dict:
    """The records of ``exp``'s parts under the gin config in force; ``dataset`` is its built training set.

    Keys: ``transform, backbone, schedule, loss, dataset, sampling``; ``sampling``
    holds the separation defaults and the data's rate, channels and segment length.
    """
    channels = int(dataset.channels)
    sample_rate = int(dataset.sample_rate)
    schedule = record("schedules", exp.schedule, num_timesteps=exp.num_timesteps)
    return {
        "dataset": {**record("datasets", exp.dataset), "root": str(dataset.root)},
        "transform": record("transforms", exp.transform),
        "backbone": record("backbones", exp.backbone, in_channels=2 * channels, out_channels=channels),
        "schedule": schedule,
        "loss": record("losses", exp.loss),
        "sampling": {
            "sampler": registry.name_of("samplers", exp.sampler), "steps": exp.sampling_steps,
            "options": plain(exp.sampler_options), "post_filter": exp.post_filter, "prediction": exp.prediction,
            "start": exp.sampling_start, "start_t": float(exp.sampling_start_t),
            "sample_rate": sample_rate, "channels": channels, "segment_seconds": float(dataset.segment_seconds),
            "seed": exp.seed,
        },
    }


@dataclass
class Parts:
    """A model's parts built from their records: transform, denoiser, diffusion and (for training) the loss."""

    records: dict
    transform: object
    net: Denoiser
    diffusion: GaussianDiffusion
    loss_fn: object | None

    @property
    def sampling(self) -> dict:
        return self.records["sampling"]

    @property
    def sample_rate(self) -> int:
        return int(self.sampling["sample_rate"])

    @property
    def channels(self) -> int:
        return int(self.sampling["channels"])

    @property
    def segment_seconds(self) -> float:
        return float(self.sampling["segment_seconds"])

    def settings(self, **overrides) -> SeparationSettings:
        """The recorded sampling defaults with ``overrides`` (None values keep the default)."""
        s = self.sampling
        chosen = {"sampler": s["sampler"], "steps": s["steps"], "sampler_options": dict(s.get("options") or {}),
                  "post_filter": s.get("post_filter", "none"), "start": s.get("start", "noise"),
                  "start_t": float(s.get("start_t", 1.0)), "segment_seconds": self.segment_seconds,
                  "seed": int(s.get("seed", 0))}
        if overrides.get("sampler") not in (None, s["sampler"]):
            chosen["sampler_options"] = {}  # the recorded options belong to the recorded sampler
        chosen.update({k: v for k, v in overrides.items() if v is not None})
        return SeparationSettings(**chosen)

    def engine(self, model=None, *, device, precision: str, settings: SeparationSettings | None = None) -> Engine:
        """The separation engine around ``model`` (default: :attr:`net`, e.g. pass the EMA weights)."""
        return Engine(model if model is not None else self.net, self.diffusion, self.transform,
                      sample_rate=self.sample_rate, channels=self.channels, device=device, precision=precision,
                      settings=settings or self.settings())


def build_parts(records: dict, *, with_loss: bool = True) -> Parts:
    """Build every part from ``records`` (:func:`experiment_records` or a checkpoint's ``meta.parts``)."""
    transform = rebuild("transforms", records["transform"])
    net = Denoiser(rebuild("backbones", records["backbone"]))
    betas = rebuild("schedules", records["schedule"])
    diffusion = GaussianDiffusion(betas, prediction=records["sampling"]["prediction"])
    loss_fn = rebuild("losses", records["loss"]) if with_loss else None
    return Parts(records, transform, net, diffusion, loss_fn)


def check_segment(seconds: float, sample_rate: float, n_fft: int | None, name: str) -> None:
    """A segment must hold one STFT frame; ``name`` is how the user set it (``SEGMENT_SECONDS``, ``--segment``)."""
    if not seconds > 0:
        raise UserError(f"{name} = {seconds} must be > 0 seconds")
    if isinstance(n_fft, int) and seconds * sample_rate < n_fft:
        shortest = -(-n_fft * 1000 // int(sample_rate)) / 1000
        raise UserError(f"{name} = {seconds:g} ({seconds * sample_rate:.0f} samples at {sample_rate:g} Hz) is shorter than "
                        f"one STFT frame (n_fft = {n_fft}); use {name} >= {shortest:g}")
