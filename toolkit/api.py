"""The Python API: ``Separator.from_checkpoint(path)(audio, rate) -> (vocals, instrumental)``.

The same engine as ``toolkit separate``: the checkpoint records every part
(by registered name and arguments), the prediction target and the sampling
defaults, so nothing has to be told twice.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import checkpoint, parts, registry
from .errors import UserError
from .model import placed
from .diffusion import check_sampling_steps
from .sampling_start import check_start
from .precision import resolve_device, resolve_precision
from .sampling import check_sampler_options
from .separate import Engine, separate_array
from .signal import POST_FILTERS


class Separator:
    """Vocals and instrumental from a mixture, with a trained checkpoint's EMA weights."""

    def __init__(self, engine: Engine, meta: dict):
        self.engine = engine
        self.meta = meta

    @classmethod
    def from_checkpoint(cls, path, *, sampler: str | None = None, steps: int | None = None, eta: float | None = None,
                        post_filter: str | None = None, seed: int = 0, segment: float | None = None,
                        start: str | None = None, start_t: float | None = None,
                        overlap: float = 0.25, batch_size: int = 4, device: str = "auto",
                        precision: str = "auto", sampler_options: dict | None = None,
                        samples: int = 1) -> "Separator":
        """The checkpoint's EMA model with its recorded sampling settings; each argument given overrides one.

        ``sampler_options`` (e.g. ``{'clip_x0': 'mixture'}``) are added to the
        sampler's recorded ones; ``samples`` K averages K samples' magnitudes.
        """
        registry.load_builtin_plugins()
        dev = resolve_device(device)
        state = checkpoint.load(path, map_location=dev)
        meta = state.get("meta") or {}
        records = meta.get("parts")
        if not records:
            raise UserError(f"{path}: checkpoint has no model description (meta.parts); it was not written by `toolkit run`")
        prec = resolve_precision(precision, dev)
        try:
            built = parts.build_parts(records, with_loss=False)
        except (UserError, TypeError, ValueError, KeyError) as exc:  # a hand-edited or foreign meta.parts
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{path}: cannot rebuild the model its meta describes ({why}); "
                            "the checkpoint was edited or mixed up: use the file `toolkit run` wrote") from exc
        try:
            built.net.load_state_dict(state["ema"]["model"])
        except RuntimeError as exc:
            backbone = records["backbone"]
            operative = parts.record_in_config(state.get("config") or "", "backbones", backbone.get("name", ""))
            differ = [d for d in parts.differences(backbone, operative, label="operative config:")
                      if d.split("=")[0] in operative["kwargs"]]
            why = f"its meta says {', '.join(differ)}" if differ else _mismatch(exc)
            raise UserError(f"{path}: weights do not fit the recorded backbone {backbone.get('name')} ({why}); "
                            "the checkpoint was edited or mixed up: use the file `toolkit run` wrote") from exc
        net = placed(built.net, dev).eval()
        if steps is not None:
            check_sampling_steps(steps, built.diffusion.num_timesteps, "--steps")
        if post_filter is not None and post_filter not in POST_FILTERS:
            raise UserError(f"--post-filter {post_filter}: unknown; choose one of {', '.join(POST_FILTERS)}")
        if segment is not None:
            parts.check_segment(float(segment), built.sample_rate, getattr(built.transform, "n_fft", None), "--segment")
        if not 0 <= overlap < 1:
            raise UserError(f"--overlap {overlap} must be in [0, 1)")
        if batch_size < 1:
            raise UserError(f"--batch-size {batch_size} must be >= 1")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise UserError(f"--samples {samples} must be a whole number >= 1 (how many samples are averaged)")
        if start == "noise" and start_t is None:
            start_t = 1.0  # pure noise starts at the top, whatever the checkpoint's start was
        settings = built.settings(sampler=sampler, steps=steps, post_filter=post_filter, seed=seed, start=start,
                                  start_t=start_t,
                                  segment_seconds=None if segment is None else float(segment), overlap=overlap,
                                  batch_size=batch_size, samples=samples)
        settings.sampler_options.update(sampler_options or {})
        if eta is not None:
            settings.sampler_options["eta"] = float(eta)
        check_start(settings.start, settings.start_t, settings.steps, built.diffusion.num_timesteps,
                    "--start" if start is not None or start_t is not None else "the checkpoint's sampling start")
        check_sampler_options(settings.sampler, settings.sampler_options,
                              "--eta" if eta is not None else "sampler options" if sampler_options
                              else "the checkpoint's sampler options")
        engine = built.engine(net, device=dev, precision=prec, settings=settings)
        return cls(engine, {**meta, "step": state.get("step")})

    def __call__(self, audio, sample_rate: int, progress: Callable | None = None, given=None):
        """audio: (channels, samples), (batch, channels, samples) or (samples,) -> (vocals, instrumental), same shape.

        Tensors or arrays; integer PCM is scaled to [-1, 1]. A
        ``(samples, channels)`` array is refused before anything is
        allocated (pass ``audio.T``). ``given``: another separator's
        instrumental estimate, shaped like ``audio``, that a Separator made
        with ``start='given'`` refines.
        """
        batch, layout = as_batch(audio)
        givens = [None] * len(batch)
        if given is not None:
            givens, _ = as_batch(given)
            if givens.shape != batch.shape:
                raise UserError(f"given estimate of shape {tuple(np.shape(given))}: expected the audio's shape {tuple(np.shape(audio))}")
        pairs = [separate_array(self.engine, item, int(sample_rate), on_chunk=progress, given=g)
                 for item, g in zip(batch, givens)]
        vocals = np.stack([v for v, _ in pairs])
        instrumental = np.stack([i for _, i in pairs])
        if layout == "samples":
            vocals, instrumental = vocals[0, 0], instrumental[0, 0]
        elif layout == "channels samples":
            vocals, instrumental = vocals[0], instrumental[0]
        return torch.from_numpy(vocals), torch.from_numpy(instrumental)


