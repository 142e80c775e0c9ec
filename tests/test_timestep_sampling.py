"""Training timesteps: uniform by default, a configurable share at the last timestep."""
from types import SimpleNamespace

import pytest
import torch

from toolkit.errors import UserError
from toolkit.settings import TrainConfig
from toolkit.train import Trainer


def draw(fraction: float, batch: int = 4000, seed: int = 0, num_timesteps: int = 1000) -> torch.Tensor:
    stub = SimpleNamespace(cfg=TrainConfig(last_timestep_fraction=fraction),
                           diffusion=SimpleNamespace(num_timesteps=num_timesteps),
                           noise_gen=torch.Generator().manual_seed(seed))
    return Trainer.sample_timesteps(stub, batch)


def test_default_is_uniform_and_unchanged_by_the_option():
    t = draw(0.0)
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 999
    assert (t == 999).float().mean() < 0.01  # ~1/1000
    # fraction 0 draws exactly what plain randint draws: older runs keep their noise stream
    assert torch.equal(t, torch.randint(0, 1000, (4000,), generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_share_at_last_timestep(fraction):
    t = draw(fraction)
    share = (t == 999).float().mean().item()
    assert abs(share - fraction) < 0.03, share
    rest = t[t != 999]
    if fraction < 1.0:  # the others still cover the whole range
        assert rest.min() < 50 and rest.max() > 900


def test_same_seed_same_timesteps():
    assert torch.equal(draw(0.5, seed=3), draw(0.5, seed=3))
    assert not torch.equal(draw(0.5, seed=3), draw(0.5, seed=4))


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_fraction_is_a_user_error(bad):
    with pytest.raises(UserError, match="last_timestep_fraction"):
        TrainConfig(last_timestep_fraction=bad).check()
