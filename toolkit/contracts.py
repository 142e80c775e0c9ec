"""What each registered kind of part must provide: one ``typing.Protocol`` per kind.

The core calls parts only through these interfaces, so a plugin that
satisfies its Protocol works everywhere (run, separate, evaluate, sweeps).
Protocols are structural: a plugin need not inherit from them.

Shapes: ``audio: (batch, channels, samples)``; ``spec: (batch, channels,
freq, frames)`` in [-1, 1]; ``t: LongTensor (batch,)`` of training
timesteps in ``0..T-1`` (``t = 0`` least noisy).

=============  ===================  ==========================================
kind           registered as        Protocol
=============  ===================  ==========================================
transforms     a class              :class:`Transform`
backbones      an ``nn.Module``     :class:`Backbone`
schedules      a function           :class:`Schedule`
samplers       a function           :class:`Sampler`
losses         a class              :class:`Loss` (called with a :class:`Batch`)
datasets       a class              :class:`Dataset`
loggers        a class              :class:`Logger`
launchers      a class              :class:`Launcher`
=============  ===================  ==========================================
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class Transform(Protocol):
    """Audio <-> normalized magnitude spectrogram, invertible with the mixture's state.

    ``encode(audio) -> (spec, state)``; ``state`` holds what the inverse needs
    (mixture STFT, per-item statistics, length). Targets are encoded with the
    mixture's state (``encode_with``) so that all three share one scale.
    """

    n_fft: int

    def encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """audio (batch, channels, samples) -> (spec (batch, channels, freq, frames), state)."""

    def encode_with(self, audio: torch.Tensor, state: Any) -> torch.Tensor:
        """audio -> spec normalized with another signal's (the mixture's) ``state``."""

    def magnitude(self, spec: torch.Tensor, state: Any) -> torch.Tensor:
        """spec -> linear STFT magnitude (batch, channels, freq, frames)."""

    def normalize(self, magnitude: torch.Tensor, state: Any) -> torch.Tensor:
        """Linear magnitude -> spec (the inverse of :meth:`magnitude`)."""

    def decode(self, spec: torch.Tensor, state: Any) -> torch.Tensor:
        """spec -> audio (batch, channels, samples) with the mixture's phase."""

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """audio -> complex STFT (batch, channels, freq, frames)."""

    def istft(self, complex_spec: torch.Tensor, length: int) -> torch.Tensor:
        """complex STFT -> audio (batch, channels, length)."""


@runtime_checkable
class Backbone(Protocol):
    """``backbone(x, t) -> prediction``, built as ``factory(in_channels=2C, out_channels=C, **options)``.

    x: (batch, 2C, freq, frames) = ``[x_t, mixture]``; the output is
    (batch, C, freq, frames) in the diffusion's parameterization (eps, x0 or v).
    """

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


class Schedule(Protocol):
    """``schedule(num_timesteps, **options) -> betas: (num_timesteps,) float64`` in (0, 1)."""

    def __call__(self, num_timesteps: int, **options) -> torch.Tensor: ...


ModelFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


class Sampler(Protocol):
    """``sampler(model_fn, diffusion, x_T, *, cond, steps, generator, callback, **options) -> x_0``.

    x_T, x_0: (batch, C, freq, frames); x_T is at the diffusion's last
    timestep: noise, or, for a part-way start, a noised guess handed over
    with a truncated diffusion (:mod:`toolkit.sampling_start`). ``model_fn(x_t, t, cond)`` is the network's prediction and
    ``diffusion`` (:class:`toolkit.diffusion.GaussianDiffusion`) holds the
    tables, conversions and timestep spacings; ``steps`` is the number of
    network evaluations; every random draw comes from ``generator``;
    ``callback(step_index, total_steps, x_t)`` runs after each step.
    See docs/samplers.md.
    """

    def __call__(self, model_fn: ModelFn, diffusion, x_T: torch.Tensor, *, cond: torch.Tensor | None = None,
                 steps: int | None = None, generator: torch.Generator | None = None,
                 callback: Callable | None = None, **options) -> torch.Tensor: ...


@dataclass
class Batch:
    """One training batch as the loss sees it; every spec is (batch, channels, freq, frames).

    ``x0``: the normalized instrumental (the generated target); ``cond``: the
    normalized mixture; ``vocals``: the normalized vocals (mixture's state);
    ``t``: LongTensor (batch,); ``noise``: like ``x0``. ``to_magnitude`` maps
    a spec to linear STFT magnitude with this batch's state; ``to_vocals``
    maps an instrumental estimate to the vocal spec it implies (the mixture's
    magnitude minus it, floored at 0, normalized again). ``x0_hat``, when
    given, is an instrumental estimate made by a sampler the trainer ran with
    gradients (``TrainConfig.unroll_steps``): the loss scores it against
    ``x0`` instead of a one-timestep prediction.
    """

    x0: torch.Tensor
    cond: torch.Tensor
    vocals: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    to_magnitude: Callable[[torch.Tensor], torch.Tensor]
    to_vocals: Callable[[torch.Tensor], torch.Tensor]
    x0_hat: torch.Tensor | None = None


class Loss(Protocol):
    """``loss(net, diffusion, batch) -> (total: scalar tensor, parts: {name: scalar tensor})``.

    ``net(x_t, t, cond)`` returns the raw prediction (``diffusion.prediction``)
    in float32. ``parts`` must include ``"total"``; a non-finite total raises
    ``FloatingPointError`` (the trainer skips that step).
    """

    def __call__(self, net: ModelFn, diffusion, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


@runtime_checkable
class Dataset(Protocol):
    """Segments of a MUSDB-shaped root: item -> ``{mixture, instrumental, vocals}: (channels, samples)``.

    Built as ``factory(subset=..., split=..., random_segments=..., seed=..., **options)``
    (``root=`` where the user gives one). ``root`` is the MUSDB-shaped folder the
    items come from (evaluation reads its ``test`` subset); ``mixture =
    instrumental + vocals`` holds exactly for every item; item ``i`` of epoch
    ``e`` depends only on ``(seed, e, i)``.
    """

    root: Path
    sample_rate: int
    channels: int
    segment_seconds: float | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]: ...

    def set_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class Logger(Protocol):
    """A tracker back end, built as ``factory(run_dir=..., **options)``; only rank 0 gets one."""

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def audio(self, tag: str, audio, rate: int, step: int) -> None:
        """audio: (channels, samples)."""

    def image(self, tag: str, figure, step: int) -> None:
        """figure: a matplotlib figure."""

    def text(self, tag: str, text: str, step: int) -> None: ...

    def config(self, name: str, bindings: dict, text: str) -> None:
        """Once before training: the run's name (its experiment), flat gin bindings and operative config text."""

    def hparams(self, bindings: dict, metrics: dict) -> None:
        """Once at the end: the bindings with the run's final metrics, for comparing runs by setting."""

    def close(self) -> None: ...


@runtime_checkable
class Launcher(Protocol):
    """Runs a sweep's trainings and cells; keyword-only ``__init__`` arguments are its ``--launcher-param``s.

    ``launch(spec, state, console)`` runs every cell of ``spec`` (a
    :class:`toolkit.sweep.SweepSpec`) through ``toolkit.sweep.run_training`` /
    ``run_cell``, recording each job in ``state`` (``DIR/state.json``). An
    optional static ``job_alive(job_id, state_data) -> bool | None`` lets
    ``toolkit sweep --status`` tell lost jobs from running ones.
    """

    def launch(self, spec, state, console) -> None: ...
