"""STFTNormalizer: exact round trips, per-item statistics, edge cases."""
from pathlib import Path

import pytest
import torch

from toolkit import registry
from toolkit.audio import resample, to_channels
from toolkit.errors import UserError

registry.load_builtin_plugins()
from diffmsst_plugins.transforms.stft_normalizer import SpecState, STFTNormalizer  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "musdb18-sample" / "train" / "Music Delta - 80s Rock.stem.mp4"
SR = 44100


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum().clamp_min(1e-30)))


def sine(freq: float, seconds: float = 0.25, sr: int = SR, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * torch.pi * freq * t)).float()


def noise(shape, seed: int, amp: float = 0.1) -> torch.Tensor:
    return amp * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """The real MUSDB clip's mixture, 3 s, (2, samples) float32 at 44.1 kHz."""
    if not CLIP.is_file():
        pytest.skip(f"shared test data not found at {CLIP}")
    import musdb

    track = musdb.DB(root=str(CLIP.parents[1]), subsets="train").tracks[0]
    assert track.rate == SR
    return torch.from_numpy(track.audio[: 3 * SR].T.copy()).float()


def test_registry_builds_the_default():
    transform = registry.get("transforms", "stft_normalizer")()
    assert isinstance(transform, STFTNormalizer)
    assert (transform.n_fft, transform.hop_length, transform.window, transform.center) == (2048, 512, "hann", True)
    assert (transform.power, transform.compression, transform.normalization) == (1.0, "log1p", "minmax")


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sample_rate", [44100, 22050])
def test_round_trip_real_clip(clip, channels, sample_rate):
    audio = resample(to_channels(clip, channels), SR, sample_rate)[None]  # (1, channels, samples)
    transform = STFTNormalizer()
    spec, state = transform.encode(audio)
    assert spec.shape == (1, channels, 1025, transform.num_frames(audio.shape[-1]))
    assert spec.dtype == torch.float32
    assert spec.amin() == -1 and spec.amax() == 1
    decoded = transform.decode(spec, state)
    assert decoded.shape == audio.shape
    assert snr_db(audio, decoded) > 60


@pytest.mark.parametrize(
    "options",
    [
        dict(power=2.0),
        dict(compression="log"),
        dict(compression="none"),
        dict(normalization="none"),
        dict(window="hamming", n_fft=512, hop_length=128),
        dict(window="blackman", n_fft=1024, hop_length=256),
    ],
)
def test_round_trip_options(options):
    audio = torch.stack([sine(440.0) + noise(int(0.25 * SR), 0, 0.01), sine(97.0)])[None]
    transform = STFTNormalizer(**options)
    spec, state = transform.encode(audio)
    assert torch.isfinite(spec).all()
    assert snr_db(audio, transform.decode(spec, state)) > 60


@pytest.mark.parametrize("hop", [128, 200])
def test_round_trip_without_centering(hop):
    transform = STFTNormalizer(n_fft=512, hop_length=hop, center=False, window="hamming")
    audio = noise((1, 2, 3001), seed=1)  # not a whole number of frames: the tail must survive
    decoded = transform.decode(*transform.encode(audio))
    assert decoded.shape == audio.shape
    assert snr_db(audio, decoded) > 60  # the first and last samples too: the hamming window is not 0 at its edges


def test_float64_stays_float64():
    audio = noise((1, 1, 4000), seed=2).double()
    transform = STFTNormalizer(n_fft=256, hop_length=64)
    spec, state = transform.encode(audio)
    assert spec.dtype == torch.float64
    assert snr_db(audio, transform.decode(spec, state)) > 120


