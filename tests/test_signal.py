"""Safe subtraction, post-filters and waveform bookkeeping (toolkit.signal)."""
from pathlib import Path

import pytest
import torch

from toolkit.errors import UserError
from toolkit.signal import (POST_FILTERS, instrumental_to_vocals, phase_sensitive_magnitude, post_filter, rescaled,
                            unit_phasor, waveforms_from_estimate, with_phase)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "musdb18-sample" / "train" / "Music Delta - 80s Rock.stem.mp4"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture_and_estimates(channels: int = 2, seed: int = 0, batch: int = 2):
    """A complex mixture STFT and a consistent (vocals, instrumental) magnitude split of it."""
    shape = (batch, channels, 65, 20)
    mixture = torch.complex(torch.randn(shape, generator=gen(seed)), torch.randn(shape, generator=gen(seed + 1)))
    instrumental = mixture.abs() * torch.rand(shape, generator=gen(seed + 2))
    return mixture, *instrumental_to_vocals(mixture.abs(), instrumental)


def sdr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.abs().pow(2).sum() / (reference - estimate).abs().pow(2).sum()))


def test_subtraction_is_never_negative_and_sums_to_the_mixture():
    mixture = torch.rand(2, 2, 33, 10, generator=gen(0)) * 5
    # Estimates that overshoot, undershoot, and are broken.
    instrumental = (torch.rand(mixture.shape, generator=gen(1)) * 2 - 0.5) * mixture * 1.5
    instrumental[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    vocals, kept = instrumental_to_vocals(mixture, instrumental)
    assert torch.isfinite(vocals).all() and torch.isfinite(kept).all()
    assert (vocals >= 0).all() and (kept >= 0).all() and (kept <= mixture).all()
    assert torch.allclose(vocals + kept, mixture)
    assert kept[0, 0, 0, 0] == 0 and kept[0, 0, 0, 1] == mixture[0, 0, 0, 1] and kept[0, 0, 0, 2] == 0
    # In-range estimates pass untouched.
    inside = (instrumental >= 0) & (instrumental <= mixture)
    assert torch.equal(kept[inside], instrumental[inside])


def test_waveforms_sum_to_the_mixture():
    mixture = torch.randn(2, 2, 1000, generator=gen(2))
    instrumental = torch.randn(2, 2, 1000, generator=gen(3))
    vocals, kept = waveforms_from_estimate(mixture, instrumental)
    assert torch.allclose(vocals + kept, mixture, atol=1e-6)
    assert torch.equal(kept, instrumental)
    # Lengths that disagree (an iSTFT a few samples off) still give the mixture's length.
    vocals, kept = waveforms_from_estimate(mixture, instrumental[..., :990])
    assert vocals.shape == kept.shape == mixture.shape and torch.allclose(vocals + kept, mixture, atol=1e-6)
    vocals, kept = waveforms_from_estimate(mixture, torch.cat([instrumental, instrumental], dim=-1))
    assert vocals.shape == mixture.shape and torch.allclose(vocals + kept, mixture, atol=1e-6)


@pytest.mark.parametrize("kind", POST_FILTERS)
@pytest.mark.parametrize("channels", [1, 2])
def test_post_filters_are_finite_and_sum_to_the_mixture(kind, channels):
    mixture, vocals_mag, instrumental_mag = mixture_and_estimates(channels)
    vocals, instrumental = post_filter(mixture, vocals_mag, instrumental_mag, kind=kind, iterations=2)
    assert vocals.shape == instrumental.shape == mixture.shape
    assert vocals.is_complex() and instrumental.is_complex()
    assert torch.isfinite(torch.view_as_real(vocals)).all() and torch.isfinite(torch.view_as_real(instrumental)).all()
    # none: magnitudes that split |mixture| add back to it; soft/wiener: masks sum to one.
    assert torch.allclose(vocals + instrumental, mixture, atol=1e-5)


def test_none_keeps_the_magnitudes_with_the_mixture_phase():
    mixture, vocals_mag, instrumental_mag = mixture_and_estimates()
    vocals, instrumental = post_filter(mixture, vocals_mag, instrumental_mag, kind="none")
    assert torch.allclose(vocals.abs(), vocals_mag, atol=1e-5)
    phase_error = (vocals * mixture.conj()).angle()[vocals_mag > 1e-3]
    assert phase_error.abs().max() < 1e-4


def test_soft_mask_follows_the_power():
    mixture = torch.full((1, 1, 1, 1), 3 + 4j)
    vocals_mag, instrumental_mag = torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 3.0)
    v1, _ = post_filter(mixture, vocals_mag, instrumental_mag, kind="soft", power=1.0)
    v2, _ = post_filter(mixture, vocals_mag, instrumental_mag, kind="soft", power=2.0)
    assert torch.allclose(v1, mixture * 0.25) and torch.allclose(v2, mixture * 0.1)
    both_silent, _ = post_filter(mixture, 0 * vocals_mag, 0 * instrumental_mag, kind="soft")
    assert torch.allclose(both_silent, mixture * 0.5)


