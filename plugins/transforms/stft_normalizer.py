"""STFT magnitude, compressed and min-max normalized per item, with its exact inverse.

The diffusion model works on ``spec: (batch, channels, freq, frames)`` in
[-1, 1]: the magnitude STFT of the mixture raised to ``power``, compressed
(``log1p`` by default, as in Diff-MSST and most diffusion vocoders: it
evens out the huge dynamic range of music spectra) and scaled per item so
that item's minimum maps to -1 and maximum to 1. :class:`SpecState` keeps
what the inverse needs: the mixture phase, each item's min/max and the
signal length. Statistics are per item, never over the batch, so an item's
spectrogram does not depend on what else was batched with it.

With ``rms_level`` set, each item is first scaled to that RMS (the gain is kept
in the state and undone by :meth:`STFTNormalizer.magnitude`), so the network's
input does not depend on the song's level: ``log1p`` is nearly linear for the
many bins below 1, so without it a quieter song looks different.

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
from toolkit.signal import rescaled, unit_phasor

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
    gain: (batch,) what each item's magnitudes were multiplied by before compression
    (``rms_level``), or None for 1; ``stft`` and ``mag`` stay at the audio's own level.

    The mixture phase is kept as the STFT and its magnitude rather than as unit
    phasors: decoding rescales the STFT in one multiply, and encoding a training
    batch, which never decodes, does not pay for phasors it would not use.
    """

    stft: torch.Tensor
    mag: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    length: int
    gain: torch.Tensor | None = None

    @property
    def phase(self) -> torch.Tensor:
        """(batch, channels, freq, frames) complex unit phasors of the mixture (1 where it is exactly silent)."""
        return unit_phasor(self.stft, self.mag)

    def select(self, index) -> "SpecState":
        """The state of some items: ``index`` is an int, slice, list or bool/long tensor over batch."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return replace(self, stft=self.stft[index], mag=self.mag[index], lo=self.lo[index], hi=self.hi[index],
                       gain=None if self.gain is None else self.gain[index])

    def to(self, device) -> "SpecState":
        return replace(self, stft=self.stft.to(device), mag=self.mag.to(device), lo=self.lo.to(device),
                       hi=self.hi.to(device), gain=None if self.gain is None else self.gain.to(device))


def _gained(mag: torch.Tensor, gain: torch.Tensor | None, undo: bool = False) -> torch.Tensor:
    """``mag: (batch, ...)`` times (or, with ``undo``, divided by) each item's ``gain: (batch,)``; as is for None."""
    if gain is None:
        return mag
    gain = gain.to(mag.dtype).reshape(-1, *([1] * (mag.dim() - 1)))
    return mag / gain if undo else mag * gain