def test_statistics_are_per_item_never_batch_global():
    transform = STFTNormalizer(n_fft=512, hop_length=128)
    length = 6000
    items = [
        sine(440.0, amp=0.01)[:length].expand(2, -1),
        noise((2, length), seed=3, amp=0.9),
        torch.zeros(2, length),
    ]
    batch = torch.stack(items)
    spec, state = transform.encode(batch)
    assert state.lo.shape == state.hi.shape == (3,)
    decoded = transform.decode(spec, state)
    for index, item in enumerate(items):
        alone_spec, alone_state = transform.encode(item[None])
        assert torch.allclose(spec[index : index + 1], alone_spec, atol=1e-6)
        assert torch.allclose(state.lo[index], alone_state.lo) and torch.allclose(state.hi[index], alone_state.hi)
        alone = transform.decode(alone_spec, alone_state)
        assert torch.allclose(decoded[index : index + 1], alone, atol=1e-6)
        # The same item through the selected state decodes the same way.
        assert torch.allclose(transform.decode(spec[index : index + 1], state.select(index)), alone, atol=1e-6)
    # Each non-silent item uses the whole [-1, 1] range on its own.
    assert spec[0].amin() == -1 and spec[0].amax() == 1
    assert spec[1].amin() == -1 and spec[1].amax() == 1


def test_silence_encodes_finite_and_decodes_to_zeros():
    transform = STFTNormalizer()
    silent = torch.zeros(2, 2, 5000)
    spec, state = transform.encode(silent)
    assert torch.isfinite(spec).all() and (spec == -1).all()
    decoded = transform.decode(spec, state)
    assert torch.isfinite(decoded).all() and (decoded == 0).all()
    assert (transform.magnitude(spec, state) == 0).all()


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("length", [1, 2, 1024, 1025])
def test_inputs_shorter_than_a_frame_round_trip(center, length):
    transform = STFTNormalizer(center=center, window="hann" if center else "hamming")
    audio = noise((1, 2, length), seed=4)
    spec, state = transform.encode(audio)
    assert spec.shape[-1] == transform.num_frames(length) >= 1
    decoded = transform.decode(spec, state)
    assert decoded.shape == (1, 2, length)
    assert torch.isfinite(spec).all() and torch.isfinite(decoded).all()
    assert torch.allclose(decoded, audio, atol=1e-5)


def test_encode_with_uses_the_mixtures_scale():
    transform = STFTNormalizer(n_fft=512, hop_length=128)
    instrumental = noise((2, 2, 4000), seed=5, amp=0.2)
    vocals = torch.stack([sine(330.0)[:4000].expand(2, -1), sine(660.0)[:4000].expand(2, -1)])
    mixture = instrumental + vocals
    spec, state = transform.encode(mixture)
    assert torch.allclose(transform.encode_with(mixture, state), spec, atol=1e-6)
    target = transform.encode_with(instrumental, state)
    assert target.shape == spec.shape
    # Inverting with the mixture's state gives the instrumental's own magnitude back.
    expected = transform.stft(instrumental).abs()
    assert torch.allclose(transform.magnitude(target, state), expected, rtol=1e-4, atol=1e-3)
    # Scaled by the mixture, not by itself: a quieter signal stays below the mixture's top.
    assert target.amax() < 1


def test_normalize_and_magnitude_are_inverse():
    transform = STFTNormalizer(power=2.0)
    _, state = transform.encode(noise((2, 1, 3000), seed=6))
    mag = torch.rand(state.phase.shape, generator=torch.Generator().manual_seed(7)) * 10
    assert torch.allclose(transform.magnitude(transform.normalize(mag, state), state), mag, rtol=1e-4, atol=1e-4)


def test_state_select_and_to():
    transform = STFTNormalizer(n_fft=256, hop_length=64)
    _, state = transform.encode(noise((3, 2, 1000), seed=8))
    picked = state.select([0, 2])
    assert isinstance(picked, SpecState)
    assert picked.phase.shape[0] == 2 and torch.equal(picked.lo, state.lo[[0, 2]]) and picked.length == 1000
    assert state.to("cpu").phase.device.type == "cpu"


