"""Where a backbone train step spends its time: per-op profile, default execution against fp32 eager.

Same model, input and step as ``benchmarks/test_bench_backbone.py`` (sizes read
from the benchmark's gin files, the trainer's fused AdamW), profiled with
``torch.profiler``; prints each mode's median step and its time per step in
convolutions, GroupNorm, attention, SiLU, the optimizer and the rest, then the
top ops. Use it to see what bounds ``default_vs_fp32_eager``:

    .venv/bin/python scripts/profile_train_step.py            # quickstart sizes
    .venv/bin/python scripts/profile_train_step.py --full     # diffmsst_base sizes
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conftest import sizes_for  # noqa: E402
from benchmarks.test_bench_backbone import make_batch, train_step  # noqa: E402
from toolkit import registry  # noqa: E402
from toolkit.precision import resolve_device, resolve_precision  # noqa: E402

GROUPS = {  # name fragments of an op or of any op or autograd node above it -> a line of the summary
    "convolution": "convolution (fwd + bwd)",
    "group_norm": "GroupNorm (fwd + bwd)", "GroupNorm": "GroupNorm (fwd + bwd)",
    "attention": "attention", "bmm": "attention", "softmax": "attention", "matmul": "attention",
    "silu": "SiLU (fwd + bwd)", "Silu": "SiLU (fwd + bwd)",
    "adamw": "optimizer", "Optimizer": "optimizer",
}


def family(event) -> str:
    """The summary line of a profiled op: the first of it and its callers whose name matches ``GROUPS``."""
    node = event
    while node is not None:
        for fragment, line in GROUPS.items():
            if fragment in node.name:
                return line
        node = node.cpu_parent
    return "other"


def summarize(prof, steps: int) -> dict[str, float]:
    """ms per step of each summary line: every op's self CPU time, charged to its family (its callers' included,
    so the GroupNorm backward's own adds and sums count as GroupNorm, an autocast weight cast as convolution)."""
    totals: dict[str, float] = {}
    for event in prof.events():
        line = family(event)
        totals[line] = totals.get(line, 0.0) + event.self_cpu_time_total / 1e3 / steps
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="diffmsst_base sizes instead of the quickstart's")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode (after 2 warm-up steps)")
    parser.add_argument("--top", type=int, default=12, help="ops listed per mode")
    args = parser.parse_args()
    import diffmsst_plugins  # noqa: F401  (registers the backbone)

    sizes = sizes_for(args.full)
    device = resolve_device("auto")
    precision = resolve_precision("auto", device)
    x, t, target = make_batch(sizes, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)  # timings end when the GPU is done
    results = {}
    for mode, prec, layout in (("default", precision, torch.channels_last), ("fp32 eager", "fp32", torch.contiguous_format)):
        torch.manual_seed(0)
        net = registry.get("backbones", "attention_unet")(in_channels=2, out_channels=1, **sizes.backbone)
        net = net.to(device, memory_format=layout).train()
        step = train_step(net, x.contiguous(memory_format=layout), t, target, device, prec, sync)
        for _ in range(2):
            step()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(args.steps):
                step()
        results[mode] = (statistics.median(times) * 1e3, summarize(prof, args.steps))
        print(f"\n== {mode} ({prec}, {'channels_last' if layout is torch.channels_last else 'contiguous'}): "
              f"median step {results[mode][0]:.1f} ms")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    lines = sorted({line for _, parts in results.values() for line in parts}, key=lambda s: (s == "other", s))
    print(f"\nms per step (profiled; profiler overhead included)   {'default':>9} {'fp32 eager':>11} {'ratio':>7}")
    for line in lines:
        ours, theirs = results["default"][1].get(line, 0.0), results["fp32 eager"][1].get(line, 0.0)
        print(f"  {line:<48} {ours:9.1f} {theirs:11.1f} {theirs / ours if ours else float('nan'):7.2f}")
    print(f"  {'median step (unprofiled)':<48} {results['default'][0]:9.1f} {results['fp32 eager'][0]:11.1f} "
          f"{results['fp32 eager'][0] / results['default'][0]:7.2f}")


if __name__ == "__main__":
    main()