@functools.lru_cache(maxsize=32)
def _cached_window(kind: str, n_fft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The analysis window, built once per kind, size, dtype and device (callers never write to it).

    Built outside inference mode even when first asked for inside it, so a later
    STFT that autograd records can still save it.
    """
    with torch.inference_mode(False):
        return WINDOWS[kind](n_fft, dtype=dtype, device=device)


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
        rms_level: float | None = None,
    ):
        if not isinstance(n_fft, int) or n_fft < 2:
            raise UserError(f"transforms.stft_normalizer.n_fft = {n_fft!r}; use an integer >= 2 (e.g. 2048)")
        if not isinstance(hop_length, int) or not 1 <= hop_length < n_fft:
            raise UserError(
                f"transforms.stft_normalizer.hop_length = {hop_length!r}; use an integer in [1, n_fft) (e.g. n_fft // 4) so the STFT is invertible"
            )
        _choice("window", window, tuple(WINDOWS))
        if not center and window != "hamming":
            raise UserError(
                f"transforms.stft_normalizer.center = False with window {window!r}: torch.istft cannot invert it (the "
                f"window is 0 at a frame's first sample); use center = True or window = 'hamming'"
            )
        _choice("compression", compression, COMPRESSIONS)
        _choice("normalization", normalization, NORMALIZATIONS)
        if not (isinstance(power, (int, float)) and power > 0 and math.isfinite(power)):
            raise UserError(f"transforms.stft_normalizer.power = {power!r}; use a positive number (1: magnitude, 2: power)")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise UserError(f"transforms.stft_normalizer.eps = {eps!r}; use a small positive number (e.g. 1e-8)")
        if rms_level is not None and not (isinstance(rms_level, (int, float)) and 0 < rms_level < math.inf):
            raise UserError(f"transforms.stft_normalizer.rms_level = {rms_level!r}; use None (keep the level) or a "
                            f"positive RMS to scale each item to (e.g. 0.1)")
        self.rms_level = None if rms_level is None else float(rms_level)
        self.n_fft, self.hop_length, self.window, self.center = n_fft, hop_length, window, bool(center)
        self.power, self.compression, self.normalization, self.eps = float(power), compression, normalization, float(eps)

    def __repr__(self) -> str:
        return (
            f"STFTNormalizer(n_fft={self.n_fft}, hop_length={self.hop_length}, window={self.window!r}, "
            f"center={self.center}, power={self.power}, compression={self.compression!r}, "
            f"normalization={self.normalization!r}, eps={self.eps}, rms_level={self.rms_level})"
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
        """Complex ``(batch, channels, freq, frames)`` -> ``audio: (batch, channels, length)`` (``torch.istft``)."""
        batch = complex_spec.shape[0]
        x = rearrange(complex_spec, "b c f t -> (b c) f t")
        audio = torch.istft(x, self.n_fft, self.hop_length, window=self._window(x.real), center=self.center,
                            length=self._padded_length(length))
        return rearrange(audio[..., :length], "(b c) s -> b c s", b=batch)

    # ----- magnitude <-> normalized spec -----------------------------------
    def _compress(self, mag: torch.Tensor, nonnegative: bool = False) -> torch.Tensor:
        if not nonnegative:
            mag = mag.clamp_min(0)
        if self.power != 1:
            mag = mag ** self.power
        if self.compression == "log1p":
            # log(1 + m), not torch.log1p: this torch build has no vectorized CPU log1p / expm1 (log / exp are);
            # the absolute error (float32 rounding of 1 + m) is far below what the [-1, 1] scale resolves
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
        return self._scale(self._compress(_gained(mag, state.gain)), state)

    def _scale(self, compressed: torch.Tensor, state: SpecState) -> torch.Tensor:
        if self.normalization == "none":
            return compressed
        lo, span = self._span(state)
        return (compressed - lo).div_(span / 2).sub_(1.0)  # = 2 (c - lo) / span, bit for bit (halving is exact)

    def magnitude(self, spec: torch.Tensor, state: SpecState) -> torch.Tensor:
        """``spec: (batch, channels, freq, frames)`` -> linear magnitude (>= 0); inverse of :meth:`normalize`."""
        if self.normalization == "none":
            return _gained(self._expand(spec), state.gain, undo=True)
        lo, span = self._span(state)
        return _gained(self._expand((spec + 1).mul_(span / 2).add_(lo)), state.gain, undo=True)

    # ----- audio <-> normalized spec ---------------------------------------
    def encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, SpecState]:
        """``audio: (batch, channels, samples)`` -> ``(spec: (batch, channels, freq, frames) in [-1, 1], state)``.

        A silent item maps to all -1 and decodes to zeros; inputs shorter
        than one frame (down to one sample) are zero-padded internally.
        """
        complex_spec = self.stft(audio)
        mag = complex_spec.abs()
        gain = None if self.rms_level is None else self._gain(audio)
        compressed = self._compress(_gained(mag, gain), nonnegative=True)
        state = SpecState(
            stft=complex_spec,
            mag=mag,
            lo=compressed.amin(dim=(1, 2, 3)),
            hi=compressed.amax(dim=(1, 2, 3)),
            length=audio.shape[-1],
            gain=gain,
        )
        return self._scale(compressed, state), state

    def encode_with(self, audio: torch.Tensor, state: SpecState) -> torch.Tensor:
        """Another signal (instrumental, vocals) ``(batch, channels, samples)`` on the mixture ``state``'s scale.

        Values may leave [-1, 1] where the signal is louder than the mixture.
        """
        return self._scale(self._compress(_gained(self.stft(audio).abs(), state.gain), nonnegative=True), state)

    def _gain(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch,) factors that bring each item of ``audio: (batch, channels, samples)`` to ``rms_level`` (1 if silent)."""
        rms = audio.double().pow(2).mean(dim=(1, 2)).sqrt()
        return torch.where(rms > 0, self.rms_level / rms.clamp_min(torch.finfo(torch.float64).tiny), 1.0).to(audio.dtype)

    @property
    def _offset(self) -> float:
        """What the compression adds before the log (and the expansion subtracts after the exp)."""
        return 1.0 if self.compression == "log1p" else self.eps

    def decode(self, spec: torch.Tensor, state: SpecState) -> torch.Tensor:
        """``spec: (batch, channels, freq, frames)`` + state -> ``audio: (batch, channels, state.length)``."""
        return self.istft(rescaled(state.stft, state.mag, self.magnitude(spec, state)), state.length)
