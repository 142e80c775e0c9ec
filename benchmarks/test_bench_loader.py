"""The training loader on full-length songs: cold and warm disk cache, 0 and 2 workers, vs the base model's appetite.

A MUSDB-shaped set of ``BENCH_LOADER_SONGS`` (6) songs of ``BENCH_LOADER_SECONDS``
(180) s, 44.1 kHz stereo, is generated once into the toolkit cache as 16-bit wav
(MUSDB18-HQ) and as AAC stem mp4 (MUSDB18). A pass reads training segments of
``experiments/diffmsst_base.gin`` (44.1 kHz mono, 3 s, the disk cache on)
through the trainer's DataLoader, worker start-up included. *Cold*: from an
empty cache, what a run does first: cache its train and valid songs with the
same number of worker processes (``toolkit.run_data.prepare_dataset_cache``),
then read ``BENCH_LOADER_SEGMENTS`` (64) segments; the song files are read once
before each pass (untimed), so whether the OS still holds them does not count. *Warm*: read
``BENCH_LOADER_WARM_SEGMENTS`` (512) segments from a prepared cache. ``test_train_step_base_model`` times one train step of
the base U-Net on this machine, so the ratios compare rates of the same run:

- ``loader_warm_vs_base_train_consumption``: warm 2-worker segments/s (the slower
  of wav and stem mp4) / segments/s the base train step consumes; goal >= 10;
- ``loader_cold_workers_speedup_{wav,stem_mp4}``: cold 2-worker / cold 0-worker
  segments/s; goal >= 1.7.
"""
from __future__ import annotations

import itertools
import os
import shutil

import pytest
import torch
from rich.console import Console
from conftest import sizes_for
from test_bench_backbone import as_toolkit_default, make_batch, train_step

from diffmsst_plugins.datasets.synthetic import generated_root, to_stem_mp4
from toolkit import data, registry
from toolkit.loader import SlotBatches, batch_loader
from toolkit.run_data import prepare_dataset_cache

SONGS = int(os.environ.get("BENCH_LOADER_SONGS", "6"))
SECONDS = float(os.environ.get("BENCH_LOADER_SECONDS", "180"))
SEGMENTS = int(os.environ.get("BENCH_LOADER_SEGMENTS", "64"))
WARM_SEGMENTS = int(os.environ.get("BENCH_LOADER_WARM_SEGMENTS", "512"))
TRAIN_BATCH = int(os.environ.get("BENCH_LOADER_TRAIN_BATCH", "2"))  # per-segment cost is what is compared
BASE = sizes_for(full=True)
CASES = [("wav", 0), ("wav", 2), ("stem_mp4", 0), ("stem_mp4", 2)]
IDS = [f"{form}-w{workers}" for form, workers in CASES]


@pytest.fixture(scope="module")
def roots() -> dict:
    """``{'wav': root, 'stem_mp4': root}``: the same songs in both forms, made once per machine."""
    wav = generated_root({"tracks": SONGS, "test_tracks": 0, "seconds": SECONDS, "sample_rate": 44100, "seed": 0,
                          "style": "default", "subtype": "PCM_16"})
    return {"wav": wav, "stem_mp4": to_stem_mp4(wav, wav.parent / f"{wav.name}-stem-mp4")}


def _dataset(root, cache, split: str = "train"):
    return registry.get("datasets", "musdb")(root=str(root), split=split, sample_rate=BASE.sample_rate, channels=1,
                                             segment_seconds=BASE.segment_seconds, segments_per_epoch=10**6, seed=0,
                                             disk_cache=True, cache_dir=str(cache))


def _read(dataset, workers: int, first_step: int, segments: int) -> None:
    steps = segments // BASE.batch_size
    sampler = SlotBatches(first_step, first_step + steps, BASE.batch_size)
    for _ in batch_loader(dataset, sampler, workers, torch.device("cpu")):
        pass


def _read_files(root) -> None:
    """Read every file under ``root`` once, so a cold pass times decoding, not whether the OS still holds the songs."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass


def _cold_pass(datasets, workers: int, first_step: int) -> None:
    prepare_dataset_cache(datasets, workers, Console(quiet=True))  # as toolkit.runner before training
    _read(datasets[0], workers, first_step, SEGMENTS)


@pytest.mark.benchmark(group="loader")
@pytest.mark.parametrize("form, workers", CASES, ids=IDS)
def test_loader_cold(benchmark, roots, form, workers, tmp_path):
    cache = tmp_path / "cache"
    steps = itertools.count(0, SEGMENTS)

    def empty_cache():
        shutil.rmtree(cache, ignore_errors=True)
        _read_files(roots[form])
        data.clear_memory_cache()  # workers fork from this process: they start with nothing decoded
        return ((_dataset(roots[form], cache), _dataset(roots[form], cache, "valid")), workers, next(steps)), {}

    benchmark.extra_info.update(segments=SEGMENTS, songs=SONGS, song_seconds=SECONDS, workers=workers)
    benchmark.pedantic(_cold_pass, setup=empty_cache, rounds=3, warmup_rounds=0)


@pytest.mark.benchmark(group="loader")
@pytest.mark.parametrize("form, workers", CASES, ids=IDS)
def test_loader_warm(benchmark, roots, form, workers, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / f"warm-{form}"
    dataset = _dataset(roots[form], cache)
    assert data.prepare_cache(dataset.tracks, dataset.sample_rate, 1, cache, workers=2) == []
    steps = itertools.count(0, WARM_SEGMENTS)
    benchmark.extra_info.update(segments=WARM_SEGMENTS, songs=SONGS, song_seconds=SECONDS, workers=workers)
    benchmark.pedantic(lambda: _read(dataset, workers, next(steps), WARM_SEGMENTS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="loader")
def test_train_step_base_model(benchmark, make_backbone, device, precision, sync):
    """One train step of the base U-Net (experiments/diffmsst_base.gin) on ``TRAIN_BATCH`` 3-s segments."""
    x, t, target = make_batch(BASE, device)
    x, t, target = x[:TRAIN_BATCH], t[:TRAIN_BATCH], target[:TRAIN_BATCH]
    net, x = as_toolkit_default(make_backbone(BASE.backbone), x)
    benchmark.extra_info.update(batch=TRAIN_BATCH, precision=precision, input_shape=list(x.shape))
    benchmark.pedantic(train_step(net, x, t, target, device, precision, sync), rounds=2, warmup_rounds=1)
