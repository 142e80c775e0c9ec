"""DPM-Solver++(2M): Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models", Algorithm 2 (multistep, second order, data prediction)."""
from __future__ import annotations

import math


from toolkit import registry
from toolkit.sampling import sampling_steps, x0_predictor


@registry.register("samplers", "dpmpp_2m")
def dpmpp_2m(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, clip_x0=True,
             spacing="uniform"):
    """DPM-Solver++(2M) from x_T: (batch, ...) to x_0 with ``steps`` network evaluations.

    Visits ``diffusion.respace(steps, spacing)`` from the last timestep down
    and ends at sigma = 0. In the half log-SNR ``lambda = log(alpha / sigma)``
    (``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``), each step is

        x_next = sigma_next / sigma * x + alpha_next * (1 - exp(-h)) * D,  h = lambda_next - lambda

    with D the x0 estimate, extrapolated from the previous one,
    ``D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}``, ``r = h_{i-1} / h_i``. The first
    step and the step to sigma = 0 are first order (DDIM), as in the paper and
    in diffusers' ``DPMSolverMultistepScheduler`` (``final_sigmas_type="zero"``),
    whose output this matches. The default spacing is time-uniform, the one the
    authors recommend for multistep DPM-Solver++ on high-resolution inputs.
    ``clip_x0`` bounds each x0 estimate (True: [-1, 1]; 'mixture': [-1, cond]); ``generator`` is unused
    (deterministic). ``callback(step_index, total_steps, x_t)`` runs after every step.
    """
    timesteps = diffusion.respace(sampling_steps(diffusion, steps), spacing).flip(0).tolist()
    abar = diffusion.alphas_cumprod[timesteps].tolist()  # float64 host scalars
    lam = (-diffusion.sigmas[timesteps].log()).tolist()  # half log-SNR, log(alpha / sigma)
    predict_x0 = x0_predictor(model_fn, diffusion, cond, clip_x0)
    total = len(timesteps)
    x, previous, h_previous = x_T, None, 0.0
    for i, t in enumerate(timesteps):
        x0 = predict_x0(x, t)
        if i + 1 == total:  # to sigma = 0: the solution is the x0 estimate itself
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            d = x0
            if previous is not None:
                r = h_previous / h
                d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * previous
            ratio = math.sqrt((1.0 - abar[i + 1]) / (1.0 - abar[i]))
            x = ratio * x - math.sqrt(abar[i + 1]) * math.expm1(-h) * d
            previous, h_previous = x0, h
        if callback is not None:
            callback(i, total, x)
    return x
