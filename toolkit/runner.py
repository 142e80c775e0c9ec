"""``toolkit run``: parse gin, build the parts, train, evaluate, summarise.

The run directory holds ``config.gin`` (what was parsed) and
``operative_config.gin`` (every value actually used, written before
training starts), ``checkpoints/``, ``tensorboard/``, ``run.json`` (machine,
precision, timings) and, with ``FINAL_EVALUATION``, ``results.json/.md``.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from rich.panel import Panel

from . import checkpoint, config, parts, registry, tracking
from .errors import Interrupted, UserError
from .experiment import Experiment
from .final_eval import final_evaluation
from .io_utils import atomic_write_text
from .logger import MultiLogger, NullLogger
from .model import placed
from .paths import check_writable_dir
from .precision import machine_info, resolve_device, resolve_precision
from .run_data import check_evaluation_roots, prepare_dataset_cache, root_bindings
from .stop import StopSignals
from .train import Trainer
from .validation import make_preview_fn, make_validate_fn


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


def build_experiment() -> Experiment:
    """The ``Experiment`` of the parsed gin config, checked before any data is read or made."""
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
    parts.check_segment(float(seconds), float(rate), getattr(transform, "n_fft", None), "SEGMENT_SECONDS")


def build_datasets(exp, console: Console):
    """``(train_set, valid_set or None)`` of ``exp``'s dataset; a root too small for a valid split trains on, saying so."""
    train_set, _ = parts.build("datasets", exp.dataset, subset="train", split="train", random_segments=True, seed=exp.seed)
    try:
        valid_set, _ = parts.build("datasets", exp.dataset, subset="train", split="valid", random_segments=False,
                                   seed=exp.seed, root=train_set.root)
    except UserError as exc:
        console.print(f"[yellow]no validation set: {exc}")
        valid_set = None
    return train_set, valid_set


def resume_state(out: Path, records: dict, net) -> tuple[Path, dict]:
    """(path, state) of the newest loadable checkpoint, its weights checked against the built model."""
    # to the host: RNG states must be CPU tensors, and load_state_dict copies weights to the model's device
    # (every DDP rank reads its own copy instead of all landing on the GPU that saved it)
    path, state = checkpoint.latest_valid(out / "checkpoints", map_location="cpu")
    if state is None:
        raise UserError(f"--resume: no loadable checkpoint in {out / 'checkpoints'}; the files are damaged, start a new run")
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        differ = parts.differences((state.get("meta") or {}).get("parts", {}).get("backbone"), records["backbone"])
        why = f"was trained with {', '.join(differ)}" if differ else f"does not fit this model ({str(exc).splitlines()[0][:200]})"
        raise UserError(f"--resume: {path} {why}; resume with the gin settings the run was started with "
                        "(nothing was changed)") from exc
    return path, state


def make_loggers(exp, run_dir: Path, rank: int):
    if rank != 0:
        return NullLogger()
    return MultiLogger([registry.get("loggers", name)(run_dir=run_dir) for name in exp.loggers])


def run(files, bindings=(), plugins=(), out=None, resume=False, console: Console | None = None, data=None) -> dict:
    """Parse, build, train and evaluate; SIGINT/SIGTERM at any stage end with a saved state (exit 130/143).

    ``data``: a MUSDB-shaped root every set of the run reads (see :mod:`toolkit.run_data`).
    """
    with StopSignals() as stop:
        return _run(stop, files, bindings, plugins, out, resume, console or Console(), data)


