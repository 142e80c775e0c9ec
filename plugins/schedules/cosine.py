"""Cosine schedule of Nichol & Dhariwal 2021, "Improved DDPM", eq. 17."""
from __future__ import annotations

import math

import torch

from toolkit import registry
from toolkit.diffusion import check_num_timesteps
from toolkit.errors import UserError


@registry.register("schedules", "cosine")
def cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas with alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2); betas: (num_timesteps,) float64.

    ``beta_t = min(1 - alpha_bar(t+1) / alpha_bar(t), max_beta)``; the clip keeps the
    last steps from being singular (beta = 1), as in the paper.
    """
    check_num_timesteps(num_timesteps, "schedules.cosine")
    if not s > 0.0:
        raise UserError(f"schedules.cosine: offset s must be > 0, got {s}; the paper uses s = 0.008")
    if not 0.0 < max_beta < 1.0:
        raise UserError(f"schedules.cosine: max_beta must be in (0, 1), got {max_beta}; the paper uses 0.999")
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)
