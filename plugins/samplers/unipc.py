"""UniPC: Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
of Diffusion Models" (multistep UniP-2 with UniC, data prediction, B(h) = e^h - 1: "bh2")."""
from __future__ import annotations

import math


from toolkit import registry
from toolkit.sampling import sampling_steps, x0_predictor


@registry.register("samplers", "unipc")
def unipc(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, clip_x0=True,
          spacing="uniform"):
    """UniPC-2 (bh2) from x_T: (batch, ...) to x_0 with ``steps`` network evaluations.

    Visits ``diffusion.respace(steps, spacing)`` from the last timestep down and
    ends at sigma = 0. The predictor UniP-2 is DPM-Solver++(2M)'s step; the
    corrector UniC re-does the previous step with the x0 estimate the next
    predictor needs anyway, so it costs no evaluation and raises the order by
    one. First step first order; the step to sigma = 0 returns the x0
    estimate, as in diffusers' ``UniPCMultistepScheduler`` (``lower_order_final``,
    ``final_sigmas_type="zero"``), whose output this matches. Default spacing:
    time-uniform, the one the authors use with guided/high-resolution models.
    ``clip_x0`` bounds each x0 estimate (True: [-1, 1]; 'mixture': [-1, cond]); ``generator`` is unused
    (deterministic). ``callback(step_index, total_steps, x_t)`` runs after every step.
    """
    timesteps = diffusion.respace(sampling_steps(diffusion, steps), spacing).flip(0).tolist()
    abar = diffusion.alphas_cumprod[timesteps].tolist()  # float64 host scalars
    lam = (-diffusion.sigmas[timesteps].log()).tolist()  # half log-SNR, log(alpha / sigma)
    alpha, sigma = [math.sqrt(a) for a in abar], [math.sqrt(1.0 - a) for a in abar]
    predict_x0 = x0_predictor(model_fn, diffusion, cond, clip_x0)
    total = len(timesteps)
    x = x_T
    x0s = []  # x0 estimates of the visited timesteps, newest last
    x_last = None  # the previous step's (corrected) starting point
    for i, t in enumerate(timesteps):
        x0s.append(predict_x0(x, t))
        if i > 0:  # UniC: redo step i-1 -> i with the new estimate
            x = _corrected(x_last, x0s, lam, alpha, sigma, i, order=1 if i == 1 else 2)
        if i + 1 == total:  # to sigma = 0: the solution is the x0 estimate itself
            x = x0s[-1]
        else:  # UniP: DDIM for the first step, then DPM-Solver++(2M)
            x_last = x
            h = lam[i + 1] - lam[i]
            x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * math.expm1(-h) * x0s[-1]
            if i > 0:
                r = (lam[i - 1] - lam[i]) / h
                x = x - alpha[i + 1] * math.expm1(-h) * 0.5 * (x0s[-2] - x0s[-1]) / r
            x0s = x0s[-2:]
        if callback is not None:
            callback(i, total, x)
    return x


def _corrected(x_start, x0s, lam, alpha, sigma, i: int, order: int):
    """UniC-``order`` (bh2) for the step from timestep index i-1 to i.

    ``x0s[-1]`` is the estimate at i, ``x0s[-2]`` at i-1, ``x0s[-3]`` (order 2)
    at i-2; the weights rho solve the paper's order conditions R rho = b.
    """
    h = lam[i] - lam[i - 1]
    b_h = math.expm1(-h)  # B(h) = e^h - 1 for data prediction's -h ("bh2"), also h * phi_1
    update = x0s[-1] - x0s[-2]
    if order == 1:
        correction = 0.5 * update
    else:
        r = (lam[i - 2] - lam[i - 1]) / h
        phi_2 = b_h / -h - 1.0  # the phi_k of the paper's b_k, times k!
        b1 = phi_2 / b_h
        b2 = (phi_2 / -h - 0.5) * 2.0 / b_h
        rho_previous = (b1 - b2) / (1.0 - r)  # solves [[1, 1], [r, 1]] rho = [b1, b2]
        correction = rho_previous * (x0s[-3] - x0s[-2]) / r + (b1 - rho_previous) * update
    return sigma[i] / sigma[i - 1] * x_start - alpha[i] * b_h * (x0s[-2] + correction)
