"""Unrolled fine-tuning (TrainConfig.unroll_steps): the last share of the steps trains through the sampler."""
from types import SimpleNamespace

import pytest
import torch

from toolkit import registry
from toolkit.diffusion import GaussianDiffusion
from toolkit.errors import UserError
from toolkit.settings import TrainConfig
from toolkit.train import Trainer

registry.load_builtin_plugins()


class CountingNet(torch.nn.Module):
    """An x0 network: a per-channel affine map of [x_t, cond]; counts its calls."""

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Conv2d(2, 1, 1)
        self.calls = 0
        self.outputs = []

    def forward(self, x_t, t, cond):
        self.calls += 1
        out = torch.tanh(self.mix(torch.cat([x_t, cond], 1)))
        if out.requires_grad:
            out.retain_grad()
            self.outputs.append(out)
        return out


def stub_trainer(step: int, unroll_steps: int, steps: int = 10):
    net = CountingNet()
    seen = []

    def loss_fn(model_fn, diffusion, batch):
        seen.append(batch)
        pred = batch.x0_hat if batch.x0_hat is not None else model_fn(diffusion.q_sample(batch.x0, batch.t, batch.noise),
                                                                        batch.t, batch.cond)
        total = (pred - batch.x0).square().mean()
        return total, {"total": total}

    stub = SimpleNamespace(cfg=TrainConfig(steps=steps, unroll_steps=unroll_steps, unroll_fraction=0.2),
                           step=step, transform=registry.get("transforms", "stft_normalizer")(n_fft=256, hop_length=64),
                           diffusion=GaussianDiffusion(registry.get("schedules", "cosine")(1000), prediction="x0"),
                           noise_gen=torch.Generator().manual_seed(0), device=torch.device("cpu"), precision="fp32",
                           train_fn=net, loss_fn=loss_fn)
    stub.sample_timesteps = lambda batch: Trainer.sample_timesteps(stub, batch)
    stub.unrolling = lambda: Trainer.unrolling(stub)
    return stub, net, seen


def audio_batch():
    gen = torch.Generator().manual_seed(1)
    inst, voc = (0.3 * torch.randn(2, 1, 2048, generator=gen) for _ in range(2))
    return {"mixture": inst + voc, "instrumental": inst, "vocals": voc}


@pytest.mark.parametrize("unroll_steps,unrolled", [(0, []), (2, [8, 9])])
def test_the_last_fraction_of_the_steps_unrolls(unroll_steps, unrolled):
    assert [s for s in range(10) if Trainer.unrolling(stub_trainer(s, unroll_steps)[0])] == unrolled


def test_an_unrolled_step_scores_the_samplers_estimate_with_gradients_through_every_evaluation():
    stub, net, seen = stub_trainer(step=9, unroll_steps=2)
    loss, _ = Trainer.micro_step(stub, audio_batch())
    batch = seen[0]
    assert net.calls == 2 and batch.x0_hat is not None
    # the estimate is the ddim sampler's, from the batch's own noise
    with torch.no_grad():
        expected = registry.get("samplers", "ddim")(net, stub.diffusion, batch.noise,
                                                    cond=batch.cond, steps=2)
    assert torch.allclose(batch.x0_hat, expected, atol=1e-6)
    # the gradient reaches the network through both evaluations: the first one's estimate feeds the second
    loss.backward()
    assert len(net.outputs) == 2 and all(float(out.grad.abs().sum()) > 0 for out in net.outputs)
    assert all(float(p.grad.abs().sum()) > 0 for p in net.parameters())


def test_a_step_before_the_phase_is_the_usual_one_timestep_loss():
    stub, net, seen = stub_trainer(step=7, unroll_steps=2)
    Trainer.micro_step(stub, audio_batch())
    assert net.calls == 1 and seen[0].x0_hat is None


@pytest.mark.parametrize("field,value", [("unroll_steps", -1), ("unroll_steps", 1.5), ("unroll_fraction", 0.0),
                                         ("unroll_fraction", 1.5), ("unroll_fraction", True)])
def test_bad_settings_are_refused_by_name(field, value):
    with pytest.raises(UserError, match=field):
        TrainConfig(**{field: value}).check()
