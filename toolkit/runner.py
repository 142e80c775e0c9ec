"""``toolkit run``: parse gin, build the parts, train, evaluate, summarise.

The run directory holds ``config.gin`` (what was parsed) and
``operative_config.gin`` (every value actually used, written before
training starts), ``checkpoints/``, ``tensorboard/``, ``run.json`` (machine,
precision, timings) and, with ``FINAL_EVALUATION``, ``results.json/.md``.
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.panel import Panel

from . import checkpoint, config, parts, registry
from .diffusion import GaussianDiffusion
from .errors import Interrupted, UserError
from .io_utils import atomic_write_text
from .logger import MultiLogger, NullLogger
from .model import Denoiser
from .paths import check_writable_dir
from .precision import machine_info, resolve_device, resolve_precision
from .train import StopSignals, Trainer


def default_out_dir(gin_file: str) -> Path:
    return Path("runs") / f"{Path(gin_file).stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_out_dir(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a directory; choose another --out")
    if resume:
        if not checkpoint.has_checkpoints(out / "checkpoints"):
            raise UserError(f"--resume: no checkpoint in {out / 'checkpoints'}; start without --resume or point --out at a run")
        return
    if checkpoint.has_checkpoints(out / "checkpoints"):
        raise UserError(f"--out {out} already holds checkpoints; pass --resume to continue it, or choose a new --out (nothing was changed)")
    check_writable_dir(out)


def build_experiment():
    from .experiment import Experiment

    try:
        exp = Experiment()
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise config.explain_gin_error(exc) from exc
    check_segment_fits_transform(exp)
    return exp


def check_segment_fits_transform(exp) -> None:
    """Refuse a training segment shorter than one STFT frame before any work (it has no spectrogram to learn)."""
    dataset = parts.bindings_of("datasets", registry.name_of("datasets", exp.dataset))
    seconds, rate = dataset.get("segment_seconds"), dataset.get("sample_rate")
    if not isinstance(seconds, (int, float)) or not isinstance(rate, (int, float)) or seconds <= 0 or rate <= 0:
        return  # whole tracks, or the dataset's own defaults: it checks them itself
    try:
        transform, _ = parts.build("transforms", exp.transform)
    except (TypeError, ValueError) as exc:
        raise config.explain_gin_error(exc) from exc
    n_fft = getattr(transform, "n_fft", None)
    if isinstance(n_fft, int) and seconds * rate < n_fft:
        raise UserError(f"SEGMENT_SECONDS = {seconds:g} ({seconds * rate:.0f} samples at {rate:g} Hz) is shorter than "
                        f"one STFT frame (n_fft = {n_fft}); use SEGMENT_SECONDS >= {math.ceil(n_fft / rate * 1000) / 1000:g}")


class Built:
    """The parts of an experiment, built, with the records a checkpoint keeps."""

    def __init__(self, exp, data_root=None, for_training=True):
        self.exp = exp
        self.records: dict = {}
        ds_kwargs = {"root": str(data_root)} if data_root else {}
        self.train_set, self.records["dataset"] = parts.build(
            "datasets", exp.dataset, subset="train", split="train", random_segments=True, seed=exp.seed, **ds_kwargs) \
            if for_training else (None, None)
        self.sample_rate = int(self.train_set.sample_rate)
        self.channels = int(self.train_set.channels)
        ts = self.train_set
        self.segment_seconds = float(getattr(ts, "segment_seconds", None) or ts.segment / ts.sample_rate)
        self.data_root = data_root
        self.transform, self.records["transform"] = parts.build("transforms", exp.transform)
        backbone, self.records["backbone"] = parts.build("backbones", exp.backbone,
                                                          in_channels=2 * self.channels, out_channels=self.channels)
        self.net = Denoiser(backbone)
        sched_name = registry.name_of("schedules", exp.schedule)
        betas = registry.get("schedules", sched_name)(exp.num_timesteps)
        self.records["schedule"] = {"name": sched_name, "kwargs": {**parts.bindings_of("schedules", sched_name),
                                                                   "num_timesteps": exp.num_timesteps}}
        self.diffusion = GaussianDiffusion(betas, prediction=exp.prediction)
        self.loss_fn, self.records["loss"] = parts.build("losses", exp.loss)
        sampler_name = registry.name_of("samplers", exp.sampler)
        self.records["sampling"] = {
            "sampler": sampler_name, "steps": exp.sampling_steps, "options": parts.plain(exp.sampler_options),
            "post_filter": exp.post_filter, "prediction": exp.prediction, "sample_rate": self.sample_rate,
            "channels": self.channels, "segment_seconds": self.segment_seconds,
        }

    def engine(self, model, device, precision):
        """The separation engine of this experiment's sampling settings around ``model`` (e.g. the EMA weights)."""
        from .separate import Engine, SeparationSettings

        exp = self.exp
        settings = SeparationSettings(sampler=self.records["sampling"]["sampler"], steps=exp.sampling_steps,
                                      sampler_options=dict(exp.sampler_options), post_filter=exp.post_filter,
                                      segment_seconds=self.segment_seconds, seed=exp.seed)
        return Engine(model, self.diffusion, self.transform, sample_rate=self.sample_rate, channels=self.channels,
                      device=device, precision=precision, settings=settings)


def resume_state(out: Path, built: Built, net) -> tuple[Path, dict]:
    """(path, state) of the newest loadable checkpoint, its weights checked against the built model."""
    path, state = checkpoint.latest_valid(out / "checkpoints")
    if state is None:
        raise UserError(f"--resume: no loadable checkpoint in {out / 'checkpoints'}; the files are damaged, start a new run")
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        differ = parts.differences((state.get("meta") or {}).get("parts", {}).get("backbone"), built.records["backbone"])
        why = f"was trained with {', '.join(differ)}" if differ else f"does not fit this model ({str(exc).splitlines()[0][:200]})"
        raise UserError(f"--resume: {path} {why}; resume with the gin settings the run was started with "
                        "(nothing was changed)") from exc
    return path, state