def test_wiener_on_one_channel_is_a_power_two_soft_mask():
    mixture, vocals_mag, instrumental_mag = mixture_and_estimates(channels=1, seed=4)
    wiener, _ = post_filter(mixture, vocals_mag, instrumental_mag, kind="wiener", iterations=1)
    soft, _ = post_filter(mixture, vocals_mag, instrumental_mag, kind="soft", power=2.0)
    assert torch.allclose(wiener, soft, atol=1e-3 * mixture.abs().max())


def test_wiener_uses_where_the_sources_sit_in_the_stereo_image():
    """Two sources with equal power in every bin, panned differently.

    A per-channel soft mask cannot tell them apart beyond their magnitudes;
    the multichannel filter also learns each source's spatial covariance
    and must do clearly better, and improve with EM iterations.
    """
    shape = (1, 1, 64, 200)
    g = gen(7)
    vocals_gain = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    instrumental_gain = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    true_vocals = vocals_gain * torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)  # centre
    true_instrumental = instrumental_gain * torch.tensor([1.0, -0.3]).view(1, 2, 1, 1)  # wide, out of phase
    mixture = true_vocals + true_instrumental
    magnitudes = true_vocals.abs(), true_instrumental.abs()
    soft, _ = post_filter(mixture, *magnitudes, kind="soft", power=2.0)
    wiener1, _ = post_filter(mixture, *magnitudes, kind="wiener", iterations=1)
    wiener3, _ = post_filter(mixture, *magnitudes, kind="wiener", iterations=3)
    assert sdr_db(true_vocals, wiener1) > sdr_db(true_vocals, soft) + 3
    assert sdr_db(true_vocals, wiener3) > sdr_db(true_vocals, wiener1)


def test_wiener_with_zero_iterations_is_the_starting_point():
    mixture, vocals_mag, instrumental_mag = mixture_and_estimates(seed=5)
    start = post_filter(mixture, vocals_mag, instrumental_mag, kind="none")
    zero = post_filter(mixture, vocals_mag, instrumental_mag, kind="wiener", iterations=0)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(start, zero))


def test_wiener_statistics_are_per_item():
    mixture, vocals_mag, instrumental_mag = mixture_and_estimates(seed=6, batch=3)
    mixture[1] *= 100  # a much louder neighbour must not change item 0
    vocals_mag[1] *= 100
    instrumental_mag[1] *= 100
    batched, _ = post_filter(mixture, vocals_mag, instrumental_mag, kind="wiener", iterations=2)
    alone, _ = post_filter(mixture[:1], vocals_mag[:1], instrumental_mag[:1], kind="wiener", iterations=2)
    assert torch.allclose(batched[:1], alone, atol=1e-5)