def _run(stop, files, bindings, plugins, out, resume, console, data=None) -> dict:
    config.parse(files, bindings, plugins, finalize=False)  # once: the data root is bound into the parsed config
    data_extra, data_source = root_bindings(data)
    config.finish(data_extra)
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
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    precision = resolve_precision(cfg.precision, device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    info = machine_info(device, precision)

    torch.manual_seed(exp.seed)
    train_set, valid_set = build_datasets(exp, console)
    if exp.final_evaluation:  # every set the run reads is checked before anything trains
        check_evaluation_roots(exp, train_set.root)
    prepare_dataset_cache([train_set, valid_set], cfg.num_workers, console)
    records = parts.experiment_records(exp, train_set)
    built = parts.build_parts(records)
    net = placed(built.net, device, cfg.channels_last)

    operative = config.operative_config()
    meta = {"operative_config": operative, "parts": records, "machine": info, "seed": exp.seed,
            "prediction": exp.prediction}
    n_params = sum(p.numel() for p in net.parameters())
    console.print(Panel.fit(
        f"run dir  [bold]{out}[/]\nmodel    {records['backbone']['name']} ({n_params / 1e6:.2f} M params), "
        f"prediction {exp.prediction}, schedule {records['schedule']['name']} x{exp.num_timesteps}\n"
        f"data     {records['dataset']['name']} at {train_set.root}"
        f"{' (from ' + data_source['source'] + ')' if data_source else ''} @ {built.sample_rate} Hz, {built.channels} ch, "
        f"{built.segment_seconds:g} s segments\n"
        f"machine  {info['cpu']} | capability {info['cpu_capability']} | {info['threads']} threads | "
        f"device {info['device']} | precision [bold]{precision}[/]",
        title="Diff-MSST run"))

    resumed = resume_state(out, records, net) if resume else None  # before the loggers write anything
    logger = make_loggers(exp, out, rank)
    validate_fn = make_validate_fn(built, valid_set, device, precision, cfg) if valid_set is not None else None
    preview_fn = make_preview_fn(built, valid_set, device, precision, cfg) if valid_set is not None else None
    train_net = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    trainer = Trainer(net=train_net, diffusion=built.diffusion, transform=built.transform, loss_fn=built.loss_fn,
                      train_set=train_set, cfg=cfg, seed=exp.seed, run_dir=out, meta=meta,
                      logger=logger, device=device, precision=precision, console=console, validate_fn=validate_fn,
                      preview_fn=preview_fn)
    trainer.set_rank(rank, world)
    if resumed:
        path, state = resumed
        trainer.load_state_dict(state)
        console.print(f"resumed from {path} at step {trainer.step}")
    bindings = tracking.bindings(operative)
    logger.config(Path(files[0]).stem, bindings, operative)
    if rank == 0:
        atomic_write_text(out / "config.gin", parsed_config)
        atomic_write_text(out / "operative_config.gin", operative)
    summary = {"run_dir": str(out), "machine": info, "precision": precision, "parameters": n_params,
               "data": {"dataset": records["dataset"]["name"], "root": str(train_set.root),
                        "source": data_source["source"] if data_source else "experiment"}}
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
        summary["evaluation"] = final_evaluation(exp, built, trainer.ema.model, device, precision, out, console,
                                                 stop=stop)
    metrics = tracking.final_metrics(summary, trainer.best_sdr)
    logger.scalars(metrics, trainer.step)
    logger.hparams(bindings, metrics)
    logger.close()
    if rank == 0:
        atomic_write_text(out / "run.json", json.dumps(summary, indent=2, default=str))
        print_summary(console, summary)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def print_summary(console: Console, summary: dict) -> None:
    tr = summary.get("training", {})
    lines = [f"run dir     {summary['run_dir']}",
             f"training    {tr.get('steps')} steps, {tr.get('minutes', 0):.1f} min this session on "
             f"{summary['machine']['cpu_capability']} ({summary['precision']})",
             f"checkpoint  {Path(summary['run_dir']) / 'checkpoints' / 'last.pt'}"]
    for key, res in (summary.get("evaluation") or {}).items():
        if res.get("vocal_sdr_gain") is not None:
            lines.append(f"{key + ' set':<12}vocal cSDR {res['model']['vocals']['SDR']:+.2f} dB, "
                         f"gain over mixture {res['vocal_sdr_gain']:+.2f} dB"
                         + (f" (uSDR gain {res['vocal_usdr_gain']:+.2f} dB)" if res.get("vocal_usdr_gain") is not None else ""))
    console.print(Panel.fit("\n".join(lines), title="summary"))
