"""Euler-ancestral sampling, as k-diffusion's ``sample_euler_ancestral`` (Crowson), in the
sigma variable of Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models"."""
from __future__ import annotations

import math


from toolkit import registry
from toolkit.errors import UserError
from toolkit.sampling import noise_levels, sampling_steps, standard_normal, x0_predictor


@registry.register("samplers", "euler_ancestral")
def euler_ancestral(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, eta=1.0,
                    clip_x0=True, spacing="karras"):
    """Euler-ancestral from x_T: (batch, ...) to x_0 with ``steps`` network evaluations.

    In ``y = x_t / sqrt(abar)`` = x0 + sigma * eps, over the sigmas of
    ``diffusion.respace(steps, spacing)`` and then sigma = 0, each step splits
    the move from sigma to s into an Euler step of the probability-flow ODE
    down to ``sigma_down`` and fresh noise of std ``sigma_up``:

        y_next = sigma_down/sigma * y + (1 - sigma_down/sigma) * D + sigma_up * z

    with ``sigma_up = eta * s * sqrt(1 - s^2 / sigma^2)`` and
    ``sigma_down^2 + sigma_up^2 = s^2``; ``eta = 1`` is DDPM's posterior (with
    uniform spacing it gives DDPM's numbers), ``eta = 0`` plain Euler (DDIM).
    The step to sigma = 0 adds no noise. Default spacing: Karras et al.'s.
    ``clip_x0`` bounds each x0 estimate (True: [-1, 1]; 'mixture': [-1, cond]). Noise comes from
    ``generator``: same seed, same output. ``callback(step_index, total_steps,
    x_t)`` runs after every step.
    """
    if not eta >= 0.0:
        raise UserError(f"samplers.euler_ancestral: eta must be >= 0 (0 = Euler, 1 = ancestral), got {eta}")
    timesteps = diffusion.respace(sampling_steps(diffusion, steps), spacing).flip(0).tolist()
    abar, sigma = noise_levels(diffusion, timesteps)
    predict_x0 = x0_predictor(model_fn, diffusion, cond, clip_x0)
    total = len(timesteps)
    x = x_T  # x_t = sqrt(abar) * y, kept at the network's scale
    for i, t in enumerate(timesteps):
        s = sigma[i + 1]
        sigma_up = min(s, eta * s * math.sqrt(max(1.0 - (s / sigma[i]) ** 2, 0.0)))
        down = math.sqrt(s**2 - sigma_up**2) / sigma[i]  # sigma_down / sigma
        alpha, alpha_next = math.sqrt(abar[i]), math.sqrt(abar[i + 1])
        x0 = predict_x0(x, t)
        x = alpha_next / alpha * down * x + alpha_next * (1.0 - down) * x0
        if sigma_up > 0.0:
            x = x + alpha_next * sigma_up * standard_normal(x, generator)
        if callback is not None:
            callback(i, total, x)
    return x
