"""One timed training run for ``scripts/gpu_check.sh``: steps/s, segments/s, peak GPU memory, data-wait share.

    python scripts/gpu_check.py --out RUN GIN_FILE... [--gin_param BINDING]...
    torchrun --standalone --nproc-per-node 2 scripts/gpu_check.py ...      # DDP
    python scripts/gpu_check.py report SONG START END LOG...   # the table of all runs (START, END: epoch seconds)

Trains through ``toolkit.runner.run`` with ``Trainer.train_step`` and
``Trainer.micro_step`` timed (the device synchronised at the start and end of
every step), then prints one line ``gpu_check {json}`` per rank. A step's
period runs from one ``train_step`` to the next; its compute time from the
first ``micro_step`` (the batch is on the device) to the end of the update.
The rest of the period, mostly fetching the next batch, is the data-wait
share. The first ``--warmup`` steps (allocator, cuDNN autotuning) are left out.
Exit 1 when the run ends with a non-finite loss or skipped more than a tenth
of its steps.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit import runner  # noqa: E402
from toolkit.train import Trainer  # noqa: E402


class StepClock:
    """Wall-clock marks of every training step of the (one) trainer in this process."""

    def __init__(self):
        self.starts, self.computes, self.ends = [], [], []
        self.trainer = None

    def sync(self):
        if self.trainer is not None and self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)

    def install(self):
        train_step, micro_step = Trainer.train_step, Trainer.micro_step

        def timed_train_step(trainer, *args, **kwargs):
            self.trainer = trainer
            self.sync()
            self.starts.append(time.perf_counter())
            self.computes.append(None)
            out = train_step(trainer, *args, **kwargs)
            self.sync()
            self.ends.append(time.perf_counter())
            return out

        def timed_micro_step(trainer, *args, **kwargs):
            if self.computes and self.computes[-1] is None:
                self.computes[-1] = time.perf_counter()
            return micro_step(trainer, *args, **kwargs)

        Trainer.train_step, Trainer.micro_step = timed_train_step, timed_micro_step

    def report(self, warmup: int) -> dict:
        """Rates over the steps after ``warmup`` whose next step started (so that their period is known)."""
        ks = [k for k in range(warmup, len(self.starts) - 1) if self.computes[k] is not None]
        period = sum(self.starts[k + 1] - self.starts[k] for k in ks)
        compute = sum(self.ends[k] - self.computes[k] for k in ks)
        tr = self.trainer
        per_step = tr.cfg.batch_size * tr.cfg.grad_accum * tr.world
        peak = torch.cuda.max_memory_allocated(tr.device) / 2**30 if tr.device.type == "cuda" else None
        return {"rank": tr.rank, "world": tr.world, "device": str(tr.device), "precision": tr.precision,
                "steps_timed": len(ks), "steps_per_s": len(ks) / period if period else None,
                "segments_per_s": len(ks) * per_step / period if period else None,
                "data_wait_share": 1.0 - compute / period if period else None,
                "peak_gpu_memory_gib": peak, "steps": tr.step, "skipped_steps": tr.step - len(tr.history),
                "final_loss": tr.history[-1] if tr.history else None,
                "loss_scale": tr.scaler.get_scale() if tr.scaler.is_enabled() else None}


def report(song: str, separation_seconds: float, logs: list[str]) -> int:
    """Print one row per run and rank from the ``gpu_check {json}`` lines of ``logs``, then the separation speed."""
    rows = []
    for path in logs:
        rows += [(Path(path).stem, json.loads(line.split(" ", 1)[1])) for line in Path(path).read_text().splitlines()
                 if line.startswith("gpu_check {")]
    print(f"\n{'run':<8}{'rank':>5}{'prec':>6}{'steps/s':>9}{'segments/s':>12}{'peak GiB':>10}{'data wait':>11}"
          f"{'skipped':>9}{'loss':>9}")
    for name, r in rows:
        peak = "-" if r["peak_gpu_memory_gib"] is None else f"{r['peak_gpu_memory_gib']:.2f}"
        print(f"{name:<8}{r['rank']:>5}{r['precision']:>6}{r['steps_per_s']:>9.2f}{r['segments_per_s']:>12.1f}"
              f"{peak:>10}{r['data_wait_share']:>11.1%}{r['skipped_steps']:>9}{r['final_loss']:>9.4f}")
    seconds = sf.info(song).duration
    print(f"separation: {seconds:.0f} s song in {separation_seconds:.1f} s (start-up included), "
          f"{separation_seconds / seconds:.3f} s per s of audio")
    return 0 if rows else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        return report(argv[1], float(argv[3]) - float(argv[2]), argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="gin files")
    parser.add_argument("--gin_param", action="append", default=[], help="gin binding (repeatable)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the rates (default 10)")
    args = parser.parse_args(argv)
    clock = StepClock()
    clock.install()
    runner.run(args.files, args.gin_param, out=args.out)
    result = clock.report(args.warmup)
    print("gpu_check " + json.dumps(result), flush=True)
    loss = result["final_loss"]
    if loss is None or not math.isfinite(loss):
        print(f"gpu_check: rank {result['rank']} ended without a finite loss ({loss})", file=sys.stderr)
        return 1
    if result["skipped_steps"] > result["steps"] / 10:
        print(f"gpu_check: rank {result['rank']} skipped {result['skipped_steps']} of {result['steps']} steps",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
