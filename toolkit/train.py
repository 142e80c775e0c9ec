"""The training loop: AdamW, cosine LR with warm-up, clipping, AMP, EMA, exact resume.

Determinism: the model initialisation, every (t, noise) draw and every data
segment come from the config's seed; the noise generator's state, the other
RNG states, optimizer, scheduler and EMA live in the checkpoint, and data
item ``g`` (global index ``step * batch + j``) depends only on ``(seed, g)``.
A run killed at any point and resumed therefore reproduces the uninterrupted
run step by step.
"""
from __future__ import annotations

import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__, checkpoint, registry
from .contracts import Batch
from .ema import EMA
from .errors import UserError
from .loader import SlotBatches, batch_loader
from .model import raw_fn
from .settings import TrainConfig
from .signal import phase_sensitive_magnitude
from .stop import StopSignals

def target_spec(transform, audio: torch.Tensor, state, target: str) -> torch.Tensor:
    """What the network learns for a source ``audio: (batch, channels, samples)``, on the mixture ``state``'s scale.

    'magnitude': its magnitude |S|; 'psa': the phase-sensitive |S| cos(angle S - angle X)
    (``toolkit.signal.phase_sensitive_magnitude``), the magnitude nearest S given the
    mixture phase that separation reconstructs with. The instrumental's and vocals'
    psa targets add up to |X|, so vocals = mixture - instrumental holds for the targets.
    """
    if target == "magnitude":
        return transform.encode_with(audio, state)
    return transform.normalize(phase_sensitive_magnitude(transform.stft(audio), state.stft), state)


def cosine_with_warmup(warmup: int, total: int, min_ratio: float):
    """LR multiplier: linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def rng_state(noise_gen: torch.Generator) -> dict:
    """All RNG states in plain types/tensors (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "noise": noise_gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, noise_gen: torch.Generator) -> None:
    random.setstate(_to_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    noise_gen.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x):
    return [_to_plain(v) for v in x] if isinstance(x, tuple) else x


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60.0


def decay_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decoupled weight decay on weights, none on norms, biases and embeddings.

    Decoupled decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay
    Regularization") shrinks weights towards zero independently of the
    gradient scale; scales, shifts and lookup tables are not weights in that
    sense, so they are left out as in GPT-2/minGPT and timm.
    """
    # norm scales and biases are the 1-d parameters; embedding tables are 2-d and named by their module
    exempt = {id(p) for sub in module.modules() if isinstance(sub, torch.nn.Embedding) for p in sub.parameters()}
    decay, keep = [], []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (keep if p.ndim < 2 or id(p) in exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": keep, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def adamw(params, device: torch.device, **kwargs) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel on CPU and CUDA (one kernel over all parameters), the per-tensor loop elsewhere."""
    return torch.optim.AdamW(params, fused=torch.device(device).type in ("cpu", "cuda"), **kwargs)


