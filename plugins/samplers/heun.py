"""Heun's second-order sampler of Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Algorithm 1 (deterministic, S_churn = 0)."""
from __future__ import annotations

import math


from toolkit import registry
from toolkit.sampling import noise_levels, sampling_steps, x0_predictor


@registry.register("samplers", "heun")
def heun(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, clip_x0=True,
         spacing="karras"):
    """Heun's method on the probability-flow ODE from x_T: (batch, ...) to x_0 in ``steps`` network evaluations.

    The ODE of Karras et al. in ``y = x_t / sqrt(abar)``, whose noise
    level is ``sigma = sqrt((1 - abar) / abar)``: ``dy/dsigma = (y - D) / sigma``,
    D the x0 estimate. Over the sigmas of ``diffusion.respace(n, spacing)`` and
    then sigma = 0 (default spacing: the paper's, sigma^(1/7) evenly spaced),
    the Euler step from sigma to s and Heun's correction, written with D so that
    nothing of size sigma is subtracted in float32 (the loop keeps
    ``x_t = sqrt(abar) * y``, at the network's scale), are

        y_euler = s/sigma * y + (1 - s/sigma) * D1
        y_heun  = y_euler + (1 - sigma/s) / 2 * (D1 - D2),   D2 = D(y_euler) at s

    (the same numbers as ``y + (s - sigma) * (d1 + d2) / 2``). A Heun step
    costs two evaluations, an Euler step one; the step to sigma = 0 is always
    Euler (the network has no timestep there). The budget: ``n = steps // 2 + 1``
    sigmas, so an odd ``steps`` makes every step but the last a Heun step, and
    an even one also takes the step into the smallest nonzero sigma as Euler. ``clip_x0``
    bounds each x0 estimate (True: [-1, 1]; 'mixture': [-1, cond]); ``generator`` is unused
    (deterministic). ``callback(step_index, total_steps, x_t)`` runs after
    every step (``total_steps`` = n steps, not evaluations).
    """
    evaluations = sampling_steps(diffusion, steps)
    timesteps = diffusion.respace(evaluations // 2 + 1, spacing).flip(0).tolist()
    heun_steps = evaluations - len(timesteps)  # the first steps are Heun, the others Euler
    abar, sigma = noise_levels(diffusion, timesteps)
    predict_x0 = x0_predictor(model_fn, diffusion, cond, clip_x0)
    total = len(timesteps)
    x = x_T  # x_t = sqrt(abar) * y, kept at the network's scale
    for i, t in enumerate(timesteps):
        ratio = sigma[i + 1] / sigma[i]
        alpha_next = math.sqrt(abar[i + 1])
        x0 = predict_x0(x, t)
        x_euler = math.sqrt((1.0 - abar[i + 1]) / (1.0 - abar[i])) * x + alpha_next * (1.0 - ratio) * x0
        if i < heun_steps:
            x0_next = predict_x0(x_euler, timesteps[i + 1])
            x = x_euler + alpha_next * 0.5 * (1.0 - 1.0 / ratio) * (x0 - x0_next)
        else:
            x = x_euler
        if callback is not None:
            callback(i, total, x)
    return x
