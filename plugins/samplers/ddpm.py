"""Ancestral DDPM sampling (Ho et al. 2020), optionally over a respaced subset of timesteps."""
from __future__ import annotations

import torch

from toolkit import registry


def standard_normal(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) noise shaped like x: (batch, ...), drawn from ``generator``.

    The draw happens on the generator's own device and is then moved to x's, so a
    CPU generator works for CUDA samples too and gives the same numbers on every
    device (a CUDA generator on x's device avoids the copy).
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


@registry.register("samplers", "ddpm")
def ddpm(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, clip_x0=True):
    """Ancestral sampling from x_T: (batch, ...) to x_0 through q(x_{t-1} | x_t, x0_hat).

    ``model_fn(x_t, t, cond) -> eps`` with ``t: LongTensor (batch,)`` of training
    timesteps (wrap a network with ``diffusion.eps_model(net)``). ``steps=None``
    visits every timestep; fewer steps visit ``diffusion.respace(steps)`` with the
    betas recomputed from alphas_cumprod for that subset (improved-diffusion's
    respacing). The variance is the clipped posterior one ("fixed small").
    ``clip_x0`` clamps each x0 estimate to [-1, 1]. ``callback(step_index,
    total_steps, x_t)`` runs after every step, ``step_index`` counting from 0.
    """
    steps = diffusion.num_timesteps if steps is None else steps
    timesteps = diffusion.respace(steps)
    process = diffusion if steps == diffusion.num_timesteps else diffusion.respaced(timesteps)
    model_timesteps = timesteps.tolist()  # host ints: building t in the loop needs no device sync
    batch, total = x_T.shape[0], len(model_timesteps)
    x = x_T
    with torch.no_grad():
        for step, i in enumerate(reversed(range(total))):
            t_model = torch.full((batch,), model_timesteps[i], dtype=torch.long, device=x.device)
            t_process = torch.full((batch,), i, dtype=torch.long, device=x.device)
            eps = model_fn(x, t_model, cond).to(x.dtype)
            x0 = process.predict_x0(x, t_process, eps)
            if clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            mean, _, log_variance = process.posterior(x0, x, t_process)
            if i > 0:  # the last step returns the mean: no noise is added at t = 0
                x = mean + (0.5 * log_variance).exp() * standard_normal(x, generator)
            else:
                x = mean
            if callback is not None:
                callback(step, total, x)
    return x
