"""Audio I/O, atomic writes, resampling, channels and file discovery."""
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from toolkit import audio
from toolkit.errors import UserError
from toolkit.io_utils import atomic_path, atomic_write_bytes, atomic_write_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "musdb18-sample" / "train" / "Music Delta - 80s Rock.stem.mp4"


def test_signal(channels: int, samples: int = 4410, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([tone + 0.05 * rng.standard_normal(samples) for _ in range(channels)]).astype(np.float32)


test_signal.__test__ = False  # a helper, not a test


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ----- read / write ---------------------------------------------------------
@pytest.mark.parametrize(
    "name, subtype, atol",
    [
        ("a.wav", "PCM_16", 1.0 / 2**14),
        ("a.wav", "PCM_24", 1.0 / 2**22),
        ("a.wav", "FLOAT", 0.0),
        ("a.flac", "PCM_16", 1.0 / 2**14),
        ("a.flac", "PCM_24", 1.0 / 2**22),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_write_read_round_trip_keeps_the_layout(tmp_path, name, subtype, atol, channels):
    original = test_signal(channels)
    path = audio.write(tmp_path / "sub" / name, original, 22050, subtype=subtype)
    assert path.is_file() and no_temp_files(path.parent)
    data, rate, info = audio.read(path)
    assert data.dtype == np.float32 and data.shape == original.shape
    assert rate == 22050 and info.sample_rate == 22050
    assert info.subtype == subtype and info.channels == channels and info.frames == original.shape[1]
    assert info.format == ("WAV" if name.endswith(".wav") else "FLAC") and info.path == path
    np.testing.assert_allclose(data, original, atol=atol)


def test_write_accepts_torch_and_mono_vectors_and_defaults_to_pcm16(tmp_path):
    path = audio.write(tmp_path / "t.wav", torch.from_numpy(test_signal(1)[0]), 8000)
    data, rate, info = audio.read(path)
    assert data.shape == (1, 4410) and rate == 8000 and info.subtype == "PCM_16"


def test_pcm_output_saturates_instead_of_wrapping(tmp_path):
    loud = np.array([[1.7, -1.7, 0.25]], dtype=np.float32)
    data, _, _ = audio.read(audio.write(tmp_path / "loud.wav", loud, 8000))
    np.testing.assert_allclose(data[0], [1.0, -1.0, 0.25], atol=1e-4)


def test_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="extension '.xyz'"):
        audio.write(tmp_path / "a.xyz", test_signal(1), 8000)
    with pytest.raises(UserError, match="subtype 'FLOAT' cannot be written as FLAC"):
        audio.write(tmp_path / "a.flac", test_signal(1), 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match="channels, samples"):
        audio.write(tmp_path / "a.wav", test_signal(2).T, 8000)  # (samples, channels) by mistake
    with pytest.raises(ValueError, match="NaN"):
        audio.write(tmp_path / "a.wav", np.full((1, 10), np.nan, dtype=np.float32), 8000)
    assert not list(tmp_path.iterdir())


def test_subtype_for_keeps_the_inputs_precision():
    def info(fmt, subtype):
        return audio.AudioInfo(Path("x"), fmt, subtype, 2, 100, 44100)

    assert audio.subtype_for(info("WAV", "PCM_16"), "WAV") == "PCM_16"
    assert audio.subtype_for(info("WAV", "FLOAT"), "WAV") == "FLOAT"
    assert audio.subtype_for(info("FLAC", "PCM_24"), "FLAC") == "PCM_24"
    assert audio.subtype_for(info("FLAC", "PCM_24"), "WAV") == "PCM_24"
    assert audio.subtype_for(info("WAV", "PCM_32"), "FLAC") == "PCM_24"
    assert audio.subtype_for(info("WAV", "FLOAT"), "FLAC") == "PCM_24"
    assert audio.subtype_for(info("MP4", "AAC"), "WAV") == "FLOAT"


def test_reads_the_mixture_of_a_stem_file():
    if not CLIP.is_file():
        pytest.skip(f"shared test data not found at {CLIP}")
    data, rate, info = audio.read(CLIP)
    assert rate == 44100 and data.dtype == np.float32 and data.shape[0] == 2
    assert abs(data.shape[1] / rate - 7.0) < 0.5 and info.format == "MP4" and info.frames == data.shape[1]
    assert np.abs(data).max() > 0.1


# ----- bad input files --------------------------------------------------------
def _valid_wav(path: Path) -> Path:
    sf.write(str(path), test_signal(2).T, 44100, subtype="PCM_16")
    return path


def _bad_file(kind: str, folder: Path) -> Path:
    full = _valid_wav(folder / "full.wav").read_bytes()
    contents = {
        "empty.wav": b"",
        "text.wav": b"hello, not audio\n",
        "cut.wav": full[:3000],  # header promises 4410 frames
        "head.wav": full[:30],  # stops inside the header
        "junk.flac": np.random.default_rng(0).bytes(4000),
        "bad.mp4": b"not a stem",
    }
    if kind == "missing.wav":
        return folder / kind
    if kind == "folder":
        return folder
    (folder / kind).write_bytes(contents[kind])
    return folder / kind


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("missing.wav", "no such file"),
        ("folder", "is a folder"),
        ("empty.wav", "empty file"),
        ("text.wav", "not a readable audio file"),
        ("cut.wav", "truncated"),
        ("head.wav", "not a readable audio file"),
        ("junk.flac", "not a readable audio file"),
        ("bad.mp4", "not a readable audio file"),
    ],
)
def test_bad_files_raise_one_line_user_errors(tmp_path, kind, needle):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(UserError, match=needle) as caught:
        audio.read(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


def test_non_finite_samples_are_refused_with_their_count(tmp_path):
    data = test_signal(2)
    data[0, :3] = np.nan
    data[1, 7] = np.inf
    sf.write(str(tmp_path / "nan.wav"), data.T, 8000, subtype="FLOAT")
    with pytest.raises(UserError, match="4 samples are NaN or infinite"):
        audio.read(tmp_path / "nan.wav")


def test_header_without_samples_is_refused(tmp_path):
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 2), dtype=np.float32), 8000)
    with pytest.raises(UserError, match="no audio samples"):
        audio.read(tmp_path / "zero.wav")


