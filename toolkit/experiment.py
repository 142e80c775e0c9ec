"""``Experiment``: the one gin root of a run; its arguments are the parts.

Parts are given by registered name (``'attention_unet'``) or gin reference
(``@backbones.attention_unet``); their options are bound on the part itself
(``backbones.attention_unet.base_channels = 32``). Macros shared across gin
files (``SEED``, ``SCHEDULE``, ``SAMPLER``, ``SAMPLING_STEPS``, ``PREDICTION``,
...) are set in ``experiments/*.gin`` and overridden with ``--gin_param``.
``Sweep.grid`` declares a sweep's grid in the same files.
"""
from __future__ import annotations

import gin

from . import registry
from .diffusion import PREDICTIONS, check_sampling_steps
from .errors import UserError
from .sampling import check_sampler_options
from .sampling_start import check_start
from .settings import TrainConfig
from .signal import POST_FILTERS


@gin.configurable
class Experiment:
    """A run's parts and settings (see the module docstring).

    ``evaluation_sets`` adds test sets to the final evaluation beside the
    training root's own ``test`` subset: ``{label: {'dataset': NAME, **options}}``,
    each built as that dataset's ``test`` subset (e.g. the quickstart's
    ``'unseen'`` songs from another generator style). ``evaluation_tracks``
    limits every set to its first N tracks.
    """

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
        sampling_start: str = "noise",
        sampling_start_t: float = 1.0,
        seed: int = 0,
        final_evaluation: bool = False,
        evaluation_tracks: int | None = None,
        evaluation_sets: dict | None = None,
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
        self.sampling_start = sampling_start
        self.sampling_start_t = sampling_start_t
        self.seed = int(seed)
        self.final_evaluation = bool(final_evaluation)
        self.evaluation_tracks = evaluation_tracks
        self.evaluation_sets = {str(k): dict(v) for k, v in (evaluation_sets or {}).items()}
        self.train = train or TrainConfig()
        self.loggers = tuple(loggers or ())
        self.check()

    def check(self) -> None:
        if self.num_timesteps < 1:
            raise UserError(f"Experiment.num_timesteps = {self.num_timesteps} must be >= 1")
        for name, steps in (("SAMPLING_STEPS =", self.sampling_steps), ("VALIDATION_STEPS =", self.train.validation_steps),
                            ("PREVIEW_STEPS =", self.train.preview_steps)):
            if steps is not None:
                check_sampling_steps(steps, self.num_timesteps, name)
        check_start(self.sampling_start, self.sampling_start_t, self.sampling_steps, self.num_timesteps, "SAMPLING_START")
        if self.sampling_start == "given":
            raise UserError("SAMPLING_START = 'given' refines another separator's estimates, which a run does not have; "
                            "use `toolkit evaluate --checkpoint C --refine DIR --start-t T`")
        if self.post_filter not in POST_FILTERS:
            raise UserError(f"POST_FILTER = '{self.post_filter}' is unknown; choose one of {', '.join(POST_FILTERS)}")
        if self.prediction not in PREDICTIONS:
            raise UserError(f"PREDICTION = '{self.prediction}' is unknown; choose one of {', '.join(PREDICTIONS)}")
        # Resolve names now so that typos fail before any work, with a suggestion.
        for kind, value in (("datasets", self.dataset), ("transforms", self.transform), ("backbones", self.backbone),
                            ("losses", self.loss), ("schedules", self.schedule), ("samplers", self.sampler)):
            registry.name_of(kind, value)
        if self.train.validation_sampler is not None:
            registry.name_of("samplers", self.train.validation_sampler)
        if self.train.unroll_steps:
            registry.name_of("samplers", self.train.unroll_sampler)
            check_sampling_steps(self.train.unroll_steps, self.num_timesteps, "TrainConfig.unroll_steps =")
        check_sampler_options(registry.name_of("samplers", self.sampler), self.sampler_options, "Experiment.sampler_options")
        for name in self.loggers:
            registry.name_of("loggers", name)
        for label, spec in self.evaluation_sets.items():
            if not isinstance(spec.get("dataset"), str):
                raise UserError(f"Experiment.evaluation_sets['{label}'] needs a 'dataset' name, e.g. "
                                "{'dataset': 'synthetic', 'style': 'alt'}")
            registry.name_of("datasets", spec["dataset"])
        self.train.check()


@gin.configurable
def Sweep(grid=None, variants=None):  # noqa: N802  (a gin name users write: Sweep.grid = {...})
    """Declares a sweep in a gin file: ``Sweep.grid = {'SCHEDULE': ['linear', 'cosine'], ...}`` (cartesian) and
    ``Sweep.variants = [{}, {'datasets.synthetic.augment_gain': True}, ...]`` (one row each, crossed with the grid)."""
    return grid, variants


CORE_CONFIGURABLES = {"Experiment": Experiment, "TrainConfig": TrainConfig, "Sweep": Sweep}
