"""Chunked separation of whole tracks with overlap-add, in bounded memory.

A track is cut, at its own sample rate, into segments of the model's
training length with overlap; each segment is resampled to the model's rate,
mixed to its channels, separated, and brought back; segments are recombined
by a windowed overlap-add normalised by the summed window (as Asteroid's
``LambdaOverlapAdd`` and Demucs' ``apply_model`` do). Only the instrumental
is estimated: vocals = mixture - instrumental at the input's own rate, so
the two outputs always sum to the input.

Peak memory depends on the segment and batch size, never on the track
length: :func:`separate_file` streams from and to disk.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from einops import rearrange

from . import registry
from .audio import resample
from .model import raw_fn
from .sampling import check_sampler_options
from .sampling_start import check_start, starting_point
from .settings import SeparationSettings
from .signal import instrumental_to_vocals, post_filter as apply_post_filter


def ola_window(length: int) -> torch.Tensor:
    """Hann window floored at 1e-3 so the normalising sum never vanishes: (length,)."""
    return torch.hann_window(length, periodic=False, dtype=torch.float64).clamp_min(1e-3).float()


class Engine:
    """Separates batches of model-rate segments: (n, channels, samples) -> instrumental (same)."""

    def __init__(self, net, diffusion, transform, *, sample_rate: int, channels: int, device, precision: str,
                 settings: SeparationSettings):
        self.net = net.eval()
        self.diffusion = diffusion
        self.transform = transform
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.device = device
        self.precision = precision
        self.settings = settings
        check_sampler_options(settings.sampler, settings.sampler_options, "sampler options")
        check_start(settings.start, settings.start_t, settings.steps, diffusion.num_timesteps, "sampling start")
        self.sampler = registry.get("samplers", settings.sampler)
        self.model_fn = raw_fn(self.net, device, precision)

    @torch.inference_mode()
    def instrumental(self, mixture: torch.Tensor, seeds: list[int], progress: Callable | None = None,
                     given: torch.Tensor | None = None) -> torch.Tensor:
        """mixture: (n, channels, samples) at the model rate -> instrumental (n, channels, samples).

        ``given``: another system's instrumental estimate, like ``mixture``, that start ``'given'`` refines.
        """
        mixture = mixture.to(self.device, torch.float32)
        cond, state = self.transform.encode(mixture)
        guess = None if given is None else self.transform.encode_with(given.to(self.device, torch.float32), state)
        # K samples, sample k from seeds shifted by k: the mean of their magnitudes (the posterior mean as K grows)
        magnitudes = [self.transform.magnitude(self.sample(cond, [int(sd) + 104_729 * k for sd in seeds], progress, guess),
                                               state) for k in range(self.settings.samples)]
        inst_mag = torch.stack(magnitudes).mean(0)
        mix_stft = self.transform.stft(mixture)
        voc_mag, inst_mag = instrumental_to_vocals(mix_stft.abs(), inst_mag)
        _, inst_stft = apply_post_filter(mix_stft, voc_mag, inst_mag, kind=self.settings.post_filter)
        return self.transform.istft(inst_stft, mixture.shape[-1])

    def sample(self, cond: torch.Tensor, seeds: list[int], progress: Callable | None = None,
               guess: torch.Tensor | None = None) -> torch.Tensor:
        """One sample x0 of the instrumental given ``cond: (n, channels, freq, frames)``, clamped to [-1, 1]; item i's noise
        from ``seeds[i]``; ``guess`` (like ``cond``): the estimate that start ``'given'`` refines."""
        s = self.settings
        noise = torch.stack([
            torch.randn(cond.shape[1:], generator=torch.Generator().manual_seed(seed))
            for seed in seeds
        ]).to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(seeds[0] + 7919)
        diffusion, x_T, steps = starting_point(self.diffusion, self.model_fn, cond, noise, start=s.start,
                                               start_t=s.start_t, steps=s.steps, generator=generator, given=guess)
        kwargs = dict(cond=cond, steps=steps, generator=generator)
        if progress is not None:
            kwargs["callback"] = progress
        return self.sampler(self.model_fn, diffusion, x_T, **kwargs, **s.sampler_options).float().clamp(-1, 1)


def chunk_starts(total: int, segment: int, hop: int) -> list[int]:
    """Start offsets covering [0, total) with segments of ``segment`` every ``hop``."""
    if total <= segment:
        return [0]
    n = math.ceil((total - segment) / hop) + 1
    return [k * hop for k in range(n)]


def separate_stream(engine: Engine, read: Callable[[int, int], np.ndarray], total: int, sample_rate: int,
                    on_chunk: Callable[[int, int], None] | None = None,
                    read_given: Callable[[int, int], np.ndarray] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, instrumental_block (channels, n))`` finalised blocks in order.

    ``read(start, n) -> (channels, n)`` float32 audio at ``sample_rate`` (zero
    beyond the end). The blocks tile [0, total) exactly. ``read_given``, read
    like ``read``: the instrumental estimate that start ``'given'`` refines.
    """
    s = engine.settings
    segment = max(1, int(round(s.segment_seconds * sample_rate)))
    hop = max(1, int(round(segment * (1.0 - s.overlap))))
    starts = chunk_starts(total, segment, hop)
    window = ola_window(segment).numpy() if len(starts) > 1 else np.ones(segment, np.float32)
    acc = wsum = None
    acc_start = 0
    for b in range(0, len(starts), s.batch_size):
        batch_starts = starts[b:b + s.batch_size]
        chunks = np.stack([read(st, segment) for st in batch_starts])  # (n, channels_in, segment)
        given = None if read_given is None else np.stack([read_given(st, segment) for st in batch_starts])
        inst = _separate_chunks(engine, chunks, sample_rate, [s.seed * 1_000_003 + b + i for i in range(len(batch_starts))],
                                given)
        for i, st in enumerate(batch_starts):
            if acc is None:
                acc = np.zeros((chunks.shape[1], 0), np.float64)
                wsum = np.zeros(0, np.float64)
            need = st + segment - acc_start
            if acc.shape[1] < need:
                acc = np.pad(acc, ((0, 0), (0, need - acc.shape[1])))
                wsum = np.pad(wsum, (0, need - wsum.shape[0]))
            off = st - acc_start
            acc[:, off:off + segment] += inst[i] * window
            wsum[off:off + segment] += window
            k = b + i
            final_until = min(total, starts[k + 1]) if k + 1 < len(starts) else total
            n_final = final_until - acc_start
            if n_final > 0:
                block = (acc[:, :n_final] / wsum[:n_final]).astype(np.float32)
                yield acc_start, block
                acc = acc[:, n_final:]
                wsum = wsum[n_final:]
                acc_start = final_until
            if on_chunk:
                on_chunk(k + 1, len(starts))


