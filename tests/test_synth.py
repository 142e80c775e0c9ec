"""The synthetic MUSDB18-HQ generator: layout, exact sums, determinism, styles, re-runs."""
import subprocess
import sys
from pathlib import Path

import musdb
import numpy as np
import pytest
import soundfile as sf

from diffmsst_plugins.datasets import synthetic as synth
from toolkit.data import SOURCES, STEMS
from toolkit.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SECONDS = 1.5


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return synth.synthesize(tmp_path_factory.mktemp("synth") / "root", tracks=2, seconds=SECONDS, seed=3)


def test_tree_loads_with_musdb(tree):
    train = musdb.DB(root=str(tree), is_wav=True, subsets="train")
    assert [t.name for t in train.tracks] == ["synth_000", "synth_001"]
    test = musdb.DB(root=str(tree), is_wav=True, subsets="test")
    assert [t.name for t in test.tracks] == ["synth_test_000"]  # default max(1, tracks // 2)
    track = train.tracks[0]
    assert track.rate == 44100
    stems = track.stems  # (5, samples, channels) through ffmpeg, 16-bit
    assert stems.shape == (5, int(SECONDS * 44100), 2)
    assert set(track.sources) == {"drums", "bass", "other", "vocals"}
    np.testing.assert_allclose(stems[0], stems[1:].sum(axis=0), atol=1e-4)


def test_stems_sum_to_mixture_in_every_track(tree):
    folders = sorted((tree / "train").iterdir()) + sorted((tree / "test").iterdir())
    assert len(folders) == 3
    for folder in folders:
        audio = {stem: sf.read(folder / f"{stem}.wav", dtype="float32")[0] for stem in STEMS}
        assert all(a.shape == (int(SECONDS * 44100), 2) for a in audio.values())
        assert sf.info(str(folder / "mixture.wav")).subtype == "FLOAT"
        error = np.abs(audio["mixture"] - sum(audio[s] for s in SOURCES)).max()
        assert error < 1e-4, (folder, error)
        assert np.abs(audio["mixture"]).max() < 1.0
        assert all(np.abs(audio[s]).max() > 1e-3 for s in SOURCES)  # no silent stem
        assert not np.allclose(audio["mixture"][:, 0], audio["mixture"][:, 1])  # panned, truly stereo


def test_same_seed_gives_identical_bytes_and_other_seeds_or_styles_differ(tree, tmp_path):
    again = synth.synthesize(tmp_path / "again", tracks=2, seconds=SECONDS, seed=3)
    assert _files(again) == _files(tree)
    other_seed = synth.synthesize(tmp_path / "seed4", tracks=2, seconds=SECONDS, seed=4)
    alt = synth.synthesize(tmp_path / "alt", tracks=2, seconds=SECONDS, seed=3, style="alt")
    for root in (other_seed, alt):
        files = _files(root)
        assert files.keys() == _files(tree).keys()
        assert all(files[k] != v for k, v in _files(tree).items() if k.endswith("mixture.wav"))
    # train and test come from different seeds too
    assert _files(tree)["train/synth_000/vocals.wav"] != _files(tree)["test/synth_test_000/vocals.wav"]


def test_vocals_sit_within_3_db_of_the_accompaniment():
    for index in range(4):
        for style in synth.STYLES:
            stems = synth.render_track(np.random.default_rng([0, 0, index, 9]), 3.0, 22050, style)
            accompaniment = stems["drums"] + stems["bass"] + stems["other"]
            ratio = 10 * np.log10(np.mean(stems["vocals"] ** 2) / np.mean(accompaniment**2))
            assert -3.05 < ratio < 3.05, (style, index, ratio)


