"""The on-disk cache of decoded stems: what it holds, when it rebuilds, parallel writers, bad songs."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_cli
from diffmsst_plugins.datasets import synthetic as synth
from toolkit import data, registry
from toolkit.errors import UserError

RATE = 22050


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synth.synthesize(tmp_path_factory.mktemp("cache") / "root", tracks=3, test_tracks=1, seconds=1.0, seed=4)


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    data.clear_memory_cache()
    yield
    data.clear_memory_cache()


def _entries(cache):
    return sorted(p.name for p in cache.glob("*.npy"))


def _no_leftovers(cache):
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name], "a temporary file stayed in the cache"


def test_prepare_holds_what_the_experiment_reads_and_the_run_reads_it_mapped(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    run_cli("data", "prepare", root, "--cache", cache, "--sample-rate", RATE, "--channels", 1, check=0)
    assert len(_entries(cache)) == 3  # the train subset: train and valid songs
    stems = np.load(cache / _entries(cache)[0], mmap_mode="r")
    assert stems.shape == (5, RATE, 1) and stems.dtype == np.float32
    monkeypatch.setattr(data.sf, "read", lambda *a, **k: pytest.fail("audio decoded despite the prepared cache"))
    ds = registry.get("datasets", "musdb")(root=root, sample_rate=RATE, channels=1, segment_seconds=0.25,
                                           segments_per_epoch=4, disk_cache=True, cache_dir=cache)
    assert isinstance(ds.track_stems(0), np.memmap)
    assert ds[0]["mixture"].shape == (1, RATE // 4)


def test_the_cache_gives_the_segments_of_the_decoded_files(root, tmp_path):
    kwargs = dict(root=root, sample_rate=RATE, channels=1, segment_seconds=0.25, segments_per_epoch=4, seed=1,
                  augment_gain=True, augment_channel_swap=True, augment_remix=True)
    plain = registry.get("datasets", "musdb")(**kwargs)
    cached = registry.get("datasets", "musdb")(**kwargs, disk_cache=True, cache_dir=tmp_path / "cache")
    for i in range(4):
        for key in ("mixture", "vocals"):
            np.testing.assert_allclose(cached[i][key].numpy(), plain[i][key].numpy(), atol=1e-6)


def test_a_changed_setting_or_file_rebuilds_its_part_only(root, tmp_path):
    cache = tmp_path / "cache"
    tracks = data.open_db(root, "train").tracks
    assert data.prepare_cache(tracks, RATE, 1, cache) == []
    first = _entries(cache)
    data.prepare_cache(tracks, RATE, 1, cache)
    assert _entries(cache) == first  # nothing changed: nothing rebuilt
    data.prepare_cache(tracks, RATE, 2, cache)
    data.prepare_cache(tracks, 16000, 1, cache)
    assert len(_entries(cache)) == 9
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(root, copy)
    tracks = data.open_db(copy, "train").tracks
    data.prepare_cache(tracks, RATE, 1, cache)
    before = set(_entries(cache))
    vocals = copy / "train" / "synth_001" / "vocals.wav"
    os.utime(vocals, ns=(0, vocals.stat().st_mtime_ns + 10**9))
    data.prepare_cache(tracks, RATE, 1, cache)
    new = set(_entries(cache)) - before
    assert len(new) == 1 and next(iter(new)).startswith("synth_001-")


def test_two_processes_preparing_one_cache_never_leave_it_torn(root, tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "toolkit.cli", "data", "prepare", str(root), "--cache", str(cache),
           "--sample-rate", "44100", "--channels", "2", "--workers", "0"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    _no_leftovers(cache)
    for track in data.open_db(root, "train").tracks:
        cached = np.load(data.cache_file(track, 44100, cache, 2))
        np.testing.assert_array_equal(cached, data.track_stems(track))  # the wav files as read, whole


def test_a_song_that_cannot_be_decoded_is_named_and_leaves_nothing(root, tmp_path):
    bad = tmp_path / "bad.stem.mp4"
    bad.write_bytes(b"\0" * 4096)
    good = data.track_ref(data.open_db(root, "test").tracks[0])
    broken = data.TrackRef("bad", "train", False, (str(bad),), 44100, 44100, 2)
    cache = tmp_path / "cache"
    failures = data.prepare_cache([good, broken], RATE, 1, cache)
    assert len(failures) == 1 and str(bad) in failures[0]
    assert len(_entries(cache)) == 1 and _entries(cache)[0].startswith(good.name)
    _no_leftovers(cache)
    with pytest.raises(UserError, match="cannot decode"):
        data.track_stems(broken, RATE, cache, 1)


def test_stem_mp4_decodes_to_the_samples_stempeg_reads(root, tmp_path):
    import stempeg

    mp4 = synth.to_stem_mp4(root, tmp_path / "mp4")
    track = data.open_db(mp4, "train").tracks[0]
    reference, _ = stempeg.read_stems(str(track.path), dtype=np.float32, always_3d=True)
    np.testing.assert_array_equal(data.track_stems(track), reference[:5])


def test_prepare_refuses_a_truncated_stem_file_naming_it(root, tmp_path):
    mp4 = synth.to_stem_mp4(root, tmp_path / "mp4")
    victim = mp4 / "train" / "synth_001.stem.mp4"
    victim.write_bytes(victim.read_bytes()[:5000])
    p = run_cli("data", "prepare", mp4, "--cache", tmp_path / "cache")
    assert_one_line_error(p, 2, str(victim))
    assert not _entries(tmp_path / "cache")


def test_a_run_caches_train_and_valid_songs_in_one_pass_longest_first(root, tmp_path, monkeypatch):
    from rich.console import Console

    from toolkit.run_data import prepare_dataset_cache

    cache = tmp_path / "cache"
    kwargs = dict(root=root, sample_rate=RATE, channels=1, segment_seconds=0.25, segments_per_epoch=4,
                  disk_cache=True, cache_dir=cache)
    sets = [registry.get("datasets", "musdb")(**kwargs, split=split) for split in ("train", "valid")]
    sets.append(registry.get("datasets", "musdb")(**kwargs))  # the same songs again are decoded once
    passes = []
    real = data.prepare_cache
    monkeypatch.setattr("toolkit.run_data.prepare_cache",
                        lambda tracks, *a, **k: passes.append([data.track_ref(t).name for t in tracks]) or real(tracks, *a, **k))
    prepare_dataset_cache(sets, 0, Console(quiet=True))
    assert len(passes) == 1 and sorted(passes[0]) == ["synth_000", "synth_001", "synth_002"]
    assert len(_entries(cache)) == 3

    short = data.track_ref(sets[0].tracks[0])
    long = data.TrackRef("long", short.subset, short.is_wav, short.paths, short.frames * 2, short.rate, short.channels)
    order = []
    monkeypatch.setattr(data, "track_stems", lambda track, *a: order.append(track.name))
    data.prepare_cache([short, long], RATE, 1, cache)
    assert order == ["long", short.name]  # workers take tracks in turn: the longest first end close together