# ----- atomic writes ------------------------------------------------------------
def test_atomic_path_leaves_nothing_on_failure_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "scores.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp.exists()
            tmp.write_text("half a fi")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_failed_audio_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def failing_write(file, *args, **kwargs):
        Path(file).write_bytes(b"RIFF partial")
        raise OSError("disk went away")

    monkeypatch.setattr(sf, "write", failing_write)
    with pytest.raises(OSError, match="disk went away"):
        audio.write(tmp_path / "out.wav", test_signal(1), 8000)
    assert not list(tmp_path.iterdir())


def test_atomic_text_and_bytes(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.txt", "line 1\nline 2\n")
    assert (tmp_path / "a" / "b.txt").read_text() == "line 1\nline 2\n"
    atomic_write_bytes(tmp_path / "c.bin", b"\x00\x01")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    mode = (tmp_path / "c.bin").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's private 0600
    assert no_temp_files(tmp_path)


def test_atomic_write_errors_are_user_errors(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        atomic_write_text(tmp_path / "folder", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        atomic_write_text(tmp_path / "file" / "inner.txt", "x")
    with pytest.raises(UserError, match="does not exist"):
        with atomic_path(tmp_path / "nowhere" / "x.txt", make_parents=False):
            pass


# ----- resampling and channels -------------------------------------------------------
def test_resample_keeps_pitch_and_duration():
    tone = torch.from_numpy(test_signal(2, samples=44100))
    half = audio.resample(tone, 44100, 22050)
    assert half.shape == (2, 22050) and half.dtype == torch.float32
    spectrum = torch.fft.rfft(half[0]).abs()
    assert int(spectrum.argmax()) == 440  # 1 Hz bins at 22050 samples / 22050 Hz
    assert audio.resample(tone, 44100, 44100) is tone
    with pytest.raises(ValueError, match="positive integer"):
        audio.resample(tone, 44100, 0)


def test_to_channels_for_numpy_and_torch():
    stereo = test_signal(2)
    mono = audio.to_channels(stereo, 1)
    np.testing.assert_allclose(mono[0], stereo.mean(axis=0))
    assert audio.to_channels(mono, 2).shape == (2, stereo.shape[1])
    assert torch.equal(audio.to_channels(torch.from_numpy(mono), 2)[1], torch.from_numpy(mono[0]))
    assert torch.allclose(audio.to_channels(torch.from_numpy(stereo), 1)[0], torch.from_numpy(stereo).mean(0))
    assert audio.to_channels(stereo, 2) is stereo
    with pytest.raises(UserError, match="song.wav: cannot turn 6-channel audio into 2"):
        audio.to_channels(np.zeros((6, 10)), 2, source="song.wav")


# ----- finding files -----------------------------------------------------------
def test_list_audio_files(tmp_path):
    for name in ["b.wav", "a.flac", "notes.txt", ".a.tmp-1234.wav", "c.stem.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.wav").write_bytes(b"x")
    found = audio.list_audio_files(tmp_path)
    assert [p.name for p in found] == ["a.flac", "b.wav", "c.stem.mp4"]
    assert [p.name for p in audio.list_audio_files([tmp_path], recursive=True)] == ["a.flac", "b.wav", "c.stem.mp4", "d.wav"]
    # Files given directly are kept in order, whatever their extension; duplicates once.
    assert audio.list_audio_files([tmp_path / "notes.txt", tmp_path / "b.wav", tmp_path]) == [
        tmp_path / "notes.txt", tmp_path / "b.wav", tmp_path / "a.flac", tmp_path / "c.stem.mp4"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no audio files"):
        audio.list_audio_files(tmp_path / "empty")
    with pytest.raises(UserError, match="no such file or folder"):
        audio.list_audio_files([tmp_path / "b.wav", tmp_path / "gone"])


def test_codec_subtypes_are_not_kept_as_sample_formats(tmp_path):
    """An mp3/ogg input's codec is not a bit depth: WAV gets float, FLAC 24-bit PCM, MP3 MPEG Layer III."""
    from toolkit.audio import AudioInfo, subtype_for

    for codec in ("MPEG_LAYER_III", "VORBIS", "OPUS"):
        info = AudioInfo(tmp_path / "x", "MP3", codec, 2, 100, 44100)
        assert (subtype_for(info, "WAV"), subtype_for(info, "FLAC"), subtype_for(info, "MP3")) == ("FLOAT", "PCM_24", "MPEG_LAYER_III")
    pcm = AudioInfo(tmp_path / "x", "WAV", "PCM_16", 2, 100, 44100)
    assert (subtype_for(pcm, "WAV"), subtype_for(pcm, "FLAC"), subtype_for(pcm, "MP3")) == ("PCM_16", "PCM_16", "MPEG_LAYER_III")


@pytest.mark.parametrize("channels", [2, 3, 6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_mono_downmix_equals_numpy_mean_bit_for_bit(channels, dtype):
    frames = (np.random.default_rng(channels).standard_normal((4096, channels)) * 1000).astype(dtype)
    for planar in (frames.T, np.ascontiguousarray(frames.T)):  # interleaved (as read) and contiguous
        got, want = audio.to_channels(planar, 1), planar.mean(axis=0, keepdims=True)
        assert got.dtype == want.dtype and got.shape == (1, 4096)
        np.testing.assert_array_equal(got, want)