def test_wiener_separates_the_real_clip_from_oracle_magnitudes():
    if not CLIP.is_file():
        pytest.skip(f"shared test data not found at {CLIP}")
    import musdb

    from diffmsst_plugins.transforms.stft_normalizer import STFTNormalizer

    track = musdb.DB(root=str(CLIP.parents[1]), subsets="train").tracks[0]
    seconds = 2 * track.rate
    mixture_wave = torch.from_numpy(track.audio[:seconds].T.copy()).float()[None]
    vocals_wave = torch.from_numpy(track.targets["vocals"].audio[:seconds].T.copy()).float()[None]
    transform = STFTNormalizer()
    mixture = transform.stft(mixture_wave)
    true_vocals, true_instrumental = transform.stft(vocals_wave), transform.stft(mixture_wave - vocals_wave)
    vocals_mag, instrumental_mag = instrumental_to_vocals(mixture.abs(), true_instrumental.abs())
    vocals, instrumental = post_filter(mixture, vocals_mag, instrumental_mag, kind="wiener", iterations=1)
    assert torch.allclose(vocals + instrumental, mixture, atol=1e-3)
    # Oracle magnitudes must separate well; a broken filter (wrong axes, no inverse) would not.
    assert sdr_db(true_vocals, vocals) > 8 and sdr_db(true_instrumental, instrumental) > 8


def test_unknown_kind_lists_the_known_ones():
    mixture, vocals_mag, instrumental_mag = mixture_and_estimates()
    with pytest.raises(UserError, match="none, soft, wiener"):
        post_filter(mixture, vocals_mag, instrumental_mag, kind="weiner")


def test_rescaled_keeps_the_phase_and_gives_silent_bins_the_new_magnitude():
    gen = torch.Generator().manual_seed(3)
    stft = torch.complex(torch.randn(2, 1, 5, 7, generator=gen), torch.randn(2, 1, 5, 7, generator=gen))
    stft[0, 0, 1, :3] = 0  # digital silence in the mixture
    mag, new = stft.abs(), 3 * torch.rand(2, 1, 5, 7, generator=gen)
    out = rescaled(stft, mag, new)
    torch.testing.assert_close(out, with_phase(new, unit_phasor(stft, mag)))
    torch.testing.assert_close(out.abs(), new)
    torch.testing.assert_close(out[0, 0, 1, :3], new[0, 0, 1, :3].to(out.dtype))  # silence: phase 0, new size
    torch.testing.assert_close(rescaled(stft, mag, mag), stft)  # its own magnitude: the STFT back
    loud = stft[1:]  # no silent bin: the shortcut
    assert loud.abs().amin() > 0
    torch.testing.assert_close(rescaled(loud, loud.abs(), new[1:]), with_phase(new[1:], unit_phasor(loud)))


def test_phase_sensitive_magnitude_is_the_nearest_magnitude_with_the_mixture_phase():
    g = torch.Generator().manual_seed(0)
    vocals, instrumental = (torch.complex(torch.randn(2, 1, 9, 7, generator=g), torch.randn(2, 1, 9, 7, generator=g))
                            for _ in range(2))
    mixture = vocals + instrumental
    mixture[0, 0, 0, 0] = 0  # a silent mixture bin (the sources cancel)
    psa_i, psa_v = phase_sensitive_magnitude(instrumental, mixture), phase_sensitive_magnitude(vocals, mixture)
    mag = mixture.abs()
    assert (psa_i >= 0).all() and (psa_i <= mag).all() and psa_i[0, 0, 0, 0] == 0
    torch.testing.assert_close(psa_i + psa_v, mag)  # also where one projection was negative and clamped
    assert ((instrumental * mixture.conj()).real < 0).any(), "the draw should exercise the clamp"
    # nearest in each bin: no magnitude on a fine grid in [0, |X|] gets closer to the source
    phase = unit_phasor(mixture)
    grid = torch.linspace(0, 1, 401).reshape(-1, 1, 1, 1, 1) * mag
    best = (instrumental - grid * phase).abs().min(dim=0).values
    assert ((instrumental - psa_i * phase).abs() <= best + 1e-6).all()
    torch.testing.assert_close(phase_sensitive_magnitude(mixture, mixture), mag)
