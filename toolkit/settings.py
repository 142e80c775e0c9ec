"""The settings of a run as plain, typed data: training (``TrainConfig``) and separation (``SeparationSettings``).

The ground floor of the house: nothing here imports training, separation or
gin's parsing; ``TrainConfig`` is gin-configurable (``TrainConfig.lr = 2e-4``)
and checks its own values.
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field

import gin

from .errors import UserError

TARGETS = ("magnitude", "psa")


@gin.configurable
@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of a run (bind with ``TrainConfig.x = ...``)."""

    batch_size: int = 8
    steps: int = 1000
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    precision: str = "auto"
    device: str = "auto"
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_last: int = 3
    validate_every: int = 0
    validation_segments_per_song: int = 4
    validation_sampler: str | None = None
    validation_steps: int | None = None
    preview_every: int = 0
    preview_steps: int = 1
    max_nonfinite: int = 5
    channels_last: bool = True
    compile: bool = False
    num_workers: int = 0
    max_minutes: float | None = None
    log_every: int = 10
    threads: int | None = None
    last_timestep_fraction: float = 0.0
    target: str = "magnitude"  # TARGETS: what x0 and the vocal term learn
    unroll_steps: int = 0  # > 0: the last unroll_fraction of the steps train through this many sampler steps
    unroll_fraction: float = 0.2
    unroll_sampler: str = "ddim"

    def check(self) -> None:
        # A gin typo like BATCH_SIZE='x' or 2.5 must fail here, by name, not deep inside the loop.
        for name in ("batch_size", "steps", "grad_accum", "keep_last", "log_every", "checkpoint_every",
                     "validate_every", "warmup_steps", "max_nonfinite", "num_workers", "validation_segments_per_song",
                     "preview_every", "preview_steps", "unroll_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise UserError(f"TrainConfig.{name} = {value!r} must be a whole number; "
                                "fix the value in the gin file or --gin_param (e.g. BATCH_SIZE=8, TRAIN_STEPS=1000)")
        for name in ("lr", "weight_decay", "grad_clip", "min_lr_ratio", "ema_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise UserError(f"TrainConfig.{name} = {value!r} must be a number; "
                                "fix the value in the gin file or --gin_param (e.g. TrainConfig.lr=2e-4)")
        for name in ("batch_size", "steps", "grad_accum", "keep_last", "log_every", "validation_segments_per_song",
                     "preview_steps"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"TrainConfig.{name} = {getattr(self, name)} must be >= 1")
        for name in ("checkpoint_every", "validate_every", "warmup_steps", "max_nonfinite", "num_workers", "preview_every",
                     "unroll_steps"):
            if int(getattr(self, name)) < 0:
                raise UserError(f"TrainConfig.{name} = {getattr(self, name)} must be >= 0")
        if not self.lr > 0:
            raise UserError(f"TrainConfig.lr = {self.lr} must be > 0")
        value = self.last_timestep_fraction
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
            raise UserError(f"TrainConfig.last_timestep_fraction = {value!r} must be a number in [0, 1] "
                            "(the share of each batch trained at the last timestep; 0 = uniform timesteps)")
        value = self.unroll_fraction
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
            raise UserError(f"TrainConfig.unroll_fraction = {value!r} must be a number in (0, 1] "
                            "(the last share of the training steps that backpropagates through the sampler)")
        if self.target not in TARGETS:
            raise UserError(f"TrainConfig.target = {self.target!r} is not one of {', '.join(map(repr, TARGETS))} "
                            "(the instrumental's magnitude, or its phase-sensitive magnitude); set TARGET in the gin file")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(d["betas"])
        return d


@dataclass
class SeparationSettings:
    sampler: str = "ddim"
    steps: int | None = 50
    sampler_options: dict = field(default_factory=dict)
    post_filter: str = "none"
    start: str = "noise"  # toolkit.sampling_start.STARTS
    start_t: float = 1.0
    segment_seconds: float = 3.0
    overlap: float = 0.25
    batch_size: int = 4
    seed: int = 0
    samples: int = 1  # K: the instrumental magnitude is the mean of K samples (the posterior mean as K grows)
