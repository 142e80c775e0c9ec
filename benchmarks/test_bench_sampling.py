"""Sampling one segment: DDIM-50 vs DDPM-1000 wall time (``ddim50_vs_ddpm1000``).

The model is untrained: the time of a sampler depends on the network's cost
and the loop, not on the weights. In the default sizes it is a 16-channel
U-Net of the quickstart's shape (DDPM-1000 with the quickstart U-Net itself
takes about a minute on 2 CPU cores); ``--full`` uses ``unet_base``.

With ``BENCH_CHECKPOINT=<run>/checkpoints/best.pt`` the SDR cost of the short
sampler is measured too: vocals SDR of DDIM-50 minus DDPM-1000 on synthetic
test clips from the quickstart's generator (``BENCH_SDR_CLIPS`` clips, default
2, one model segment each). DDPM-1000 makes that minutes per clip on a CPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from toolkit import registry
from toolkit.model import raw_fn


@pytest.fixture(scope="module")
def segment(sizes, make_denoiser, diffusion, device, precision):
    """(model_fn, x_T: (1, 1, freq, frames), cond: same shape, parameter count) for one mono segment."""
    net = make_denoiser(sizes.sampler_backbone)
    model_fn = raw_fn(net, device, precision)
    gen = torch.Generator().manual_seed(0)
    shape = sizes.spec_shape(batch=1)
    x_T = torch.randn(shape, generator=gen).to(device)
    cond = (2 * torch.rand(shape, generator=gen) - 1).to(device)  # a normalized mixture lies in [-1, 1]
    return model_fn, x_T, cond, sum(p.numel() for p in net.parameters())


def run_sampler(benchmark, name, steps, segment, diffusion, device, sync, rounds, warmup):
    model_fn, x_T, cond, params = segment
    sampler = registry.get("samplers", name)

    def sample():
        generator = torch.Generator(device=device).manual_seed(1)
        sampler(model_fn, diffusion, x_T, cond=cond, steps=steps, generator=generator)
        sync()

    benchmark.extra_info.update(steps=steps, params=params, input_shape=list(x_T.shape))
    benchmark.pedantic(sample, rounds=rounds, warmup_rounds=warmup)


@pytest.mark.benchmark(group="sampling")
def test_sample_ddim50(benchmark, sizes, segment, diffusion, device, precision, sync):
    run_sampler(benchmark, "ddim", 50, segment, diffusion, device, sync, rounds=3, warmup=1)


@pytest.mark.benchmark(group="sampling")
def test_sample_ddpm1000(benchmark, sizes, segment, diffusion, device, sync):
    # one round: 1000 network calls make the loop's own noise small, and the DDIM test warmed the model up
    run_sampler(benchmark, "ddpm", diffusion.num_timesteps, segment, diffusion, device, sync, rounds=1, warmup=0)


def vocals_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR in dB of (channels, samples) signals: 10 log10(|s|^2 / |s - s_hat|^2)."""
    error = np.sum((reference - estimate) ** 2) + 1e-12
    return float(10 * np.log10((np.sum(reference**2) + 1e-12) / error))


@pytest.mark.benchmark(group="sampling")
def test_sampler_sdr_gap(benchmark, sizes, tmp_path_factory):
    path = os.environ.get("BENCH_CHECKPOINT")
    if not path:
        pytest.skip("not measured: set BENCH_CHECKPOINT=<run>/checkpoints/best.pt to compare DDIM-50 and DDPM-1000 SDR")
    if not Path(path).is_file():
        pytest.skip(f"not measured: BENCH_CHECKPOINT={path} is not a file")
    from toolkit.api import Separator
    from diffmsst_plugins.datasets.synthetic import synthesize

    clips = int(os.environ.get("BENCH_SDR_CLIPS", "2"))
    root = synthesize(tmp_path_factory.mktemp("sdr") / "synth", tracks=1, test_tracks=clips,
                      seconds=sizes.segment_seconds, sample_rate=44100, seed=0, style="default")
    songs = []
    for folder in sorted((root / "test").iterdir()):
        mixture, rate = sf.read(folder / "mixture.wav", dtype="float32", always_2d=True)
        vocals, _ = sf.read(folder / "vocals.wav", dtype="float32", always_2d=True)
        songs.append((mixture.T, vocals.T, rate))
    ddim = Separator.from_checkpoint(path, sampler="ddim", steps=50)
    ddpm = Separator.from_checkpoint(path, sampler="ddpm", steps=1000)

    def separate_all(separator):
        return [separator(mixture, rate)[0].numpy() for mixture, _, rate in songs]

    ddim_vocals = benchmark.pedantic(separate_all, args=(ddim,), rounds=1, warmup_rounds=0)
    ddpm_vocals = separate_all(ddpm)
    sdr_ddim = float(np.mean([vocals_sdr(v, e) for (_, v, _), e in zip(songs, ddim_vocals)]))
    sdr_ddpm = float(np.mean([vocals_sdr(v, e) for (_, v, _), e in zip(songs, ddpm_vocals)]))
    benchmark.extra_info.update(checkpoint=str(path), clips=clips, sdr_ddim50_db=sdr_ddim, sdr_ddpm1000_db=sdr_ddpm,
                                sdr_gap_db=sdr_ddim - sdr_ddpm)