def make_loggers(exp, run_dir: Path, rank: int):
    if rank != 0:
        return NullLogger()
    backends = []
    for name in exp.loggers:
        backends.append(registry.get("loggers", name)(run_dir=run_dir))
    return MultiLogger(backends)


def run(files, bindings=(), plugins=(), out=None, resume=False, console: Console | None = None) -> dict:
    """Parse, build, train and evaluate; SIGINT/SIGTERM at any stage end with a saved state (exit 130/143)."""
    with StopSignals() as stop:
        return _run(stop, files, bindings, plugins, out, resume, console or Console())


def _run(stop, files, bindings, plugins, out, resume, console) -> dict:
    config.parse(files, bindings, plugins)
    exp = build_experiment()
    out = Path(out) if out else default_out_dir(str(files[0]))
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if rank == 0:  # DDP: one rank owns the folder (others would see its first checkpoint)
        prepare_out_dir(out, resume)
    parsed_config = config.config_str()  # written once the run is known to start (a failed --resume changes nothing)
    cfg = exp.train
    device = resolve_device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    precision = resolve_precision(cfg.precision, device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    info = machine_info(device, precision)

    torch.manual_seed(exp.seed)
    data_root = exp.data_root()
    built = Built(exp, data_root)
    net = built.net.to(device)
    valid_set = None
    try:
        valid_set, _ = parts.build("datasets", exp.dataset, subset="train", split="valid", random_segments=False,
                                   seed=exp.seed, **({"root": str(data_root)} if data_root else {}))
    except UserError as exc:  # e.g. a root too small for a valid split: train on, say so
        console.print(f"[yellow]no validation set: {exc}")

    operative = config.operative_config()
    meta = {"operative_config": operative, "parts": built.records, "machine": info, "seed": exp.seed,
            "prediction": exp.prediction}
    n_params = sum(p.numel() for p in net.parameters())
    console.print(Panel.fit(
        f"run dir  [bold]{out}[/]\nmodel    {registry.name_of('backbones', exp.backbone)} ({n_params / 1e6:.2f} M params), "
        f"prediction {exp.prediction}, schedule {built.records['schedule']['name']} x{exp.num_timesteps}\n"
        f"data     {data_root or 'dataset root'} @ {built.sample_rate} Hz, {built.channels} ch, {built.segment_seconds:g} s segments\n"
        f"machine  {info['cpu']} | capability {info['cpu_capability']} | {info['threads']} threads | "
        f"device {info['device']} | precision [bold]{precision}[/]",
        title="Diff-MSST run"))

    resumed = resume_state(out, built, net) if resume else None  # before the loggers write anything
    logger = make_loggers(exp, out, rank)
    from .validation import make_validate_fn

    validate_fn = make_validate_fn(built, valid_set, device, precision, cfg) if valid_set is not None else None
    train_net = net
    if world > 1:
        train_net = torch.nn.parallel.DistributedDataParallel(net)
    trainer = Trainer(net=train_net, diffusion=built.diffusion, transform=built.transform, loss_fn=built.loss_fn,
                      train_set=built.train_set, valid_set=valid_set, cfg=cfg, seed=exp.seed, run_dir=out, meta=meta,
                      logger=logger, device=device, precision=precision, console=console, validate_fn=validate_fn)
    trainer.set_rank(rank, world)
    if resumed:
        path, state = resumed
        trainer.load_state_dict(state)
        console.print(f"resumed from {path} at step {trainer.step}")
    if rank == 0:
        atomic_write_text(out / "config.gin", parsed_config)
        atomic_write_text(out / "operative_config.gin", operative)
    summary = {"run_dir": str(out), "machine": info, "precision": precision, "parameters": n_params}
    try:
        fit = trainer.fit(stop)
    except (Interrupted, KeyboardInterrupt):
        if rank == 0:
            try:
                trainer.save()
            except Exception:
                pass
        logger.close()
        raise
    except BaseException:
        logger.close()
        raise
    summary["training"] = fit
    if exp.final_evaluation and rank == 0:
        from .final_eval import final_evaluation

        summary["evaluation"] = final_evaluation(exp, built, trainer.ema.model, device, precision, out, console, data_root,
                                                 stop=stop)
    logger.close()
    if rank == 0:
        atomic_write_text(out / "run.json", json.dumps(summary, indent=2, default=str))
        print_summary(console, summary)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary


def print_summary(console: Console, summary: dict) -> None:
    tr = summary.get("training", {})
    lines = [f"run dir     {summary['run_dir']}",
             f"training    {tr.get('steps')} steps, {tr.get('minutes', 0):.1f} min this session on "
             f"{summary['machine']['cpu_capability']} ({summary['precision']})",
             f"checkpoint  {Path(summary['run_dir']) / 'checkpoints' / 'last.pt'}"]
    ev = summary.get("evaluation") or {}
    for key, label in (("test", "test set"), ("unseen", "unseen set")):
        if key in ev and ev[key].get("vocal_sdr_gain") is not None:
            lines.append(f"{label:<12}vocal SDR {ev[key]['model']['vocals']['SDR']:+.2f} dB, "
                         f"gain over mixture {ev[key]['vocal_sdr_gain']:+.2f} dB")
    console.print(Panel.fit("\n".join(lines), title="summary"))
