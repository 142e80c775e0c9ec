"""Ancestral DDPM sampling (Ho et al. 2020), optionally over a respaced subset of timesteps."""
from __future__ import annotations

from toolkit import registry
from toolkit.sampling import check_clip_x0, clipped_x0, standard_normal, timestep_batch


@registry.register("samplers", "ddpm")
def ddpm(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, clip_x0=True):
    """Ancestral sampling from x_T: (batch, ...) to x_0 through q(x_{t-1} | x_t, x0_hat).

    ``model_fn(x_t, t, cond) -> prediction`` of type ``diffusion.prediction``
    with ``t: LongTensor (batch,)`` of training timesteps (docs/samplers.md).
    ``steps=None`` visits every timestep; fewer steps visit
    ``diffusion.respace(steps)`` with the betas recomputed from alphas_cumprod
    for that subset (improved-diffusion's respacing). The variance is the
    clipped posterior one ("fixed small"). ``clip_x0`` bounds each x0 estimate
    (True: [-1, 1]; 'mixture': [-1, cond]). ``callback(step_index, total_steps, x_t)`` runs after every
    step, ``step_index`` counting from 0.
    """
    check_clip_x0(clip_x0, "samplers.ddpm", has_cond=cond is not None)
    steps = diffusion.num_timesteps if steps is None else steps
    timesteps = diffusion.respace(steps)
    process = diffusion if steps == diffusion.num_timesteps else diffusion.respaced(timesteps)
    model_timesteps = timesteps.tolist()  # host ints: building t in the loop needs no device sync
    total = len(model_timesteps)
    x = x_T
    for step, i in enumerate(reversed(range(total))):
        t_model, t_process = timestep_batch(x, model_timesteps[i]), timestep_batch(x, i)
        x0 = process.to_x0(x, t_process, model_fn(x, t_model, cond)).to(x.dtype)
        x0 = clipped_x0(x0, cond, clip_x0)
        mean, _, log_variance = process.posterior(x0, x, t_process)
        if i > 0:  # the last step returns the mean: no noise is added at t = 0
            x = mean + (0.5 * log_variance).exp() * standard_normal(x, generator)
        else:
            x = mean
        if callback is not None:
            callback(step, total, x)
    return x
