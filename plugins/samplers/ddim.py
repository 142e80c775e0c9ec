"""DDIM sampling (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12)."""
from __future__ import annotations

import math


from toolkit import registry
from toolkit.errors import UserError
from toolkit.sampling import check_clip_x0, clipped_x0, sampling_steps, standard_normal, timestep_batch


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

    ``model_fn(x_t, t, cond) -> prediction`` of type ``diffusion.prediction``
    with ``t: LongTensor (batch,)`` of training timesteps (docs/samplers.md).
    ``steps`` network evaluations, by default 50 (or num_timesteps if smaller).
    ``eta = 0`` is deterministic; ``eta = 1`` has DDPM's posterior variance.
    With ``clip_x0`` (True: [-1, 1]; 'mixture': [-1, cond]) each x0 estimate is
    bounded and eps recomputed from it (as improved-diffusion does); an x0 prediction reaches the update
    without a round trip through eps. ``callback(step_index, total_steps, x_t)``
    runs after every step.
    """
    if not eta >= 0.0:
        raise UserError(f"samplers.ddim: eta must be >= 0 (0 = deterministic, 1 = DDPM-like), got {eta}")
    check_clip_x0(clip_x0, "samplers.ddim", has_cond=cond is not None)
    timesteps = diffusion.respace(sampling_steps(diffusion, steps), spacing)
    alphas_cumprod = diffusion.alphas_cumprod[timesteps].tolist()  # float64 host scalars per step
    model_timesteps = timesteps.tolist()
    total = len(model_timesteps)
    x = x_T
    for step, i in enumerate(reversed(range(total))):
        t = timestep_batch(x, model_timesteps[i])
        pred = model_fn(x, t, cond)
        x0 = diffusion.to_x0(x, t, pred).to(x.dtype)
        if clip_x0:
            x0 = clipped_x0(x0, cond, clip_x0)
            eps = diffusion.predict_eps(x, t, x0)
        else:
            eps = diffusion.to_eps(x, t, pred).to(x.dtype)
        alpha, alpha_prev = alphas_cumprod[i], (alphas_cumprod[i - 1] if i > 0 else 1.0)
        sigma = eta * math.sqrt((1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev))
        x = math.sqrt(alpha_prev) * x0 + math.sqrt(max(1.0 - alpha_prev - sigma**2, 0.0)) * eps
        if sigma > 0.0:
            x = x + sigma * standard_normal(x, generator)
        if callback is not None:
            callback(step, total, x)
    return x
