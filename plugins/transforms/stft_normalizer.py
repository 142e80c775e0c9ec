"""STFT magnitude, compressed and min-max normalized per item, with its exact inverse.

The diffusion model works on ``spec: (batch, channels, freq, frames)`` in
[-1, 1]: the magnitude STFT of the mixture raised to ``power``, compressed
(``log1p`` by default, as in Diff-MSST and most diffusion vocoders: it
evens out the huge dynamic range of music spectra) and scaled per item so
that item's minimum maps to -1 and maximum to 1. :class:`SpecState` keeps
what the inverse needs: the mixture phase, each item's min/max and the
signal length. Statistics are per item, never over the batch, so an item's
spectrogram does not depend on what else was batched with it.

Instrument and vocal targets are normalized with the *mixture's* state
(:meth:`STFTNormalizer.encode_with`), so target and condition share one
scale and ``mixture = instrumental + vocals`` keeps meaning in magnitude.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange

from toolkit import registry
from toolkit.errors import UserError
from toolkit.signal import complex_abs, rescaled, unit_phasor

from .. import cpu_kernels

WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
COMPRESSIONS = ("log1p", "log", "none")
NORMALIZATIONS = ("minmax", "none")


@dataclass
class SpecState:
    """What :meth:`STFTNormalizer.decode` needs to invert :meth:`~STFTNormalizer.encode`.

    stft: (batch, channels, freq, frames) complex STFT of the mixture.
    mag: (batch, channels, freq, frames) its magnitude, ``stft.abs()``.
    lo, hi: (batch,) per-item min and max of the compressed magnitude.
    length: samples per item of the original audio.

    The mixture phase is kept as the STFT and its magnitude rather than as unit
    phasors: decoding rescales the STFT in one multiply, and encoding a training
    batch, which never decodes, does not pay for phasors it would not use.
    """

    stft: torch.Tensor
    mag: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    length: int

    @property
    def phase(self) -> torch.Tensor:
        """(batch, channels, freq, frames) complex unit phasors of the mixture (1 where it is exactly silent)."""
        return unit_phasor(self.stft, self.mag)

    def select(self, index) -> "SpecState":
        """The state of some items: ``index`` is an int, slice, list or bool/long tensor over batch."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return replace(self, stft=self.stft[index], mag=self.mag[index], lo=self.lo[index], hi=self.hi[index])

    def to(self, device) -> "SpecState":
        return replace(self, stft=self.stft.to(device), mag=self.mag.to(device), lo=self.lo.to(device),
                       hi=self.hi.to(device))


