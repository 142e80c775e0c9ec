"""What every sampler shares: the x0 view of the network, noise draws, the step count.

Samplers are plain functions (k-diffusion style); the contract they follow
(``model_fn`` returns the raw prediction, ``diffusion`` converts it) is
docs/samplers.md. Shapes: ``x, x_t: (batch, ...)``; timesteps are training
timesteps ``0..num_timesteps-1``.
"""
from __future__ import annotations

import inspect

import torch

from . import registry
from .errors import UserError

DEFAULT_STEPS = 50


def sampling_steps(diffusion, steps: int | None) -> int:
    """``steps`` network evaluations (checked: 1..num_timesteps), by default 50 (all timesteps if fewer)."""
    if steps is None:
        return min(DEFAULT_STEPS, diffusion.num_timesteps)
    diffusion.check_steps(steps)
    return steps


def noise_levels(diffusion, timesteps: list[int]) -> tuple[list[float], list[float]]:
    """``(alphas_cumprod, sigmas)`` at ``timesteps`` as float64 host scalars, each ending with the clean level (1, 0)."""
    return diffusion.alphas_cumprod[timesteps].tolist() + [1.0], diffusion.sigmas[timesteps].tolist() + [0.0]


def timestep_batch(x: torch.Tensor, timestep: int) -> torch.Tensor:
    """``t: LongTensor (batch,)`` filled with ``timestep``, on x's device, as ``model_fn`` takes it."""
    return torch.full((x.shape[0],), int(timestep), dtype=torch.long, device=x.device)


def check_clip_x0(clip_x0, where: str, has_cond: bool = True) -> None:
    """Refuse a ``clip_x0`` other than True, 'mixture' or False, and 'mixture' without a cond to bound by."""
    if not (isinstance(clip_x0, bool) or clip_x0 == "mixture"):
        raise UserError(f"{where}: clip_x0 must be True (x0 in [-1, 1]), 'mixture' (x0 in [-1, cond]) or False, "
                        f"got {clip_x0!r}")
    if clip_x0 == "mixture" and not has_cond:
        raise UserError(f"{where}: clip_x0='mixture' bounds x0 by the conditioning mixture, and none was given")


def clipped_x0(x0: torch.Tensor, cond: torch.Tensor | None, clip_x0) -> torch.Tensor:
    """``x0: (batch, ...)`` bounded as ``clip_x0`` says: True [-1, 1]; 'mixture' [-1, cond]; False as is.

    'mixture' keeps the instrumental at or below the mixture at every step, not
    only at the end (``toolkit.signal.instrumental_to_vocals``): the transform
    normalises target and mixture on the mixture's scale with one increasing
    map, so x0 <= cond is instrumental magnitude <= mixture magnitude.
    """
    if clip_x0 is False:
        return x0
    x0 = x0.clamp(-1.0, 1.0)
    return torch.minimum(x0, cond.to(x0.dtype)) if clip_x0 == "mixture" else x0


def x0_predictor(model_fn, diffusion, cond, clip_x0):
    """``(x_t, timestep: int) -> x0 estimate`` in x_t's dtype, from one network evaluation.

    The raw prediction goes to x0 through ``diffusion.to_x0`` (float64
    arithmetic; an x0 prediction is passed through untouched), then is bounded
    by ``clipped_x0`` (``clip_x0`` checked here).
    """
    check_clip_x0(clip_x0, "sampler", has_cond=cond is not None)

    def predict(x_t: torch.Tensor, timestep: int) -> torch.Tensor:
        t = timestep_batch(x_t, timestep)
        return clipped_x0(diffusion.to_x0(x_t, t, model_fn(x_t, t, cond)).to(x_t.dtype), cond, clip_x0)

    return predict


def standard_normal(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) noise shaped like x: (batch, ...), drawn from ``generator``.

    The draw happens on the generator's own device and is then moved to x's, so a
    CPU generator works for CUDA samples too and gives the same numbers on every
    device (a CUDA generator on x's device avoids the copy).
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


# what every sampler is given by the engine (toolkit.contracts.Sampler); the rest of its keywords are options
SAMPLER_ARGUMENTS = ("model_fn", "diffusion", "x_T", "cond", "steps", "generator", "callback")


def sampler_options(name: str) -> list[str] | None:
    """The options (keywords beyond the contract's) that sampler ``name`` takes; None if it takes any (``**kwargs``)."""
    fn = inspect.unwrap(registry.get("samplers", name))  # the function under gin's wrapper
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in SAMPLER_ARGUMENTS
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def check_sampler_options(name: str, options: dict, where: str) -> None:
    """Refuse options that sampler ``name`` does not take, naming the ones it does (``where``: how they were set)."""
    takes = sampler_options(name)
    unknown = [k for k in options if takes is not None and k not in takes]
    if unknown:
        raise UserError(f"{where}: sampler '{name}' takes no option {', '.join(unknown)}; "
                        f"its options: {', '.join(takes) or 'none'} (choose another sampler or drop the option)")
    if "clip_x0" in options:  # separation always conditions on the mixture: 'mixture' has its bound
        check_clip_x0(options["clip_x0"], f"{where}: sampler '{name}'")
