"""Where the reverse process starts: pure noise, the noised mixture, a noised one-step estimate, or a given one.

A reverse process may start part-way, at timestep ``t_s``, from a guess of x0
noised to that level (SDEdit, Meng et al. 2022). For separation two guesses are
at hand: the mixture itself, which is the instrumental plus the vocals (SGMSE+
starts from the noisy input, Richter et al. 2023), and the network's own
one-step estimate from pure noise (StoRM, Lemercier et al. 2023); ``"given"``
refines another separator's instrumental estimate (``toolkit evaluate --refine``).
The sampler then runs on :meth:`GaussianDiffusion.truncated` ``(t_s)``, so every
sampler supports it unchanged.
"""
from __future__ import annotations

import torch

from .errors import UserError
from .sampling import standard_normal, x0_predictor

STARTS = ("noise", "mixture", "estimate", "given")


def start_timestep(start_t: float, num_timesteps: int) -> int:
    """The training timestep ``round(start_t * (num_timesteps - 1))`` of a start fraction in (0, 1]."""
    return int(round(float(start_t) * (num_timesteps - 1)))


def check_start(start: str, start_t: float, steps: int | None, num_timesteps: int, where: str) -> None:
    """Refuse a start the engine cannot run, in one line naming ``where`` it was set (e.g. ``SAMPLING_START``)."""
    if start not in STARTS:
        raise UserError(f"{where} = {start!r} is unknown; choose one of {', '.join(STARTS)}")
    try:
        fraction = float(start_t)
    except (TypeError, ValueError):
        raise UserError(f"{where}: start_t = {start_t!r} must be a number in (0, 1]") from None
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"{where}: start_t = {start_t} must be in (0, 1] (the fraction of the diffusion's timesteps)")
    if start == "noise" and fraction != 1.0:
        raise UserError(f"{where}: start_t = {start_t} needs start 'mixture', 'estimate' or 'given'; pure noise starts at 1.0")
    if steps is None:
        return
    available = start_timestep(fraction, num_timesteps) + 1
    if steps - (start == "estimate") > available:
        raise UserError(f"{where}: {steps} sampling steps from start_t = {start_t} exceed the {available} timesteps "
                        "below it; use fewer steps or a larger start_t")


def starting_point(diffusion, model_fn, cond: torch.Tensor, noise: torch.Tensor, *, start: str, start_t: float,
                   steps: int | None, generator: torch.Generator | None, given: torch.Tensor | None = None):
    """``(diffusion, x_T, steps)`` to hand the sampler.

    ``cond, noise: (batch, C, freq, frames)``, the mixture in the model's space
    and the starting noise. ``"noise"`` returns them unchanged; ``"mixture"``
    noises ``cond`` to timestep ``t_s``; ``"estimate"`` spends one network
    evaluation on x0 from pure noise (clamped to [-1, 1]) and noises that, so
    ``steps`` counts network evaluations in every case (with one step the
    estimate is the result: the same as ``"noise"``); ``"given"`` noises ``given``,
    another system's x0 estimate in the model's space (like ``cond``).
    """
    if (start == "given") != (given is not None):
        raise UserError("start 'given' refines an estimate passed with it (toolkit evaluate --refine DIR), and only then "
                        "is an estimate used; pass both or neither")
    if start == "noise" or (start == "estimate" and steps == 1):
        return diffusion, noise, steps
    last = start_timestep(start_t, diffusion.num_timesteps)
    guess = given if start == "given" else cond
    if start == "estimate":
        guess = x0_predictor(model_fn, diffusion, cond, clip_x0=True)(noise, diffusion.num_timesteps - 1)
        noise = standard_normal(noise, generator)
        steps = None if steps is None else steps - 1
    t = torch.full((guess.shape[0],), last, dtype=torch.long, device=guess.device)
    return diffusion.truncated(last), diffusion.q_sample(guess, t, noise.to(guess.dtype)), steps