# More channels than this on the channel axis is a (samples, channels) array, not a recording.
MAX_CHANNELS = 16
_LAYOUTS = {1: "samples", 2: "channels samples", 3: "batch channels samples"}


def as_batch(audio) -> tuple[np.ndarray, str]:
    """``(audio: (batch, channels, samples) float32, layout as given)``; the layout checked before any copy.

    Integer PCM is divided by its full scale (int16 by 32768, uint8
    centred on 128), so every input lands in [-1, 1].
    """
    if not isinstance(audio, (torch.Tensor, np.ndarray)):
        audio = np.asarray(audio)
    shape = tuple(audio.shape)
    layout = _LAYOUTS.get(len(shape))
    if layout is None:
        raise UserError(f"audio of shape {shape}: expected (channels, samples), (batch, channels, samples) or (samples,)")
    if len(shape) >= 2 and shape[-2] > MAX_CHANNELS:
        flipped = "(batch, samples, channels)" if len(shape) == 3 else "(samples, channels)"
        fix = "audio.transpose(1, 2)" if len(shape) == 3 else "audio.T"
        raise UserError(f"audio of shape {shape} has {shape[-2]} channels: it looks like {flipped}; "
                        f"expected (channels, samples) or (batch, channels, samples): pass {fix}")
    if 0 in shape:
        raise UserError(f"audio of shape {shape} is empty: expected (channels, samples) with samples > 0")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = audio.numpy() if audio.dtype != torch.bfloat16 else audio.float().numpy()
    audio = _to_float(audio)
    if len(shape) == 1:
        audio = audio[None, None]
    elif len(shape) == 2:
        audio = audio[None]
    return audio, layout


def _to_float(audio: np.ndarray) -> np.ndarray:
    if audio.dtype == np.bool_ or not np.issubdtype(audio.dtype, np.number) or np.iscomplexobj(audio):
        raise UserError(f"audio of dtype {audio.dtype}: expected float or integer PCM samples")
    if np.issubdtype(audio.dtype, np.unsignedinteger):
        half = float(np.iinfo(audio.dtype).max // 2 + 1)
        return ((audio.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(audio.dtype, np.integer):
        return (audio.astype(np.float32) / float(-np.iinfo(audio.dtype).min)).astype(np.float32)
    return np.asarray(audio, dtype=np.float32)


def _mismatch(exc: Exception) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "size mismatch for" in line or "Missing key" in line or "Unexpected key" in line:
            return line.strip()[:240]
    return text.splitlines()[0][:240] if text else type(exc).__name__
