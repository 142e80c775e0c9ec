import math

import pytest
import torch

from toolkit import registry
from toolkit.errors import UserError

registry.load_builtin_plugins()


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_shape_dtype_range(name):
    betas = registry.get("schedules", name)(1000)
    assert betas.shape == (1000,)
    assert betas.dtype == torch.float64
    assert bool(((betas > 0) & (betas < 1)).all())
    assert bool((betas[1:] >= betas[:-1]).all()), "both schedules add noise faster and faster"


def test_linear_end_values():
    betas = registry.get("schedules", "linear")(1000)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    assert (betas[1] - betas[0]).item() == pytest.approx((0.02 - 1e-4) / 999, rel=1e-9)


def test_cosine_matches_alpha_bar_formula():
    num, s = 1000, 0.008
    betas = registry.get("schedules", "cosine")(num, s=s)
    alphas_cumprod = torch.cumprod(1 - betas, 0)

    def alpha_bar(t):
        return math.cos((t / num + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2

    for t in (0, 250, 500, 900):  # beta clipping only bites at the very end
        assert alphas_cumprod[t].item() == pytest.approx(alpha_bar(t + 1), rel=1e-9)
    assert betas[-1].item() == pytest.approx(0.999)  # clipped by max_beta
    assert alphas_cumprod[-1].item() < 1e-6


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_num_timesteps(name, bad):
    with pytest.raises(UserError, match="num_timesteps"):
        registry.get("schedules", name)(bad)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_one_timestep(name):
    betas = registry.get("schedules", name)(1)
    assert betas.shape == (1,) and 0 < betas.item() < 1


def test_bad_arguments():
    with pytest.raises(UserError, match="beta_start"):
        registry.get("schedules", "linear")(10, beta_start=0.5, beta_end=0.1)
    with pytest.raises(UserError, match="max_beta"):
        registry.get("schedules", "cosine")(10, max_beta=1.0)
