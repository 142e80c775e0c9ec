"""The cost of unrolled fine-tuning: a training micro-step through a 2-evaluation sampler vs a regular one.

Ratio (``report.py``): ``unrolled2_vs_regular_step``; with ``UNROLL_STEPS = 2`` on
the last ``unroll_fraction`` f of the steps, training takes about
``1 - f + f * ratio`` times as long (f = 0.2: at most 1.2x needs ratio <= 2).
Both run ``Trainer.micro_step`` (encode, targets, network, loss) and the backward
pass on the experiment's model, batch and segment.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from toolkit import registry
from toolkit.model import Denoiser, placed
from toolkit.settings import TrainConfig
from toolkit.train import Trainer


def trainer_stub(sizes, make_backbone, diffusion, device, precision, unroll_steps: int):
    """What ``Trainer.micro_step`` reads, at the last step of a 10-step run (unrolled when ``unroll_steps`` > 0)."""
    net = placed(Denoiser(make_backbone(sizes.backbone)), device)
    stub = SimpleNamespace(cfg=TrainConfig(steps=10, unroll_steps=unroll_steps), step=9, diffusion=diffusion,
                           transform=registry.get("transforms", "stft_normalizer")(**sizes.transform),
                           loss_fn=registry.get("losses", "counterfactual")(), noise_gen=torch.Generator().manual_seed(0),
                           device=device, precision=precision, train_fn=net)
    stub.sample_timesteps = lambda batch: Trainer.sample_timesteps(stub, batch)
    stub.unrolling = lambda: Trainer.unrolling(stub)
    return stub, net


@pytest.fixture(scope="module")
def audio_batch(sizes, device):
    gen = torch.Generator().manual_seed(0)
    inst, voc = (0.1 * torch.randn(sizes.batch_size, 1, sizes.segment_samples, generator=gen) for _ in range(2))
    return {"mixture": (inst + voc).to(device), "instrumental": inst.to(device), "vocals": voc.to(device)}


def run_micro_step(benchmark, stub, net, batch, sync, unroll_steps: int):
    def step():
        loss, _ = Trainer.micro_step(stub, batch)
        loss.backward()
        net.zero_grad(set_to_none=True)
        sync()

    benchmark.extra_info.update(unroll_steps=unroll_steps, batch=batch["mixture"].shape[0])
    benchmark.pedantic(step, rounds=10, warmup_rounds=1)


@pytest.mark.benchmark(group="unrolled")
def test_micro_step_regular(benchmark, sizes, make_backbone, diffusion, device, precision, sync, audio_batch):
    stub, net = trainer_stub(sizes, make_backbone, diffusion, device, precision, 0)
    run_micro_step(benchmark, stub, net, audio_batch, sync, 0)


@pytest.mark.benchmark(group="unrolled")
def test_micro_step_unrolled2(benchmark, sizes, make_backbone, diffusion, device, precision, sync, audio_batch):
    stub, net = trainer_stub(sizes, make_backbone, diffusion, device, precision, 2)
    run_micro_step(benchmark, stub, net, audio_batch, sync, 2)