def _median_f0(voice: np.ndarray, sr: int) -> float:
    """YIN (de Cheveigné & Kawahara 2002) over the loud frames of a mono signal."""
    size, lags = 2048, np.arange(1, int(sr / 60))
    frames = np.lib.stride_tricks.sliding_window_view(voice, size)[::512]
    frames = frames[np.sqrt((frames**2).mean(axis=1)) > 0.5 * np.sqrt((voice**2).mean())]
    estimates = []
    for frame in frames:
        w = size - lags[-1]
        diff = np.array([np.sum((frame[:w] - frame[lag:lag + w]) ** 2) for lag in lags])
        cmnd = diff * lags / np.maximum(np.cumsum(diff), 1e-12)
        below = np.flatnonzero(cmnd[int(sr / 1000):] < 0.2)
        if len(below):
            estimates.append(sr / lags[below[0] + int(sr / 1000)])
    return float(np.median(estimates))


def test_alt_voice_sings_higher_than_default_voice():
    sr = 16000
    for index in range(3):
        f0 = {}
        for style in ("default", "alt"):  # the two compared here
            vocals = synth.render_track(np.random.default_rng([1, 0, index, 0]), 3.0, sr, style)["vocals"]
            f0[style] = _median_f0(vocals.mean(axis=1), sr)
        # male range F2-G4, female F3-G5: drawn per track, so compare within a track
        assert 80 < f0["default"] < 420 and 170 < f0["alt"] < 900 and f0["alt"] > 1.2 * f0["default"], f0


def test_pcm16_keeps_the_sum_within_1e_4(tmp_path):
    root = synth.synthesize(tmp_path / "pcm", tracks=1, test_tracks=0, seconds=0.5, sample_rate=16000, subtype="PCM_16")
    folder = root / "train" / "synth_000"
    audio = {stem: sf.read(folder / f"{stem}.wav", dtype="float64")[0] for stem in STEMS}
    assert sf.info(str(folder / "mixture.wav")).subtype == "PCM_16"
    assert np.abs(audio["mixture"] - sum(audio[s] for s in SOURCES)).max() < 1e-4
    assert not (root / "test").exists() or not any((root / "test").iterdir())


def test_rerun_completes_a_tree_and_refuses_other_arguments(tree, tmp_path):
    root = synth.synthesize(tmp_path / "r", tracks=2, seconds=SECONDS, seed=3)
    reference = _files(root)
    import shutil

    shutil.rmtree(root / "train" / "synth_001")  # as if interrupted
    calls = []
    synth.synthesize(root, tracks=2, seconds=SECONDS, seed=3, progress=lambda d, t, n: calls.append((d, t, n)))
    assert _files(root) == reference
    assert calls[-1] == (3, 3, "synth_test_000")
    assert not list(root.glob(".synth-tmp-*"))
    with pytest.raises(UserError, match="other arguments"):
        synth.synthesize(root, tracks=2, seconds=SECONDS, seed=4)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        synth.synthesize(foreign, tracks=1, seconds=0.5)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("kwargs", [dict(tracks=0), dict(seconds=0), dict(seconds="x"), dict(style="rock"),
                                    dict(sample_rate=100), dict(seed=-1), dict(test_tracks=-1), dict(subtype="MP3")])
def test_bad_arguments_are_user_errors(tmp_path, kwargs):
    with pytest.raises(UserError, match="synth:"):
        synth.synthesize(tmp_path / "bad", **{"tracks": 1, "seconds": 0.5, **kwargs})
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(not (REPO / "toolkit" / "cli.py").exists(), reason="toolkit/cli.py not written yet")
def test_cli_synth_and_info(tmp_path, capsys):
    from toolkit.cli import main

    out = tmp_path / "cli"
    argv = ["data", "synth", "--out", str(out), "--tracks", "1", "--seconds", "0.5"]
    first = subprocess.run([sys.executable, "-m", "toolkit.cli", *argv], capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr
    assert "wrote 2 tracks" in first.stdout
    assert main(argv) == 0 and "nothing to do" in capsys.readouterr().out
    assert main(argv[:-1] + ["0.75"]) == 2
    error = capsys.readouterr().err
    assert "other arguments" in error and len(error.strip().splitlines()) == 1
    assert main(["data", "info", str(out)]) == 0
    shown = capsys.readouterr().out
    shown = " ".join(shown.split())  # rich wraps the title, which holds the (test-dependent) path
    assert "MUSDB18-HQ wav" in shown and "valid" in shown