@functools.lru_cache(maxsize=32)
def _cached_window(kind: str, n_fft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The analysis window, built once per kind, size, dtype and device (building it is ~10 small ops; callers never write to it).

    Built outside inference mode even when first asked for inside it, so a later
    STFT that autograd records can still save it.
    """
    with torch.inference_mode(False):
        return WINDOWS[kind](n_fft, dtype=dtype, device=device)


def _dense(x: torch.Tensor) -> bool:
    """Whether x's elements fill a block of memory exactly once (some permutation of a contiguous layout)."""
    expected = 1
    for size, stride in sorted(zip(x.shape, x.stride()), key=lambda d: d[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UserError(f"transforms.stft_normalizer.{name} = {value!r} is not allowed; use one of {', '.join(map(repr, allowed))}")


@registry.register("transforms", "stft_normalizer")
class STFTNormalizer:
    """STFT magnitude -> power -> compression -> per-item min-max to [-1, 1], invertible with the kept phase."""

    def __init__(
        self,
        n_fft: int = 2048,
        hop_length: int = 512,
        window: str = "hann",
        center: bool = True,
        power: float = 1.0,
        compression: str = "log1p",
        normalization: str = "minmax",
        eps: float = 1e-8,
    ):
        if not isinstance(n_fft, int) or n_fft < 2:
            raise UserError(f"transforms.stft_normalizer.n_fft = {n_fft!r}; use an integer >= 2 (e.g. 2048)")
        if not isinstance(hop_length, int) or not 1 <= hop_length < n_fft:
            raise UserError(
                f"transforms.stft_normalizer.hop_length = {hop_length!r}; use an integer in [1, n_fft) (e.g. n_fft // 4) so the STFT is invertible"
            )
        _choice("window", window, tuple(WINDOWS))
        _choice("compression", compression, COMPRESSIONS)
        _choice("normalization", normalization, NORMALIZATIONS)
        if not (isinstance(power, (int, float)) and power > 0 and math.isfinite(power)):
            raise UserError(f"transforms.stft_normalizer.power = {power!r}; use a positive number (1: magnitude, 2: power)")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise UserError(f"transforms.stft_normalizer.eps = {eps!r}; use a small positive number (e.g. 1e-8)")
        self.n_fft, self.hop_length, self.window, self.center = n_fft, hop_length, window, bool(center)
        self.power, self.compression, self.normalization, self.eps = float(power), compression, normalization, float(eps)

    def __repr__(self) -> str:
        return (
            f"STFTNormalizer(n_fft={self.n_fft}, hop_length={self.hop_length}, window={self.window!r}, "
            f"center={self.center}, power={self.power}, compression={self.compression!r}, "
            f"normalization={self.normalization!r}, eps={self.eps})"
        )

    # ----- shapes -----------------------------------------------------------
    @property
    def freq_bins(self) -> int:
        return self.n_fft // 2 + 1

    def _padded_length(self, length: int) -> int:
        """Samples the STFT actually sees: short inputs get zeros appended (never a crash)."""
        if self.center:
            return max(length, self.n_fft // 2 + 1)  # reflect padding needs more than n_fft // 2 samples
        # Without centering, pad to whole frames so the tail is not silently dropped.
        length = max(length, self.n_fft)
        return self.n_fft + math.ceil((length - self.n_fft) / self.hop_length) * self.hop_length

    def num_frames(self, length: int) -> int:
        """Frames of :meth:`stft` for ``length`` samples."""
        padded = self._padded_length(length)
        if self.center:
            return 1 + padded // self.hop_length
        return 1 + (padded - self.n_fft) // self.hop_length

    # ----- linear STFT ------------------------------------------------------
    @staticmethod
    def _float(audio: torch.Tensor) -> torch.Tensor:
        return audio if audio.dtype == torch.float64 else audio.float()

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        return _cached_window(self.window, self.n_fft, like.dtype, like.device)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio: (batch, channels, samples)`` -> complex ``(batch, channels, freq, frames)``."""
        if audio.dim() != 3:
            raise ValueError(f"audio must be (batch, channels, samples); got shape {tuple(audio.shape)}")
        audio = self._float(audio)
        batch, length = audio.shape[0], audio.shape[-1]
        x = rearrange(audio, "b c s -> (b c) s")
        if self._padded_length(length) > length:
            x = F.pad(x, (0, self._padded_length(length) - length))
        spec = torch.stft(
            x, self.n_fft, self.hop_length, window=self._window(x), center=self.center,
            pad_mode="reflect", return_complex=True,
        )
        return rearrange(spec, "(b c) f t -> b c f t", b=batch)

    def istft(self, complex_spec: torch.Tensor, length: int) -> torch.Tensor:
        """Complex ``(batch, channels, freq, frames)`` -> ``audio: (batch, channels, length)``."""
        batch = complex_spec.shape[0]
        x = rearrange(complex_spec, "b c f t -> (b c) f t")
        padded = self._padded_length(length)
        audio = self._overlap_add(x, self._window(x.real), self.n_fft // 2 if self.center else 0, padded)
        return rearrange(audio[..., :length], "(b c) s -> b c s", b=batch)

    def _overlap_add(self, x: torch.Tensor, window: torch.Tensor, start: int, length: int) -> torch.Tensor:
        """Least-squares inverse STFT: ``(n, freq, frames)`` -> ``(n, length)``, ``start`` samples dropped at the front.

        The windowed frames, zero-padded to whole hops and cut into hops, are
        summed by shifted slice adds, then divided by the summed squared window:
        what ``torch.istft`` computes (equal to 1e-5, tests), in 0.8 ms instead of
        1.8 for a quickstart batch (its ``unfold_backward`` and checks dominate).
        Where no frame saw the signal (a window that is 0 there, e.g. sample 0
        without centering, which ``torch.istft`` refuses) the output is 0.
        ``start`` is ``n_fft // 2`` when centered; the hops always reach past it.
        """
        hops = -(-self.n_fft // self.hop_length)
        pad = hops * self.hop_length - self.n_fft  # zeros after each frame: a whole number of hops
        frames = torch.fft.irfft(rearrange(x, "n f t -> n t f"), n=self.n_fft)  # (n, frames, n_fft), unwindowed
        if pad:  # (F.pad copies even when it pads nothing)
            frames, window = F.pad(frames, (0, pad)), F.pad(window, (0, pad))
        count = frames.shape[1]
        pieces = rearrange(frames, "n t (r h) -> n t r h", r=hops)
        window = rearrange(window, "(r h) -> r h", r=hops)
        signal = frames.new_zeros(frames.shape[0], count + hops - 1, self.hop_length)
        envelope = window.new_zeros(count + hops - 1, self.hop_length)
        for r in range(hops):  # piece r of frame t lands at hop t + r, windowed on the way
            signal[:, r:r + count].addcmul_(pieces[:, :, r], window[r])
            envelope[r:r + count] += window[r] ** 2
        signal = rearrange(signal, "n t h -> n (t h)")[:, start:start + length]
        envelope = envelope.flatten()[start:start + length]
        inverse = torch.where(envelope > 1e-11, 1 / envelope.clamp_min(1e-11), 0)
        return signal * inverse

    # ----- magnitude <-> normalized spec -----------------------------------
    def _compress(self, mag: torch.Tensor, nonnegative: bool = False) -> torch.Tensor:
        if not nonnegative:
            mag = mag.clamp_min(0)
        if self.power != 1:
            mag = mag ** self.power
        if self.compression == "log1p":
            # log(1 + m), not torch.log1p: this torch build has no vectorized CPU log1p/expm1 (15x slower
            # than log/exp, measured); the absolute error is ~1e-7, far below what the [-1, 1] scale resolves
            return torch.log(mag + 1.0)
        if self.compression == "log":
            return torch.log(mag + self.eps)
        return mag

    def _expand(self, compressed: torch.Tensor) -> torch.Tensor:
        if self.compression == "none":
            mag = compressed.clamp_min(0)
        elif torch.is_grad_enabled() and compressed.requires_grad:  # exp's backward needs its own output intact
            mag = (torch.exp(compressed) - self._offset).clamp_min(0)
        else:  # decoding: the same values, one buffer instead of three
            mag = torch.exp(compressed).sub_(self._offset).clamp_min_(0)
        return mag if self.power == 1 else mag ** (1.0 / self.power)

    def _span(self, state: SpecState) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi - lo) shaped (batch, 1, 1, 1); a silent item's zero span becomes eps, keeping it finite."""
        lo = state.lo[:, None, None, None]
        return lo, (state.hi - state.lo).clamp_min(self.eps)[:, None, None, None]

    def normalize(self, mag: torch.Tensor, state: SpecState) -> torch.Tensor:
        """Linear ``mag: (batch, channels, freq, frames)`` -> ``spec`` on ``state``'s scale."""
        return self._scale(self._compress(mag), state)

    def _scale(self, compressed: torch.Tensor, state: SpecState) -> torch.Tensor:
        if self.normalization == "none":
            return compressed
        lo, span = self._span(state)
        return (compressed - lo).div_(span / 2).sub_(1.0)  # = 2 (c - lo) / span, bit for bit (halving is exact)

    def magnitude(self, spec: torch.Tensor, state: SpecState) -> torch.Tensor:
        """``spec: (batch, channels, freq, frames)`` -> linear magnitude (>= 0); inverse of :meth:`normalize`."""
        if self.normalization == "none":
            return self._expand(spec)
        lo, span = self._span(state)
        return self._expand((spec + 1).mul_(span / 2).add_(lo))

    # ----- audio <-> normalized spec ---------------------------------------
    def encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, SpecState]:
        """``audio: (batch, channels, samples)`` -> ``(spec: (batch, channels, freq, frames) in [-1, 1], state)``.

        A silent item maps to all -1 and decodes to zeros; inputs shorter
        than one frame (down to one sample) are zero-padded internally.
        """
        complex_spec = self.stft(audio)
        fused = self._fused_encode(complex_spec)
        if fused is not None:
            mag, spec, lo, hi = fused
            return spec, SpecState(stft=complex_spec, mag=mag, lo=lo, hi=hi, length=audio.shape[-1])
        mag = complex_abs(complex_spec)
        compressed = self._compress(mag, nonnegative=True)
        state = SpecState(
            stft=complex_spec,
            mag=mag,
            lo=compressed.amin(dim=(1, 2, 3)),
            hi=compressed.amax(dim=(1, 2, 3)),
            length=audio.shape[-1],
        )
        return self._scale(compressed, state), state

    def encode_with(self, audio: torch.Tensor, state: SpecState) -> torch.Tensor:
        """Another signal (instrumental, vocals) ``(batch, channels, samples)`` on the mixture ``state``'s scale.

        Values may leave [-1, 1] where the signal is louder than the mixture.
        """
        complex_spec = self.stft(audio)
        fused = self._fused_encode(complex_spec, state)
        if fused is not None:
            return fused[1]
        return self._scale(self._compress(complex_abs(complex_spec), nonnegative=True), state)

    def _fused_encode(self, complex_spec: torch.Tensor, state: SpecState | None = None):
        """``(mag, spec, lo, hi)`` of :meth:`encode` from its STFT in the compiled kernel (``plugins/csrc/spectrogram.cpp``:
        two passes instead of six), or None where it does not apply (see ``_kernels_for``). Same operations; |z| and
        the log differ from PyTorch's by rounding (tests), the scaling is bit for bit the same.
        """
        kernels = self._kernels_for(complex_spec)
        if kernels is None or (torch.is_grad_enabled() and complex_spec.requires_grad):
            return None
        lo, hi = (state.lo, state.hi) if state is not None else (None, None)
        return kernels.spec_encode(complex_spec, *self._kernel_mode, lo, hi)

    @property
    def _offset(self) -> float:
        """What the compression adds before the log (and the expansion subtracts after the exp)."""
        return 1.0 if self.compression == "log1p" else self.eps

    @property
    def _kernel_mode(self) -> tuple[float, bool, bool, float]:
        """(offset, log, scale, eps): the options as the compiled encode and decode take them."""
        return self._offset, self.compression != "none", self.normalization == "minmax", self.eps

    def _kernels_for(self, complex_spec: torch.Tensor):
        """``plugins.cpu_kernels.ops()`` when the compiled encode / decode can take this STFT: a CPU complex64
        tensor, dense with the batch outermost (``torch.stft``'s layout), ``power == 1``, and a build; else None."""
        if not (
            complex_spec.device.type == "cpu"
            and complex_spec.dtype == torch.complex64
            and complex_spec.dim() == 4
            and complex_spec.numel() > 0
            and self.power == 1
            and complex_spec.stride(0) == complex_spec[0].numel()
            and _dense(complex_spec)
        ):
            return None
        return cpu_kernels.ops()

    def decode(self, spec: torch.Tensor, state: SpecState) -> torch.Tensor:
        """``spec: (batch, channels, freq, frames)`` + state -> ``audio: (batch, channels, state.length)``."""
        kernels = self._kernels_for(state.stft)
        same_layout = spec.shape == state.stft.shape and spec.stride() == state.mag.stride() == state.stft.stride()
        if (kernels is not None and spec.dtype == state.mag.dtype == torch.float32 and same_layout
                and not (torch.is_grad_enabled() and spec.requires_grad)):  # one compiled pass: exp, rescale
            complex_spec = kernels.spec_decode(spec, state.stft, state.mag, state.lo, state.hi, *self._kernel_mode)
        else:
            complex_spec = rescaled(state.stft, state.mag, self.magnitude(spec, state))
        return self.istft(complex_spec, state.length)
