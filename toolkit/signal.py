"""From an instrumental estimate to two sources: safe subtraction and post-filters.

Diff-MSST generates the *instrumental* magnitude; vocals are what is left of
the mixture. Everything here is a pure function of per-item tensors
(``(batch, channels, freq, frames)``; Wiener statistics are pooled over one
item's frames only, never across the batch).
"""
from __future__ import annotations

import math

import torch
from einops import rearrange

from .errors import UserError

POST_FILTERS = ("none", "soft", "wiener")


def instrumental_to_vocals(
    mixture_mag: torch.Tensor, instrumental_mag: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vocals_mag, instrumental_mag)``, both ``(batch, channels, freq, frames)`` and >= 0.

    The instrumental estimate is clamped to ``[0, mixture_mag]`` so that
    ``vocals = mixture - instrumental`` is never negative; NaN estimates
    count as 0 and +inf as the whole mixture, so no NaN leaves here.
    """
    mixture = torch.nan_to_num(mixture_mag, nan=0.0).clamp_min(0)
    instrumental = torch.nan_to_num(instrumental_mag, nan=0.0)
    instrumental = torch.minimum(instrumental.clamp_min(0), mixture)
    return mixture - instrumental, instrumental


def phase_sensitive_magnitude(source_stft: torch.Tensor, mixture_stft: torch.Tensor) -> torch.Tensor:
    """``Re(S conj(X)) / |X|`` = ``|S| cos(angle S - angle X)``, clamped to ``[0, |X|]``: ``(batch, channels, freq, frames)``.

    The magnitude that, given the mixture's phase, is nearest the source in each
    bin (the phase-sensitive approximation, Erdogan et al., ICASSP 2015), hence
    nearest in waveform error; the unclamped values of the sources add up to
    ``|X|``, and clamping keeps a pair of sources summing to ``|X|``. Silent
    mixture bins give 0.
    """
    mag = mixture_stft.abs()
    projection = (source_stft * mixture_stft.conj()).real / mag.clamp_min(torch.finfo(mag.dtype).tiny)
    return torch.minimum(projection.clamp_min(0), mag)


def unit_phasor(stft: torch.Tensor, mag: torch.Tensor | None = None) -> torch.Tensor:
    """``stft / |stft|`` for a complex tensor, and 1 where it is exactly 0 (so silence stays finite).

    ``mag`` (``stft.abs()``) may be passed when the caller has it already.
    """
    if mag is None:
        mag = stft.abs()
    silent = mag == 0
    parts = torch.view_as_real(stft) / torch.where(silent, 1, mag).unsqueeze(-1)  # (..., 2)
    parts[..., 0].add_(silent.to(parts.dtype))  # 0 + 0j -> 1 + 0j
    return _as_complex(parts)


def rescaled(stft: torch.Tensor, mag: torch.Tensor, new_mag: torch.Tensor) -> torch.Tensor:
    """``stft`` (complex) with its magnitude ``mag`` replaced by ``new_mag`` (real, same shape): its phase, new size.

    Equals ``with_phase(new_mag, unit_phasor(stft, mag))``, so a silent bin
    (``mag == 0``) gets the real value ``new_mag``, in one complex-by-real multiply.
    """
    silent = mag == 0
    out = stft * (new_mag / torch.where(silent, 1, mag))
    torch.view_as_real(out)[..., 0].add_(silent * new_mag)  # on the real parts: no complex promotion
    return out


def with_phase(mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Complex ``mag * phase`` from a real magnitude and unit phasors of the same shape (real ops, no promotion)."""
    return _as_complex(torch.view_as_real(phase) * mag.unsqueeze(-1).to(phase.real.dtype))


