"""Shared set-up of the benchmark suite: sizes, device, precision, timing and the report hook.

Sizes come from the shipped experiments, so the benchmarks follow the config:
the default run uses ``experiments/quickstart.gin`` (22.05 kHz, n_fft 1024 /
hop 256, 2 s segments, the ``unet_small`` U-Net) and finishes in minutes on
2 CPU cores; ``--full`` uses ``experiments/diffmsst_base.gin`` (44.1 kHz,
n_fft 2048 / hop 512, 3 s segments, the ``unet_base`` U-Net), meant for a GPU.

At the end of the session pytest-benchmark's JSON (written to a ``.tmp`` file
in ``benchmarks/results`` unless ``--benchmark-json`` names another path) is
moved to ``results/latest.json`` and :mod:`report` derives ``ratios.json`` and
``latest.md`` from it; every file is replaced atomically.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch

from toolkit import registry
from toolkit.diffusion import GaussianDiffusion
from toolkit.model import Denoiser, placed
from toolkit.precision import machine_info as toolkit_machine_info, resolve_device, resolve_precision

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RAW_JSON = RESULTS / "pytest-benchmark.json.tmp"  # pytest-benchmark writes non-atomically; we rename it
QUICK_EXPERIMENT = REPO / "experiments" / "quickstart.gin"
FULL_EXPERIMENT = REPO / "experiments" / "diffmsst_base.gin"

_SKIPPED: dict[str, str] = {}  # test name -> skip reason, for the report


def pytest_addoption(parser):
    parser.addoption(
        "--full", action="store_true", default=False,
        help="benchmark the real sizes (experiments/diffmsst_base.gin: 44.1 kHz, n_fft 2048, 3 s, unet_base); "
             "default: the quickstart sizes, minutes on 2 CPU cores",
    )


# -- sizes from the gin files ---------------------------------------------------------------------------------
_BINDING = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(.+?)\s*$")
_INCLUDE = re.compile(r"""^\s*include\s+['"](.+)['"]\s*$""")


