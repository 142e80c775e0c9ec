"""Weights & Biases back end, offline unless ``WANDB_MODE`` says otherwise (``RUN/wandb``).

Switched on with ``Experiment.loggers = ['tensorboard', 'wandb']``; the run is
named after its experiment and its ``config`` holds the gin bindings.
"""
from __future__ import annotations

import os
from pathlib import Path

from toolkit import registry
from toolkit.logger import NullLogger


@registry.register("loggers", "wandb")
class WandbLogger(NullLogger):
    """Log to W&B (offline by default: files under RUN/wandb, sync later with `wandb sync`)."""

    def __init__(self, run_dir, project: str = "diffmsst", mode: str | None = None):
        import wandb

        self.wandb = wandb
        mode = mode or os.environ.get("WANDB_MODE", "offline")
        # "finish_previous": a second run in one process (a sweep's cells) closes the first
        self.run = wandb.init(project=project, dir=str(Path(run_dir)), mode=mode, name=Path(run_dir).name,
                              reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"))

    def scalars(self, values, step):
        self.run.log({k: float(v) for k, v in values.items()}, step=step)

    def audio(self, tag, audio, rate, step):
        import numpy as np

        a = np.asarray(audio, dtype=np.float32)
        a = a.mean(0) if a.ndim == 2 else a
        self.run.log({tag: self.wandb.Audio(a, sample_rate=int(rate))}, step=step)

    def image(self, tag, figure, step):
        self.run.log({tag: self.wandb.Image(figure)}, step=step)

    def config(self, name, bindings, text):
        self.run.name = name
        self.run.config.update(dict(bindings), allow_val_change=True)

    def hparams(self, bindings, metrics):
        self.run.summary.update(dict(metrics))

    def close(self):
        self.run.finish()