@pytest.mark.parametrize(
    "options, needle",
    [
        (dict(window="hanning"), "'hann'"),
        (dict(compression="mel"), "'log1p'"),
        (dict(normalization="meanstd"), "'minmax'"),
        (dict(hop_length=2048), "hop_length"),
        (dict(n_fft=1), "n_fft"),
        (dict(power=0), "power"),
        (dict(center=False), "center = False with window 'hann'.*torch.istft"),
        (dict(center=False, window="blackman"), "use center = True or window = 'hamming'"),
    ],
)
def test_bad_options_raise_user_errors(options, needle):
    with pytest.raises(UserError, match=needle):
        STFTNormalizer(**options)


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match="batch, channels, samples"):
        STFTNormalizer().encode(torch.zeros(2, 1000))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    transform = STFTNormalizer(n_fft=512, hop_length=128)
    audio = noise((2, 2, 8000), seed=9)
    spec, state = transform.encode(audio.cuda())
    assert spec.device.type == "cuda" and state.phase.device.type == "cuda"
    cpu_spec, _ = transform.encode(audio)
    assert torch.allclose(spec.cpu(), cpu_spec, atol=1e-4)
    assert snr_db(audio, transform.decode(spec, state).cpu()) > 60


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman"])
@pytest.mark.parametrize("n_fft, hop", [(512, 128), (512, 256), (256, 64), (512, 200), (256, 100), (512, 384)])
def test_stft_then_istft_reconstructs_the_audio(window, n_fft, hop):
    """Every window and hop, including hops that do not divide n_fft, and a length that is not whole hops."""
    transform = STFTNormalizer(n_fft=n_fft, hop_length=hop, window=window)
    audio = torch.randn(2, 3, 5000, generator=torch.Generator().manual_seed(0))
    spec = transform.stft(audio)
    assert spec.shape == (2, 3, n_fft // 2 + 1, transform.num_frames(5000))
    torch.testing.assert_close(transform.istft(spec, 5000), audio, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(transform.istft(spec, 4000), audio[..., :4000], rtol=1e-4, atol=1e-4)


def test_window_cached_in_inference_mode_still_serves_autograd():
    """The window is cached across calls; one first built during separation (inference mode) must not break training."""
    from diffmsst_plugins.transforms.stft_normalizer import _cached_window

    _cached_window.cache_clear()
    transform = STFTNormalizer(n_fft=256, hop_length=64)
    with torch.inference_mode():
        transform.encode(torch.randn(1, 1, 2000))
    audio = torch.randn(1, 1, 2000, requires_grad=True)
    spec, state = transform.encode(audio)
    transform.decode(spec, state).sum().backward()  # would raise if the cached window were an inference tensor
    assert audio.grad is not None and torch.isfinite(audio.grad).all()


@pytest.mark.parametrize("options", [{}, {"compression": "log"}, {"compression": "none"}, {"normalization": "none"},
                                     {"n_fft": 512, "hop_length": 200}])
def test_encode_decode_round_trip_with_a_silent_item_in_the_batch(options):
    tr = STFTNormalizer(**{"n_fft": 1024, "hop_length": 256, **options})
    gen = torch.Generator().manual_seed(3)
    audio = 0.1 * torch.randn(4, 2, 22050, generator=gen)
    audio[1] = 0.0  # a silent item: zero span, every bin silent
    spec, state = tr.encode(audio)
    assert torch.isfinite(spec).all() and state.lo.shape == state.hi.shape == (4,)
    sounding = [0, 2, 3]
    if tr.normalization == "minmax":  # each sounding item spans exactly [-1, 1]
        assert (spec[sounding].amax(dim=(1, 2, 3)) == 1).all() and (spec[sounding].amin(dim=(1, 2, 3)) == -1).all()
    torch.testing.assert_close(tr.encode_with(audio, state), spec, rtol=0, atol=1e-6)
    out = tr.decode(spec, state)
    assert out.shape == audio.shape
    assert snr_db(audio[sounding], out[sounding]) > 60
    assert out[1].abs().max() == 0  # silence decodes to zeros


def test_a_nan_in_one_item_leaves_the_others_statistics_alone():
    tr = STFTNormalizer(n_fft=256, hop_length=64)
    audio = torch.randn(2, 1, 2000, generator=torch.Generator().manual_seed(4))
    audio[0, 0, 500] = float("nan")
    _, state = tr.encode(audio)
    _, alone = tr.encode(audio[1:])
    assert state.lo[0].isnan() and state.hi[0].isnan()
    torch.testing.assert_close(state.hi[1:], alone.hi)
    torch.testing.assert_close(state.lo[1:], alone.lo)


def test_gradients_reach_the_audio_through_encode_and_decode():
    tr = STFTNormalizer(n_fft=256, hop_length=64)
    audio = torch.randn(2, 1, 2000, requires_grad=True)
    spec, state = tr.encode(audio)
    assert spec.grad_fn is not None
    spec.sum().backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    with torch.no_grad():
        spec, state = tr.encode(audio)
    spec.requires_grad_(True)
    tr.decode(spec, state).square().sum().backward()
    assert spec.grad is not None and torch.isfinite(spec.grad).all() and spec.grad.abs().sum() > 0


# -- rms_level: an input that does not depend on the song's level ------------------------------------
def _music(seed: int) -> torch.Tensor:
    """(2, 1, samples): two items of tones plus noise at unlike levels, the quieter far below 1 in most bins."""
    t = torch.arange(SR // 2) / SR
    x = torch.stack([sum(torch.sin(2 * torch.pi * f * t) / (k + 1) for k, f in enumerate((110, 220, 445, 1320)))
                     for _ in range(2)])[:, None] + noise((2, 1, SR // 2), seed)
    return x * torch.tensor([0.3, 0.02])[:, None, None]


def test_rms_level_makes_the_network_input_level_invariant():
    audio, quieter = _music(0), _music(0) * 10 ** (-12 / 20)
    invariant = STFTNormalizer(n_fft=1024, hop_length=256, rms_level=0.1)
    spec, state = invariant.encode(audio)
    spec_q, state_q = invariant.encode(quieter)
    assert (spec - spec_q).abs().max() < 1e-3
    target = 0.5 * audio  # an instrumental on the mixture's scale moves with it too
    assert (invariant.encode_with(target, state) - invariant.encode_with(target * 10 ** (-12 / 20), state_q)).abs().max() < 1e-3
    # the default follows the level: the same gain moves the input by several hundredths on average
    plain = STFTNormalizer(n_fft=1024, hop_length=256)
    assert (plain.encode(audio)[0] - plain.encode(quieter)[0]).abs().mean() > 0.03


def test_rms_level_is_undone_exactly():
    transform = STFTNormalizer(n_fft=1024, hop_length=256, rms_level=0.1)
    audio = torch.cat([_music(1), torch.zeros(1, 1, SR // 2)])  # and a silent item
    spec, state = transform.encode(audio)
    assert state.gain.shape == (3,) and state.gain[2] == 1.0
    assert snr_db(audio[:2], transform.decode(spec, state)[:2]) > 60
    assert transform.decode(spec, state)[2].abs().max() == 0
    torch.testing.assert_close(transform.magnitude(transform.normalize(state.mag, state), state), state.mag,
                               rtol=1e-4, atol=1e-6)
    one = state.select(1)
    torch.testing.assert_close(transform.decode(spec[1:2], one), transform.decode(spec, state)[1:2])
    assert torch.equal(state.to("cpu").gain, state.gain)


@pytest.mark.parametrize("bad", [0, -0.1, float("inf"), "loud"])
def test_bad_rms_level_is_a_user_error(bad):
    with pytest.raises(UserError, match="rms_level"):
        STFTNormalizer(rms_level=bad)
