"""``Experiment``: the one gin root of a run; its arguments are the parts.

Parts are given by registered name (``'attention_unet'``) or gin reference
(``@backbones.attention_unet``); their options are bound on the part itself
(``backbones.attention_unet.base_channels = 32``). Macros shared across gin
files (``SEED``, ``SCHEDULE``, ``SAMPLER``, ``SAMPLING_STEPS``, ``PREDICTION``,
...) are set in ``experiments/*.gin`` and overridden with ``--gin_param``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gin

from .errors import UserError
from .train import TrainConfig


@gin.configurable
class Experiment:
    def __init__(
        self,
        dataset="musdb",
        transform="stft_normalizer",
        backbone="attention_unet",
        loss="counterfactual",
        schedule="linear",
        num_timesteps: int = 1000,
        prediction: str = "eps",
        sampler="ddim",
        sampling_steps: int | None = 50,
        sampler_options: dict | None = None,
        post_filter: str = "none",
        seed: int = 0,
        final_evaluation: bool = False,
        evaluation_tracks: int | None = None,
        synthetic: dict | None = None,
        unseen_synthetic: dict | None = None,
        train: TrainConfig | None = None,
        loggers=("tensorboard",),
    ):
        self.dataset = dataset
        self.transform = transform
        self.backbone = backbone
        self.loss = loss
        self.schedule = schedule
        self.num_timesteps = int(num_timesteps)
        self.prediction = prediction
        self.sampler = sampler
        self.sampling_steps = sampling_steps
        self.sampler_options = dict(sampler_options or {})
        self.post_filter = post_filter
        self.seed = int(seed)
        self.final_evaluation = bool(final_evaluation)
        self.evaluation_tracks = evaluation_tracks
        self.synthetic = synthetic
        self.unseen_synthetic = unseen_synthetic
        self.train = train or TrainConfig()
        self.loggers = tuple(loggers or ())
        self.check()

    def check(self) -> None:
        if self.num_timesteps < 1:
            raise UserError(f"Experiment.num_timesteps = {self.num_timesteps} must be >= 1")
        if self.sampling_steps is not None and not (1 <= int(self.sampling_steps) <= self.num_timesteps):
            raise UserError(
                f"SAMPLING_STEPS = {self.sampling_steps} must be in 1..{self.num_timesteps} (the training timesteps); "
                "lower it or raise Experiment.num_timesteps")
        from .separate import POST_FILTERS
        if self.post_filter not in POST_FILTERS:
            raise UserError(f"POST_FILTER = '{self.post_filter}' is unknown; choose one of {', '.join(POST_FILTERS)}")
        if self.prediction not in ("eps", "x0", "v"):
            raise UserError(f"PREDICTION = '{self.prediction}' is unknown; choose one of eps, x0, v")
        # Resolve names now so that typos fail before any work, with a suggestion.
        from . import registry
        for kind, value in (("datasets", self.dataset), ("transforms", self.transform), ("backbones", self.backbone),
                            ("losses", self.loss), ("schedules", self.schedule), ("samplers", self.sampler)):
            registry.name_of(kind, value)
        for name in self.loggers:
            registry.name_of("loggers", name)
        self.train.check()

    def data_root(self) -> Path | None:
        """The synthetic root (generated into the cache on first use), or None for the dataset's own root."""
        return ensure_synthetic(self.synthetic) if self.synthetic else None

    def unseen_root(self) -> Path | None:
        return ensure_synthetic(self.unseen_synthetic) if self.unseen_synthetic else None

    def test_tracks(self, root) -> list:
        """The musdb test tracks of ``root`` that evaluations score (the first ``evaluation_tracks``, or all)."""
        from .data import open_db

        return list(open_db(root, "test").tracks)[: self.evaluation_tracks or None]


def cache_dir() -> Path:
    import os
    return Path(os.environ.get("TOOLKIT_CACHE", Path.home() / ".cache" / "diffmsst-toolkit"))


def ensure_synthetic(spec: dict) -> Path:
    """Generate (once) a synthetic MUSDB18-HQ tree described by ``spec``; returns its root."""
    from .synth import synthesize

    spec = dict(spec)
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_dir() / f"synthetic-{key}"
    done = root / ".complete"
    if done.exists():
        return root
    import fcntl

    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".synthetic-{key}.lock", "w") as lock:  # parallel jobs: one generates, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            root.mkdir(parents=True, exist_ok=True)
            synthesize(root, **spec)
            done.write_text(json.dumps(spec, sort_keys=True))
    return root