def _as_complex(parts: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` real/imaginary parts -> complex ``(...)`` (a view where the layout allows)."""
    return torch.view_as_complex(parts if parts.stride(-1) == 1 else parts.contiguous())


def _soft_masks(vocals: torch.Tensor, instrumental: torch.Tensor, power: float, eps: float):
    """Ratio masks that sum to exactly 1; where both estimates are 0 each source gets half."""
    v, i = vocals.clamp_min(0) ** power, instrumental.clamp_min(0) ** power
    mask = (v + eps / 2) / (v + i + eps)
    return mask, 1 - mask


def post_filter(
    mixture_stft: torch.Tensor,
    vocals_mag: torch.Tensor,
    instrumental_mag: torch.Tensor,
    kind: str = "none",
    iterations: int = 1,
    power: float = 2.0,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex ``(vocals_stft, instrumental_stft)``, each ``(batch, channels, freq, frames)``.

    mixture_stft: complex (batch, channels, freq, frames).
    vocals_mag, instrumental_mag: real >= 0, same shape.
    kind:
        ``"none"``: the magnitudes with the mixture phase.
        ``"soft"``: ratio masks ``|v|^p / (|v|^p + |i|^p)`` (``p = power``)
        applied to the complex mixture, so the two estimates sum to it.
        ``"wiener"``: multichannel Wiener filtering refined by ``iterations``
        EM steps (Liutkus & Stöter's ``norbert``, as used by Open-Unmix's
        ``openunmix.filtering.wiener``), started from the magnitudes with
        the mixture phase. Each source gets a power spectral density and a
        per-frequency spatial covariance; the filter is ``v_j R_j Cxx^-1``
        (``Cxx`` regularized by ``sqrt(eps) I``). With one channel it is a
        soft mask with power 2; ``iterations=0`` returns the starting point.
        The instrumental is the filtered estimate and the vocals are the
        mixture minus it, so the two sum to the mixture exactly.
    """
    if kind not in POST_FILTERS:
        raise UserError(f"unknown post-filter '{kind}'; known: {', '.join(POST_FILTERS)}")
    if kind == "none":
        phase = unit_phasor(mixture_stft)
        return with_phase(vocals_mag, phase), with_phase(instrumental_mag, phase)
    if kind == "soft":
        vocals_mask, instrumental_mask = _soft_masks(vocals_mag, instrumental_mag, power, eps)
        return vocals_mask * mixture_stft, instrumental_mask * mixture_stft
    if not isinstance(iterations, int) or iterations < 0:
        raise UserError(f"post_filter iterations = {iterations!r}; use an integer >= 0")
    return _wiener(mixture_stft, vocals_mag, instrumental_mag, iterations, eps)


def _wiener(mixture_stft, vocals_mag, instrumental_mag, iterations: int, eps: float):
    phase = unit_phasor(mixture_stft)
    # y: (batch, frames, freq, channels, sources) complex, the EM's working layout.
    y = torch.stack([with_phase(vocals_mag, phase), with_phase(instrumental_mag, phase)], dim=-1)
    y = rearrange(y, "b c f t s -> b t f c s")
    x = rearrange(mixture_stft, "b c f t -> b t f c")
    if iterations == 0:
        y = rearrange(y, "b t f c s -> s b c f t")
        return y[0], y[1]
    # Work at a bounded scale (as norbert does) so eps means the same for any loudness.
    scale = x.abs().amax(dim=(1, 2, 3), keepdim=True).mul(0.1).clamp_min(1.0)  # (batch, 1, 1, 1)
    x = x / scale
    y = y / scale[..., None]
    channels = x.shape[-1]
    eye = torch.eye(channels, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        # Local Gaussian model: v_j (batch, frames, freq, sources) and R_j (batch, freq, sources, c, c),
        # the covariance pooled over this item's frames.
        v = y.abs().pow(2).mean(dim=3)
        outer = torch.einsum("btfcs,btfds->bfscd", y, y.conj())
        R = outer / (v.sum(dim=1) + eps)[..., None, None]
        Cxx = torch.einsum("btfs,bfscd->btfcd", v.to(x.dtype), R) + math.sqrt(eps) * eye
        inv_Cxx = torch.linalg.inv(Cxx)
        gain = torch.einsum("btfs,bfscd,btfde->btfsce", v.to(x.dtype), R, inv_Cxx)
        y = torch.einsum("btfsce,btfe->btfcs", gain, x)
    instrumental = rearrange(y[..., 1] * scale, "b t f c -> b c f t")
    # Vocals take what the instrumental filter leaves, as everywhere in Diff-MSST, so the
    # two sum to the mixture exactly instead of losing the regularization's share.
    return mixture_stft - instrumental, instrumental


def waveforms_from_estimate(
    mixture_wave: torch.Tensor, instrumental_wave: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vocals_wave, instrumental_wave)`` with ``vocals = mixture - instrumental``.

    ``mixture_wave, instrumental_wave: (..., samples)``; the instrumental is
    cropped or zero-padded to the mixture's length, so the two outputs
    always sum to the mixture (up to float rounding).
    """
    length = mixture_wave.shape[-1]
    instrumental = instrumental_wave[..., :length]
    if instrumental.shape[-1] < length:
        instrumental = torch.nn.functional.pad(instrumental, (0, length - instrumental.shape[-1]))
    instrumental = instrumental.to(mixture_wave.dtype)
    return mixture_wave - instrumental, instrumental
