"""MUSDB18 roots, DBs, splits, the audio cache and the segment datasets."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from diffmsst_plugins.datasets import synthetic as synth
from toolkit import data, registry
from toolkit.segments import SegmentDataset
from toolkit.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "musdb18-sample"
SECONDS = 1.0
SR = 44100
SEGMENT = 0.25


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """5 train tracks (fallback split: 4 train, 1 valid) and 1 test track, 1 s each."""
    return synth.synthesize(tmp_path_factory.mktemp("data") / "root", tracks=5, test_tracks=1, seconds=SECONDS, seed=1)


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    data.clear_memory_cache()
    yield
    data.clear_memory_cache()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- roots and DBs

def test_missing_root_says_what_was_expected_and_how_to_get_musdb(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as exc:
        data.resolve_root(missing)
    message = _one_line(exc)
    for needle in (str(missing), "train/<track>/mixture.wav", ".stem.mp4", "sigsep.github.io/datasets/musdb.html",
                   "toolkit data synth --out DIR"):
        assert needle in message


def test_empty_root_and_unset_env_are_user_errors(tmp_path, monkeypatch):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="no MUSDB18 tracks under") as exc:
        data.resolve_root(tmp_path)
    _one_line(exc)
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    with pytest.raises(UserError, match="MUSDB_PATH"):
        data.resolve_root(None)


def test_env_root_and_format_detection(root, monkeypatch):
    monkeypatch.setenv("MUSDB_PATH", str(root))
    assert data.resolve_root() == root
    assert data.detect_is_wav(root) is True
    assert len(data.open_db(None, "test").tracks) == 1


def test_fallback_split_takes_the_last_fifth_by_name(root):
    train = data.open_db(root, "train", "train")
    valid = data.open_db(root, "train", "valid")
    assert [t.name for t in train.tracks] == ["synth_000", "synth_001", "synth_002", "synth_003"]
    assert [t.name for t in valid.tracks] == ["synth_004"]
    assert len(data.open_db(root, "train").tracks) == 5
    with pytest.raises(UserError, match="train subset only"):
        data.open_db(root, "test", "valid")
    with pytest.raises(UserError, match="unknown MUSDB18 subset"):
        data.open_db(root, "validation")


def test_official_names_use_musdbs_split():
    names = ["Actions - One Minute Smile", "A Classic Education - NightOwl", "Zeno - Signs"]
    train, valid, rule = data.split_tracks(names)
    assert valid == ["Actions - One Minute Smile"] and "musdb" in rule
    assert train == ["A Classic Education - NightOwl", "Zeno - Signs"]
    assert data.split_tracks(["b", "a"])[:2] == (["a"], ["b"])
    assert data.split_tracks(["only"])[:2] == (["only"], [])


def test_empty_subset_is_a_user_error(root, tmp_path):
    only_train = tmp_path / "only_train"
    shutil.copytree(root / "train", only_train / "train")
    with pytest.raises(UserError, match="no tracks in") as exc:
        data.open_db(only_train, "test")
    assert str(only_train / "test") in _one_line(exc)


def test_folders_that_are_not_tracks_are_ignored(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root / "test", copy / "test")
    (copy / "test" / "notes").mkdir()
    (copy / "test" / "notes" / "readme.txt").write_text("not a track")
    (copy / "test" / ".synth-tmp-x").mkdir()
    assert [t.name for t in data.open_db(copy, "test").tracks] == ["synth_test_000"]


@pytest.mark.parametrize("keep_bytes", [20, None])
def test_truncated_wav_is_a_user_error_naming_the_file(root, tmp_path, keep_bytes):
    broken = tmp_path / "broken"
    shutil.copytree(root / "test", broken / "test")
    victim = broken / "test" / "synth_test_000" / "vocals.wav"
    payload = victim.read_bytes()
    victim.write_bytes(payload[: keep_bytes or len(payload) // 2])
    with pytest.raises(UserError) as exc:
        data.open_db(broken, "test")
    message = _one_line(exc)
    assert str(victim) in message and "truncated or corrupt" in message


def test_missing_stem_is_a_user_error(root, tmp_path):
    broken = tmp_path / "nobass"
    shutil.copytree(root / "test", broken / "test")
    (broken / "test" / "synth_test_000" / "bass.wav").unlink()
    with pytest.raises(UserError, match="lacks bass.wav"):
        data.open_db(broken, "test")


# ---------------------------------------------------------------- loading and caching

def test_load_track_gives_float32_stems_and_instrumental(root):
    track = data.open_db(root, "test").tracks[0]
    audio = data.load_track(track)
    assert set(audio) == {"mixture", "drums", "bass", "other", "vocals", "instrumental", "accompaniment"}
    for value in audio.values():
        assert value.dtype == np.float32 and value.shape == (int(SECONDS * SR), 2)
    np.testing.assert_array_equal(audio["instrumental"], audio["drums"] + audio["bass"] + audio["other"])
    assert audio["accompaniment"] is audio["instrumental"]
    assert np.abs(audio["mixture"] - audio["instrumental"] - audio["vocals"]).max() < 1e-4
    with pytest.raises(ValueError):
        audio["vocals"][0, 0] = 1.0  # cached arrays are read-only


def test_resampling_to_another_rate(root):
    track = data.open_db(root, "test").tracks[0]
    native = data.load_track(track)["vocals"]
    half = data.load_track(track, sample_rate=SR // 2)["vocals"]
    assert half.shape == (int(np.ceil(len(native) / 2)), 2)
    # same content: energy is preserved up to the removed band above 11 kHz
    assert abs(np.mean(half**2) / np.mean(native**2) - 1) < 0.1


def test_disk_cache_means_no_audio_is_read_again(root, tmp_path, monkeypatch):
    track = data.open_db(root, "test").tracks[0]
    reads = []

    class Counting(data.sf.SoundFile):
        def read(self, *args, **kwargs):
            reads.append(self.name)
            return super().read(*args, **kwargs)

    monkeypatch.setattr(data.sf, "SoundFile", Counting)
    first = data.load_track(track, cache_dir=tmp_path / "cache")
    assert len(reads) == 5 and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    data.load_track(track, cache_dir=tmp_path / "cache")
    assert len(reads) == 5  # memory cache
    data.clear_memory_cache()

    def refuse(*args, **kwargs):
        raise AssertionError("audio file read despite the disk cache")

    monkeypatch.setattr(data.sf, "read", refuse)

    class Refusing(Counting):
        def read(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(data.sf, "SoundFile", Refusing)
    second = data.load_track(track, cache_dir=tmp_path / "cache")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_iter_tracks_yields_sorted_full_tracks(root):
    items = list(data.iter_tracks(root, "train", split="valid"))
    assert [name for name, _ in items] == ["synth_004"]
    assert items[0][1]["mixture"].shape == (int(SECONDS * SR), 2)
    assert [n for n, _ in data.iter_tracks(root, "train", names=["synth_002", "synth_000"])] == ["synth_000", "synth_002"]
    with pytest.raises(UserError, match="no track named"):
        list(data.iter_tracks(root, "train", names=["nope"]))


# ---------------------------------------------------------------- segments

def _dataset(root, **kwargs):
    return registry.get("datasets", "musdb")(root=root, **{"segment_seconds": SEGMENT, "segments_per_epoch": 8, **kwargs})


def test_registered_and_gin_configurable(root):
    import gin

    assert issubclass(registry.get("datasets", "musdb"), SegmentDataset)
    with gin.unlock_config():
        gin.parse_config("datasets.musdb.segments_per_epoch = 3")
    try:
        assert len(registry.get("datasets", "musdb")(root=root, segment_seconds=SEGMENT)) == 3
    finally:
        gin.clear_config()


def test_random_segments_shapes_and_determinism(root):
    ds = _dataset(root)
    item = ds[0]
    assert set(item) == {"mixture", "instrumental", "vocals"}
    for value in item.values():
        assert value.dtype == torch.float32 and value.shape == (1, int(SEGMENT * SR))
    later_first = [_dataset(root)[i] for i in (5, 2)]
    same = _dataset(root)
    assert torch.equal(same[2]["vocals"], later_first[1]["vocals"])  # independent of access order
    assert torch.equal(same[5]["mixture"], later_first[0]["mixture"])
    assert not torch.equal(same[2]["mixture"], same[5]["mixture"])
    same.set_epoch(1)
    assert not torch.equal(same[2]["mixture"], later_first[1]["mixture"])
    assert not torch.equal(_dataset(root, seed=7)[2]["mixture"], later_first[1]["mixture"])
    assert ds.names == ["synth_000", "synth_001", "synth_002", "synth_003"]  # split="train" by default


def test_mono_is_the_average_of_stereo(root):
    mono = _dataset(root, split="valid", random_segments=False, channels=1)
    stereo = _dataset(root, split="valid", random_segments=False, channels=2)
    full = data.load_track(data.open_db(root, "train", "valid").tracks[0])
    n = int(SEGMENT * SR)
    expected = full["vocals"][n:2 * n].mean(axis=1)
    np.testing.assert_allclose(mono[1]["vocals"][0].numpy(), expected, atol=1e-7)
    np.testing.assert_array_equal(stereo[1]["vocals"].numpy(), full["vocals"][n:2 * n].T)
    torch.testing.assert_close(stereo[1]["instrumental"].mean(dim=0), mono[1]["instrumental"][0])


def test_fixed_segments_tile_tracks_and_pad_the_last(root):
    ds = registry.get("datasets", "musdb")(root=root, subset="test", random_segments=False, segment_seconds=0.3, segments_per_epoch=None)
    assert len(ds) == 4  # ceil(1.0 / 0.3)
    last = ds[3]["vocals"][0]
    tail = int(round(0.3 * SR)) - (int(SECONDS * SR) - 3 * int(round(0.3 * SR)))
    assert torch.all(last[-tail:] == 0) and torch.any(last[:-tail] != 0)
    capped = registry.get("datasets", "musdb")(root=root, subset="test", random_segments=False, segment_seconds=0.3, segments_per_epoch=2)
    assert capped.items == [(0, 0), (0, 3 * int(round(0.3 * SR)))]
    whole = registry.get("datasets", "musdb")(root=root, subset="test", random_segments=False, segment_seconds=None, channels=2)
    assert len(whole) == 1 and whole[0]["mixture"].shape == (2, int(SECONDS * SR))


def test_augmentation_keeps_mixture_equal_to_instrumental_plus_vocals(root):
    plain = _dataset(root, channels=2)
    augmented = _dataset(root, channels=2, augment_gain=True, augment_channel_swap=True, augment_remix=True)
    differs = 0
    for i in range(len(augmented)):
        item = augmented[i]
        assert torch.equal(item["mixture"], item["instrumental"] + item["vocals"])
        differs += not torch.equal(item["vocals"], plain[i]["vocals"])
    assert differs == len(augmented)
    again = _dataset(root, channels=2, augment_gain=True, augment_channel_swap=True, augment_remix=True)
    assert torch.equal(again[3]["mixture"], augmented[3]["mixture"])


def test_short_tracks_are_zero_padded(root):
    ds = _dataset(root, subset="test", segment_seconds=1.5)
    item = ds[0]["vocals"][0]
    assert item.shape == (int(1.5 * SR),) and torch.all(item[int(SECONDS * SR):] == 0)


def test_bad_dataset_arguments(root):
    with pytest.raises(UserError, match="channels"):
        _dataset(root, channels=3)
    with pytest.raises(UserError, match="needs segment_seconds"):
        _dataset(root, segment_seconds=None)


# ---------------------------------------------------------------- description and CLI

def test_describe_root_lists_subsets_and_splits(root):
    console = Console(record=True, width=200)
    console.print(data.describe_root(root))
    text = console.export_text()
    assert "MUSDB18-HQ wav" in text and "last 1 of 5 train tracks by name" in text
    rows = {tuple(line.split("│")[1:3]): line for line in text.splitlines() if line.count("│") > 3}
    counts = {tuple(c.strip() for c in k): v.split("│")[3].strip() for k, v in rows.items()}
    assert counts == {("train", "all"): "5", ("train", "train"): "4", ("train", "valid"): "1", ("test", "all"): "1"}


def test_info_command_on_a_missing_root_is_a_user_error():
    import argparse

    from toolkit.commands import data as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["data", "info", "/nonexistent"])
    with pytest.raises(UserError, match="/nonexistent does not exist"):
        args.func(args)
    assert parser.parse_args(["data"]).func(parser.parse_args(["data"])) == 2


@pytest.mark.skipif(not (REPO / "toolkit" / "cli.py").exists(), reason="toolkit/cli.py not written yet")
def test_cli_info_on_a_missing_root_exits_2_with_one_line(capsys):
    from toolkit.cli import main

    assert main(["data", "info", "/nonexistent"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "/nonexistent" in error


# ---------------------------------------------------------------- the real MUSDB18 clip

needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"shared MUSDB18 sample absent at {SAMPLE}")


@needs_sample
def test_real_stem_mp4_root_loads(tmp_path, monkeypatch):
    assert data.resolve_root(SAMPLE) == SAMPLE and data.detect_is_wav(SAMPLE) is False
    db = data.open_db(SAMPLE, "train")
    assert [t.name for t in db.tracks] == ["Music Delta - 80s Rock"]
    audio = data.load_track(db.tracks[0], cache_dir=tmp_path)
    assert audio["mixture"].shape[1] == 2 and 6.5 * SR < len(audio["mixture"]) < 7.1 * SR
    # AAC coding: the stems only approximately add up to the mixture
    residual = audio["mixture"] - audio["instrumental"] - audio["vocals"]
    assert np.sqrt(np.mean(residual**2)) < 0.1 * np.sqrt(np.mean(audio["mixture"] ** 2))
    import stempeg

    reference, _ = stempeg.read_stems(str(db.tracks[0].path), dtype=np.float32, always_3d=True)
    np.testing.assert_array_equal(data.track_stems(db.tracks[0]), reference[:5])  # stempeg's samples, bit for bit
    data.clear_memory_cache()
    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: pytest.fail("mp4 decoded despite the disk cache"))
    again = data.load_track(db.tracks[0], cache_dir=tmp_path)
    np.testing.assert_array_equal(again["vocals"], audio["vocals"])
    ds = registry.get("datasets", "musdb")(root=SAMPLE, segment_seconds=1.0, segments_per_epoch=2, cache_dir=tmp_path)
    assert ds[1]["mixture"].shape == (1, SR)
    console = Console(record=True, width=200)
    console.print(data.describe_root(SAMPLE))
    text = console.export_text()
    assert "MUSDB18 .stem.mp4" in text and "44100" in text
    with pytest.raises(UserError, match="valid' split"):
        data.open_db(SAMPLE, "train", "valid")
