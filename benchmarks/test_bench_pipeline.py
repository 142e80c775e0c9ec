"""The parts around the network: STFT normalizer, cached segment loading, whole-clip separation.

Ratios (``report.py``): ``stft_share_of_train_step`` (encode + decode of a
training batch / one default train step), ``loader_vs_train_consumption``
(segments/s the warm loader delivers / segments/s a train step consumes) and
``separate_rtf`` (compute seconds per second of audio, untrained quickstart-sized
model, the experiment's sampler steps and segment length).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from toolkit import registry
from toolkit.data_index import fetch

CLIP_RATE = 44100  # what a user hands to `toolkit separate`: a stereo 44.1 kHz song


@pytest.mark.benchmark(group="pipeline")
def test_stft_encode_decode(benchmark, sizes, device, sync):
    transform = registry.get("transforms", "stft_normalizer")(**sizes.transform)
    gen = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(sizes.batch_size, 1, sizes.segment_samples, generator=gen)).to(device)

    def encode_decode():
        spec, state = transform.encode(audio)
        transform.decode(spec, state)
        sync()

    benchmark.extra_info.update(batch=sizes.batch_size, samples=sizes.segment_samples)
    benchmark.pedantic(encode_decode, rounds=20, warmup_rounds=2)


@pytest.fixture(scope="module")
def segments_dataset(sizes, tmp_path_factory):
    """A ``datasets.musdb`` training set on a tiny synthetic root, its audio cache warm."""
    try:
        import toolkit.data  # noqa: F401
        factory = registry.get("datasets", "musdb")
    except Exception as exc:  # the module is young: any import failure means "not measurable yet"
        pytest.skip(f"toolkit.data / datasets.musdb not usable ({type(exc).__name__}: {exc})")
    from diffmsst_plugins.datasets.synthetic import synthesize

    tmp = tmp_path_factory.mktemp("data")
    root = synthesize(tmp / "synth", tracks=3, test_tracks=1, seconds=max(6.0, 3 * sizes.segment_seconds),
                      sample_rate=44100, seed=0)
    dataset = factory(root=str(root), subset="train", split="train", sample_rate=sizes.sample_rate, channels=1,
                      segment_seconds=sizes.segment_seconds, segments_per_epoch=1000, random_segments=True, seed=0,
                      cache_dir=str(tmp / "cache"))
    for g in range(4 * sizes.batch_size):  # decode + resample every track once: the cache the benchmark reads
        fetch(dataset, g)
    return dataset


@pytest.mark.benchmark(group="pipeline")
def test_load_cached_segments(benchmark, sizes, segments_dataset, device, sync):
    batches = itertools.count()

    def load_batch():  # as Trainer.batch: global indices, stack, to the device
        g0 = next(batches) * sizes.batch_size
        items = [fetch(segments_dataset, g0 + j) for j in range(sizes.batch_size)]
        {k: torch.stack([it[k] for it in items]).to(device) for k in ("mixture", "instrumental", "vocals")}
        sync()

    benchmark.extra_info.update(segments=sizes.batch_size, tracks=len(segments_dataset.tracks))
    benchmark.pedantic(load_batch, rounds=20, warmup_rounds=2)


@pytest.mark.benchmark(group="pipeline")
def test_separate_clip(benchmark, sizes, make_denoiser, diffusion, device, precision):
    from toolkit.separate import Engine, separate_array
    from toolkit.settings import SeparationSettings

    transform = registry.get("transforms", "stft_normalizer")(**sizes.transform)
    settings = SeparationSettings(sampler="ddim", steps=sizes.sampling_steps, segment_seconds=sizes.segment_seconds,
                                  overlap=0.25, batch_size=4, seed=0)
    engine = Engine(make_denoiser(sizes.backbone), diffusion, transform, sample_rate=sizes.sample_rate, channels=1,
                    device=device, precision=precision, settings=settings)
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal((2, int(sizes.clip_seconds * CLIP_RATE)))).astype(np.float32)
    benchmark.extra_info.update(clip_seconds=sizes.clip_seconds, clip_channels=2, clip_rate=CLIP_RATE,
                                steps=sizes.sampling_steps, sampler="ddim")
    benchmark.pedantic(separate_array, args=(engine, clip, CLIP_RATE), rounds=2, warmup_rounds=0)