class Trainer:
    """Runs the optimisation of one experiment into ``run_dir``; resumable bit for bit."""

    def __init__(self, *, net, diffusion, transform, loss_fn, train_set, cfg: TrainConfig, seed: int,
                 run_dir, meta: dict, logger, device, precision: str, console, validate_fn=None, preview_fn=None):
        self.net, self.diffusion, self.transform, self.loss_fn = net, diffusion, transform, loss_fn
        self.train_set = train_set
        self.cfg, self.seed, self.meta = cfg, seed, meta
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.logger, self.device, self.precision, self.console = logger, device, precision, console
        self.validate_fn, self.preview_fn = validate_fn, preview_fn
        self.rank, self.world = 0, 1
        # DDP wraps the network for forward/backward only: EMA and checkpoints hold the bare module
        # (no "module." prefix, so a multi-GPU checkpoint loads like any other)
        self.module = getattr(self.net, "module", self.net)
        self.ema = EMA(self.module, cfg.ema_decay)
        self.opt = adamw(decay_groups(self.module, cfg.weight_decay), device, lr=cfg.lr, betas=tuple(cfg.betas))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, cosine_with_warmup(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))
        # fp16 only: a loss scale that backs off on overflow (bf16 has fp32's range and needs none)
        self.scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
        self.noise_gen = torch.Generator().manual_seed(self._noise_seed())
        self.step = 0
        self.best_sdr = -float("inf")
        self.nonfinite_run = 0
        self.history: list[float] = []
        self._batches = None  # the open DataLoader iterator of fit()
        self.train_fn = self.net
        if cfg.compile:
            self.train_fn = torch.compile(self.net)

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.module.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_sdr": self.best_sdr,
            "rng": rng_state(self.noise_gen),
            "config": self.meta["operative_config"],
            "version": __version__,
            "meta": checkpoint.plain({k: v for k, v in self.meta.items() if k != "operative_config"}),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.module.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
        except RuntimeError as exc:
            raise UserError(f"checkpoint does not fit this configuration ({str(exc).splitlines()[0][:200]}); "
                            "resume with the gin settings the run was started with") from exc
        try:
            self.opt.load_state_dict(state["optimizer"])
        except ValueError as exc:  # e.g. one parameter group (no weight-decay split) in an older checkpoint
            raise UserError(f"checkpoint's optimizer state does not fit this configuration ({str(exc).splitlines()[0][:160]}); "
                            "resume with the gin settings and toolkit version the run was started with") from exc
        self.sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_sdr = float(state.get("best_sdr", -float("inf")))
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"], self.noise_gen)
        if self.rank:  # the checkpoint holds rank 0's noise stream: other ranks derive their own
            self.noise_gen.manual_seed(self._noise_seed() + self.step)

    def _noise_seed(self) -> int:
        """Seed of this rank's (t, noise) stream; rank 0 is the single-process stream."""
        return self.seed * 7 + 1 + 100_003 * self.rank

    def set_rank(self, rank: int, world: int) -> None:
        """Join a DDP group: each rank its own slice of the data and its own noise stream (rank 0 keeps the single-process ones)."""
        self.rank, self.world = rank, world
        if rank:
            self.noise_gen.manual_seed(self._noise_seed())

    def save(self) -> None:
        if self.rank != 0:  # DDP: one writer per run directory (the others would delete its temp files)
            return
        checkpoint.save(self.state_dict(), self.ckpt_dir, self.step, keep_last=self.cfg.keep_last)

    # -- one step --------------------------------------------------------------------------------------
    def batch(self, step: int, micro: int) -> dict:
        """``{mixture, instrumental, vocals}: (batch, channels, samples)`` of (step, micro), read by the DataLoader."""
        sampler = SlotBatches(step, self.cfg.steps, self.cfg.batch_size, self.cfg.grad_accum, self.world, self.rank)
        g0 = sampler.first_index(step, micro)
        for _ in range(2):
            if self._batches is None:
                self._batches = iter(batch_loader(self.train_set, sampler, self.cfg.num_workers, self.device))
            for got in self._batches:
                first = int(got["index"][0])
                if first == g0:
                    return {k: got[k].to(self.device, non_blocking=True) for k in ("mixture", "instrumental", "vocals")}
                if first > g0:
                    break
                # first < g0: a micro-batch left unused by a step skipped as non-finite
            self.close_loader()  # ended or asked out of order: reopen at this step
        raise RuntimeError(f"the data loader has no batch for step {step}, micro-batch {micro}")

    def close_loader(self) -> None:
        """Stop the loader's worker processes (a later :meth:`batch` opens a new one)."""
        self._batches = None

    def sample_timesteps(self, batch: int) -> torch.Tensor:
        """t: LongTensor (batch,) on the host, uniform over [0, T), with a share
        ``last_timestep_fraction`` of the items moved to T - 1.

        T - 1 (pure noise) is where every sampler starts and the only timestep a
        one-step sampler visits, yet uniform sampling trains it 1/T of the time.
        Like importance-sampled timesteps (Nichol & Dhariwal 2021, sec. 3.3) this
        changes which timesteps the loss weights, not what each one learns.
        """
        num = self.diffusion.num_timesteps
        t = torch.randint(0, num, (batch,), generator=self.noise_gen)
        fraction = float(self.cfg.last_timestep_fraction)
        if fraction > 0.0:  # no extra draw when off: runs without it keep their noise stream
            t = torch.where(torch.rand(batch, generator=self.noise_gen) < fraction, num - 1, t)
        return t

    def micro_step(self, batch: dict):
        """The loss of one micro-batch of audio ``{mixture, instrumental, vocals}: (batch, channels, samples)``."""
        tr = self.transform
        with torch.no_grad():
            cond, state = tr.encode(batch["mixture"])
            x0 = target_spec(tr, batch["instrumental"], state, self.cfg.target)
            vocals = target_spec(tr, batch["vocals"], state, self.cfg.target)
        t = self.sample_timesteps(x0.shape[0]).to(self.device)
        noise = torch.randn(x0.shape, generator=self.noise_gen).to(self.device)
        model_fn = raw_fn(self.train_fn, self.device, self.precision)
        x0_hat = None
        if self.unrolling():  # the sampler separation runs, from the same noise, with gradients through every step
            sampler = registry.get("samplers", self.cfg.unroll_sampler)
            x0_hat = sampler(model_fn, self.diffusion, noise, cond=cond, steps=self.cfg.unroll_steps,
                             generator=self.noise_gen)

        def to_magnitude(spec):
            return tr.magnitude(spec, state)

        def to_vocals(x0_hat):
            inst_mag = to_magnitude(x0_hat.clamp(-1, 1))
            return tr.normalize(torch.clamp(state.mag - inst_mag, min=0.0), state)

        data = Batch(x0=x0, cond=cond, vocals=vocals, t=t, noise=noise, to_magnitude=to_magnitude, to_vocals=to_vocals,
                     x0_hat=x0_hat)
        return self.loss_fn(model_fn, self.diffusion, data)

    def unrolling(self) -> bool:
        """Whether this step fine-tunes through the sampler: the last ``unroll_fraction`` of the steps, with ``unroll_steps``.

        Unrolled fine-tuning (Lay et al. 2023, "Single and Few-step Diffusion for
        Generative Speech Enhancement", arXiv:2309.09677): the loss scores what an
        ``unroll_steps``-evaluation sampler returns from noise, so the network learns
        to make those evaluations add up, instead of each one denoising a true x_t.
        """
        cfg = self.cfg
        return cfg.unroll_steps > 0 and self.step >= cfg.steps - round(cfg.unroll_fraction * cfg.steps)

    def train_step(self) -> dict | None:
        cfg = self.cfg
        self.opt.zero_grad(set_to_none=True)
        parts_sum: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = self.batch(self.step, micro)
            try:
                loss, parts = self.micro_step(batch)
            except FloatingPointError as exc:
                return self._nonfinite(str(exc))
            self.scaler.scale(loss / cfg.grad_accum).backward()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        self.scaler.unscale_(self.opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if not torch.isfinite(grad_norm):
            self.opt.zero_grad(set_to_none=True)
            return self._gradient_overflow(float(grad_norm))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.ema.update(self.module)
        self.nonfinite_run = 0
        self.step += 1
        parts_sum["grad_norm"] = float(grad_norm)
        parts_sum["lr"] = self.opt.param_groups[0]["lr"]
        self.history.append(parts_sum.get("total", float("nan")))
        return parts_sum

    def _gradient_overflow(self, grad_norm: float):
        """Skip a step whose gradients are not finite; under fp16 through the GradScaler, whose scale backs off.

        ``unscale_`` has recorded the overflow, so ``update()`` halves the scale
        and readies the scaler for the next step (returning before it would make
        the next ``unscale_`` fail). An overflow at a scale above 1 is the loss
        scale's doing, not divergence, and is not counted against ``max_nonfinite``.
        """
        why = f"non-finite gradient norm ({grad_norm})"
        if not self.scaler.is_enabled():
            return self._nonfinite(why)
        scale = self.scaler.get_scale()
        self.scaler.update()
        if scale <= 1.0:
            return self._nonfinite(why)
        self.console.print(f"[yellow]step {self.step}: fp16 gradient overflow at loss scale {scale:g}; "
                           f"step skipped, scale now {self.scaler.get_scale():g}")
        return self._skip()

    def _nonfinite(self, why: str):
        self.nonfinite_run += 1
        self.console.print(f"[yellow]step {self.step}: {why}; step skipped ({self.nonfinite_run}/{self.cfg.max_nonfinite})")
        if self.nonfinite_run > self.cfg.max_nonfinite:
            last = self.ckpt_dir / "last.pt"
            kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
            raise UserError(f"training diverged: non-finite loss at step {self.step} for {self.nonfinite_run} steps in a row "
                            f"({why}); lower TrainConfig.lr or enable clipping; {kept}")
        return self._skip()

    def _skip(self):
        # keep the step count, LR and noise stream in step with an uninterrupted run: this step's draws are consumed
        self.step += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended for a skipped step
            self.sched.step()
        return None

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self, stop: StopSignals) -> dict:
        cfg = self.cfg
        timer = Timer()
        start_step = self.step
        seg = 0
        last_parts: dict = {}
        budget_hit = False
        columns = [TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=self.step, info="")
            t_last = time.perf_counter()
            while self.step < cfg.steps:
                stop.check(f"stopped at step {self.step}; checkpoint saved, continue with --resume")
                parts = self.train_step()
                seg += cfg.batch_size * cfg.grad_accum
                if parts is not None:
                    last_parts = parts
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        now = time.perf_counter()
                        rate = seg / max(1e-9, now - t_last)
                        t_last, seg = now, 0
                        self.logger.scalars({**{f"loss/{k}": v for k, v in parts.items() if k not in ("lr", "grad_norm")},
                                             "train/lr": parts["lr"], "train/grad_norm": parts["grad_norm"],
                                             "train/segments_per_s": rate}, self.step)
                    bar.update(task, completed=self.step,
                               info=f"loss {parts.get('total', float('nan')):.4f} lr {parts['lr']:.2e}")
                    if not self.console.is_terminal and self.step % (cfg.log_every * 10) == 0:  # logs, CI: no live bar
                        self.console.print(f"step {self.step}/{cfg.steps} loss {parts.get('total', float('nan')):.4f} "
                                           f"lr {parts['lr']:.2e} {timer.minutes():.1f} min")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
                if cfg.validate_every and self.validate_fn and self.step % cfg.validate_every == 0:
                    self.validate()
                if cfg.preview_every and self.preview_fn and self.rank == 0 and self.step % cfg.preview_every == 0:
                    self.preview_fn(self.ema.model, self.step, self.logger)
                if cfg.max_minutes and timer.minutes() >= cfg.max_minutes and self.step < cfg.steps:
                    budget_hit = True
                    self.console.print(f"[yellow]time budget of {cfg.max_minutes} min reached at step {self.step}/{cfg.steps}: "
                                       "stopped early (TrainConfig.max_minutes / --max-minutes); the result depends on this machine's speed")
                    break
        self.close_loader()
        self.save()
        return {"steps": self.step, "steps_this_session": self.step - start_step, "minutes": timer.minutes(),
                "budget_hit": budget_hit, "last": last_parts}

    def validate(self) -> float:
        """Score the EMA model on the validation segments; a better median vocal SDR becomes ``best.pt``."""
        scores = self.validate_fn(self.ema.model, self.step, self.logger)
        sdr = float(scores["SDR"])
        self.logger.scalars({f"valid/vocals_{k}": float(scores[k]) for k in ("SDR", "SIR", "SAR")}, self.step)
        better = sdr > self.best_sdr
        if better:
            self.best_sdr = sdr
            self.save()
            if self.rank == 0:
                checkpoint.save_copy(self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt")
        if self.rank == 0:
            self.console.print(f"step {self.step}: validation vocal SDR {sdr:.2f} dB (SIR {scores['SIR']:.2f}, "
                               f"SAR {scores['SAR']:.2f}; median of {scores['segments']} segments)"
                               + (", new best" if better else f", best {self.best_sdr:.2f}"))
        return sdr
