"""Linear beta schedule of DDPM (Ho et al. 2020)."""
from __future__ import annotations

import torch

from toolkit import registry
from toolkit.diffusion import check_num_timesteps
from toolkit.errors import UserError


@registry.register("schedules", "linear")
def linear(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear betas from beta_start to beta_end (DDPM); betas: (num_timesteps,) float64.

    The endpoints are used exactly as given (no 1000/num_timesteps rescaling as in
    improved-diffusion): with few timesteps, raise ``beta_end`` yourself so that
    ``alphas_cumprod[-1]`` still reaches ~0.
    """
    check_num_timesteps(num_timesteps, "schedules.linear")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise UserError(
            f"schedules.linear: need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
