"""The Python API: ``Separator.from_checkpoint(path)(audio, rate) -> (vocals, instrumental)``.

The same engine as ``toolkit separate``: the checkpoint records every part
(by registered name and arguments), the prediction target and the sampling
defaults, so nothing has to be told twice.
"""
from __future__ import annotations

import ast
import re
from typing import Callable

import numpy as np
import torch

from . import checkpoint, parts, registry
from .diffusion import GaussianDiffusion
from .errors import UserError
from .model import Denoiser
from .precision import resolve_device, resolve_precision
from .separate import POST_FILTERS, Engine, SeparationSettings, separate_array


class Separator:
    """Vocals and instrumental from a mixture, with a trained checkpoint's EMA weights."""

    def __init__(self, engine: Engine, meta: dict):
        self.engine = engine
        self.meta = meta

    @classmethod
    def from_checkpoint(cls, path, *, sampler: str | None = None, steps: int | None = None, eta: float | None = None,
                        post_filter: str | None = None, seed: int = 0, segment: float | None = None,
                        overlap: float = 0.25, batch_size: int = 4, device: str = "auto",
                        precision: str = "auto") -> "Separator":
        registry.load_builtin_plugins()
        state = checkpoint.load(path)
        meta = state.get("meta") or {}
        records = meta.get("parts")
        if not records:
            raise UserError(f"{path}: checkpoint has no model description (meta.parts); it was not written by `toolkit run`")
        sampling = dict(records["sampling"])
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        try:
            transform = parts.rebuild("transforms", records["transform"])
            backbone = parts.rebuild("backbones", records["backbone"])
        except (UserError, TypeError, ValueError, KeyError) as exc:  # a hand-edited or foreign meta.parts
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{path}: cannot rebuild the model its meta describes ({why}); "
                            "the checkpoint was edited or mixed up: use the file `toolkit run` wrote") from exc
        net = Denoiser(backbone)
        try:
            net.load_state_dict(state["ema"]["model"])
        except RuntimeError as exc:
            differ = _disagreements(records["backbone"], state.get("config") or "")
            why = f"its meta says {', '.join(differ)}" if differ else _mismatch(exc)
            raise UserError(f"{path}: weights do not fit the recorded backbone {records['backbone'].get('name')} ({why}); "
                            "the checkpoint was edited or mixed up: use the file `toolkit run` wrote") from exc
        net = net.to(dev).eval()
        if dev.type in ("cpu", "cuda"):
            net = net.to(memory_format=torch.channels_last)
        sched = records["schedule"]
        kwargs = dict(sched["kwargs"])
        num_timesteps = kwargs.pop("num_timesteps")
        betas = registry.get("schedules", sched["name"])(num_timesteps, **kwargs)
        diffusion = GaussianDiffusion(betas, prediction=sampling["prediction"])
        options = dict(sampling.get("options") or {})
        if eta is not None:
            options["eta"] = float(eta)
        chosen_steps = steps if steps is not None else sampling["steps"]
        if chosen_steps is not None and not (1 <= int(chosen_steps) <= num_timesteps):
            raise UserError(f"--steps {chosen_steps} must be in 1..{num_timesteps} (the model's training timesteps)")
        pf = post_filter or sampling.get("post_filter", "none")
        if pf not in POST_FILTERS:
            raise UserError(f"--post-filter {pf}: unknown; choose one of {', '.join(POST_FILTERS)}")
        seg = float(segment) if segment is not None else float(sampling["segment_seconds"])
        if not seg > 0:
            raise UserError(f"--segment {segment} must be > 0 seconds")
        if not 0 <= overlap < 1:
            raise UserError(f"--overlap {overlap} must be in [0, 1)")
        if batch_size < 1:
            raise UserError(f"--batch-size {batch_size} must be >= 1")
        min_seconds = transform.n_fft / float(sampling["sample_rate"]) if hasattr(transform, "n_fft") else 0
        if seg < min_seconds:
            raise UserError(f"--segment {seg} s is shorter than one STFT frame ({min_seconds:.3f} s); use a longer segment")
        settings = SeparationSettings(sampler=sampler or sampling["sampler"], steps=chosen_steps,
                                      sampler_options=options if not sampler or sampler == sampling["sampler"] else
                                      ({"eta": float(eta)} if eta is not None else {}),
                                      post_filter=pf, segment_seconds=seg, overlap=overlap, batch_size=batch_size, seed=seed)
        engine = Engine(net, diffusion, transform, sample_rate=sampling["sample_rate"], channels=sampling["channels"],
                        device=dev, precision=prec, settings=settings)
        return cls(engine, {**meta, "step": state.get("step")})

    def __call__(self, audio, sample_rate: int, progress: Callable | None = None):
        """audio: (channels, samples) or (samples,) tensor/array -> (vocals, instrumental) tensors, same shape."""
        is_tensor = isinstance(audio, torch.Tensor)
        arr = audio.detach().cpu().float().numpy() if is_tensor else np.asarray(audio, dtype=np.float32)
        squeeze = arr.ndim == 1
        if squeeze:
            arr = arr[None]
        vocals, instrumental = separate_array(self.engine, arr, int(sample_rate), on_chunk=progress)
        if squeeze:
            vocals, instrumental = vocals[0], instrumental[0]
        return torch.from_numpy(vocals), torch.from_numpy(instrumental)


def _mismatch(exc: Exception) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "size mismatch for" in line or "Missing key" in line or "Unexpected key" in line:
            return line.strip()[:240]
    return text.splitlines()[0][:240] if text else type(exc).__name__


def _disagreements(record: dict, operative: str) -> list[str]:
    """``['base_channels=16 (operative config: 8)']``: recorded backbone arguments the operative config contradicts."""
    name = record.get("name", "")
    out = []
    for key, value in (record.get("kwargs") or {}).items():
        m = re.search(rf"^(?:backbones\.)?{re.escape(name)}\.{re.escape(key)} = (.+)$", operative, re.MULTILINE)
        if not m:
            continue
        try:
            used = parts.plain(ast.literal_eval(m.group(1).strip()))
        except (ValueError, SyntaxError):
            continue
        if used != value:
            out.append(f"{key}={value!r} (operative config: {m.group(1).strip()})")
    return out
