"""DDIM sampling (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12)."""
from __future__ import annotations

import math

import torch

from toolkit import registry
from toolkit.errors import UserError

from .ddpm import standard_normal

DEFAULT_STEPS = 50


@registry.register("samplers", "ddim")
def ddim(
    model_fn,
    diffusion,
    x_T,
    *,
    cond=None,
    steps=None,
    generator=None,
    callback=None,
    eta=0.0,
    clip_x0=True,
    spacing="uniform",
):
    """DDIM from x_T: (batch, ...) to x_0 over ``diffusion.respace(steps, spacing)``.

    ``model_fn(x_t, t, cond) -> eps`` with ``t: LongTensor (batch,)`` of training
    timesteps (wrap a network with ``diffusion.eps_model(net)``). ``steps``
    defaults to 50 (or num_timesteps if smaller). ``eta = 0`` is deterministic;
    ``eta = 1`` has DDPM's posterior variance. With ``clip_x0`` each x0 estimate is
    clamped to [-1, 1] and eps recomputed from it (as improved-diffusion does).
    ``callback(step_index, total_steps, x_t)`` runs after every step.
    """
    if not eta >= 0.0:
        raise UserError(f"samplers.ddim: eta must be >= 0 (0 = deterministic, 1 = DDPM-like), got {eta}")
    steps = min(DEFAULT_STEPS, diffusion.num_timesteps) if steps is None else steps
    timesteps = diffusion.respace(steps, spacing)
    alphas_cumprod = diffusion.alphas_cumprod[timesteps].tolist()  # float64 host scalars per step
    model_timesteps = timesteps.tolist()
    batch, total = x_T.shape[0], len(model_timesteps)
    x = x_T
    with torch.no_grad():
        for step, i in enumerate(reversed(range(total))):
            t = torch.full((batch,), model_timesteps[i], dtype=torch.long, device=x.device)
            eps = model_fn(x, t, cond).to(x.dtype)
            x0 = diffusion.predict_x0(x, t, eps)
            if clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
                eps = diffusion.predict_eps(x, t, x0)
            alpha, alpha_prev = alphas_cumprod[i], (alphas_cumprod[i - 1] if i > 0 else 1.0)
            sigma = eta * math.sqrt((1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev))
            x = math.sqrt(alpha_prev) * x0 + math.sqrt(max(1.0 - alpha_prev - sigma**2, 0.0)) * eps
            if sigma > 0.0:
                x = x + sigma * standard_normal(x, generator)
            if callback is not None:
                callback(step, total, x)
    return x