def _model_items(engine: Engine, chunks: np.ndarray, sample_rate: int) -> torch.Tensor:
    """chunks: (n, channels_in, segment) at ``sample_rate`` -> the engine's items at its rate and channel count."""
    x = resample(torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32)), sample_rate, engine.sample_rate)
    if engine.channels == 1:
        return rearrange(x, "n c s -> (n c) 1 s")
    if x.shape[1] == engine.channels:
        return x
    return x.mean(1, keepdim=True).expand(-1, engine.channels, -1).contiguous()  # e.g. mono input, stereo model


def _separate_chunks(engine: Engine, chunks: np.ndarray, sample_rate: int, seeds: list[int],
                     given: np.ndarray | None = None) -> np.ndarray:
    """chunks (and ``given``, an estimate to refine): (n, channels_in, segment) at ``sample_rate`` -> instrumental, same shape."""
    n, c_in, length = chunks.shape
    items = _model_items(engine, chunks, sample_rate)
    item_seeds = [sd * 16 + ch for sd in seeds for ch in range(c_in)] if engine.channels == 1 else seeds
    out = engine.instrumental(items, item_seeds,
                              given=None if given is None else _model_items(engine, given, sample_rate)).float().cpu()
    if engine.channels == 1:
        out = rearrange(out, "(n c) 1 s -> n c s", n=n)
    elif c_in != engine.channels:
        out = out.mean(1, keepdim=True).expand(-1, c_in, -1)
    out = resample(out, engine.sample_rate, sample_rate)
    if out.shape[-1] < length:
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    return out[..., :length].numpy()


def separate_array(engine: Engine, mixture: np.ndarray, sample_rate: int, on_chunk=None,
                   given: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mixture (and ``given``, an instrumental estimate to refine): (channels, samples) float32 -> (vocals, instrumental)."""
    mixture = np.asarray(mixture, dtype=np.float32)
    total = mixture.shape[1]

    def reader(audio):
        def read(start, n):
            block = audio[:, start:start + n]
            return np.pad(block, ((0, 0), (0, n - block.shape[1]))) if block.shape[1] < n else block
        return read

    read_given = None if given is None else reader(np.asarray(given, dtype=np.float32))
    instrumental = np.zeros_like(mixture)
    for start, block in separate_stream(engine, reader(mixture), total, sample_rate, on_chunk, read_given):
        instrumental[:, start:start + block.shape[1]] = block
    vocals = mixture - instrumental
    return vocals, instrumental