def gin_values(path: Path, values: dict | None = None) -> dict:
    """``name -> value`` of the literal bindings and macros in a gin file and its includes (later wins, as in gin).

    Only what ``ast.literal_eval`` reads (after ``%MACRO`` substitution) is kept;
    references (``@X()``) are ignored: the benchmarks need sizes, not parts.
    """
    values = {} if values is None else values
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0]
        include = _INCLUDE.match(line)
        if include:
            gin_values(REPO / include.group(1), values)
            continue
        binding = _BINDING.match(line)
        if not binding:
            continue
        name, text = binding.groups()
        if text.startswith("%"):
            if text[1:] in values:
                values[name] = values[text[1:]]
            continue
        try:
            values[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return values


def _prefixed(values: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class Sizes:
    """Every size a benchmark needs; ``backbone`` is the U-Net's keyword arguments (without channels)."""

    mode: str
    experiment: str
    sample_rate: int
    n_fft: int
    hop_length: int
    segment_seconds: float
    batch_size: int
    backbone: dict
    sampler_backbone: dict  # the untrained model timed by the DDIM vs DDPM benchmark
    sampling_steps: int  # DDIM steps the separation benchmark uses (the experiment's own)
    transform: dict  # the stft_normalizer's keyword arguments
    schedule: str
    prediction: str
    clip_seconds: float = 10.0
    num_timesteps: int = 1000
    matmul_size: int = 2048

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    def spec_shape(self, batch: int | None = None) -> tuple[int, int, int, int]:
        """(batch, 1, freq, frames) of one mono segment's spectrogram."""
        frames = 1 + self.segment_samples // self.hop_length  # center=True
        return (self.batch_size if batch is None else batch, 1, self.n_fft // 2 + 1, frames)


def sizes_for(full: bool) -> Sizes:
    path = FULL_EXPERIMENT if full else QUICK_EXPERIMENT
    values = gin_values(path)
    backbone = _prefixed(values, "backbones.attention_unet.")
    # DDPM-1000 with the quickstart U-Net is slow on a CPU: a 16-channel U-Net of the same shape keeps the
    # sampler comparison (same loop, same segment) short.
    sampler_backbone = dict(backbone) if full else {**backbone, "base_channels": 16}
    return Sizes(
        mode="full" if full else "quick",
        experiment=str(path.relative_to(REPO)),
        sample_rate=int(values["SAMPLE_RATE"]),
        n_fft=int(values["transforms.stft_normalizer.n_fft"]),
        hop_length=int(values["transforms.stft_normalizer.hop_length"]),
        segment_seconds=float(values["SEGMENT_SECONDS"]),
        batch_size=int(values["BATCH_SIZE"]),
        backbone=backbone,
        sampler_backbone=sampler_backbone,
        sampling_steps=int(values.get("SAMPLING_STEPS", 50)),
        transform=_prefixed(values, "transforms.stft_normalizer."),
        schedule=str(values.get("SCHEDULE", "cosine")),
        prediction=str(values.get("PREDICTION", "eps")),
        num_timesteps=int(values.get("Experiment.num_timesteps", 1000)),
        matmul_size=4096 if full else 2048,
    )


# -- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _plugins():
    registry.load_builtin_plugins()


@pytest.fixture(scope="session")
def sizes(pytestconfig) -> Sizes:
    return sizes_for(pytestconfig.getoption("--full"))


@pytest.fixture(scope="session")
def device() -> torch.device:
    return resolve_device("auto")


@pytest.fixture(scope="session")
def precision(device) -> str:
    return resolve_precision("auto", device)


@pytest.fixture(scope="session")
def sync(device):
    """``sync()`` waits for the device, so a timed function includes its kernels."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@pytest.fixture(scope="session")
def make_backbone(device):
    """``make_backbone(kwargs, seed=0) -> AttentionUNet`` on ``device`` (mono: 2 input channels, 1 output)."""

    def make(kwargs: dict, seed: int = 0):
        with torch.random.fork_rng(devices=[]):  # the init draws from the global RNG: seed it, leave it as it was
            torch.manual_seed(seed)
            net = registry.get("backbones", "attention_unet")(in_channels=2, out_channels=1, **kwargs)
        return net.to(device)

    return make


@pytest.fixture(scope="session")
def make_denoiser(make_backbone, device):
    """``make_denoiser(kwargs) -> Denoiser`` for inference, laid out as ``Separator.from_checkpoint`` does."""

    def make(kwargs: dict, seed: int = 0):
        return placed(Denoiser(make_backbone(kwargs, seed)), device).eval()

    return make


@pytest.fixture(scope="session")
def diffusion(sizes) -> GaussianDiffusion:
    """The experiment's schedule and prediction over its number of timesteps."""
    betas = registry.get("schedules", sizes.schedule)(sizes.num_timesteps)
    return GaussianDiffusion(betas, prediction=sizes.prediction)


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED[report.nodeid.rsplit("::", 1)[-1]] = reason.removeprefix("Skipped: ")


# -- the report -----------------------------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own pytest_configure reads the option
def pytest_configure(config):
    config._bench_started = time.time()
    threads = os.environ.get("BENCH_THREADS")
    if threads:  # e.g. 1 on a machine whose cores other jobs share: OpenMP barriers then dominate bf16 steps
        if not threads.isdigit() or int(threads) < 1:
            raise pytest.UsageError(f"BENCH_THREADS={threads!r}: use a positive integer (torch intra-op threads)")
        torch.set_num_threads(int(threads))
    if hasattr(config.option, "benchmark_json") and config.option.benchmark_json is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        RAW_JSON.unlink(missing_ok=True)  # a stale file from an aborted run must not be reported as this one
        config.option.benchmark_json = RAW_JSON


def pytest_benchmark_update_machine_info(config, machine_info):
    device = resolve_device("auto")
    machine_info["toolkit"] = toolkit_machine_info(device, resolve_precision("auto", device))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["toolkit"] = {
        "sizes": asdict(sizes_for(config.getoption("--full"))),
        "skipped": dict(_SKIPPED),
    }


def _report_module():
    spec = importlib.util.spec_from_file_location("benchmarks_report", Path(__file__).with_name("report.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def pytest_sessionfinish(session, exitstatus):
    # pytest-benchmark's sessionfinish is a hook wrapper that saved its JSON before this runs
    raw = getattr(session.config.option, "benchmark_json", None)
    if raw is None or not Path(raw).is_file() or Path(raw).stat().st_mtime < session.config._bench_started:
        return  # no benchmark ran (a file older than the session is not this run's)
    written = _report_module().publish(Path(raw), RESULTS, move=Path(raw) == RAW_JSON)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("benchmark report: " + ", ".join(str(p.relative_to(REPO)) for p in written))
