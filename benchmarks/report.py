"""Ratios and a Markdown table from one pytest-benchmark JSON.

Every ratio is computed from medians of benchmarks of the same run (the same
JSON), never across runs. ``conftest.py`` calls :func:`publish` at the end of
the session; to rebuild the derived files from a saved JSON::

    .venv/bin/python benchmarks/report.py [benchmarks/results/latest.json]

writes ``ratios.json`` and ``latest.md`` beside it (atomically).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.io_utils import atomic_write_text

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Ratio:
    key: str
    needs: tuple[str, ...]  # benchmark (test function) names
    compute: Callable[[dict], float]  # {name: benchmark dict} -> value
    goal: tuple[str, float] | None  # (">=" | "<=", bound); None: reported, no goal
    meaning: str


def _median(b: dict) -> float:
    return float(b["stats"]["median"])


def _per_second(b: dict, key: str) -> float:
    return float(b["extra_info"][key]) / _median(b)


def _time_ratio(slow: str, fast: str):
    return lambda bs: _median(bs[slow]) / _median(bs[fast])


TRAIN = "test_train_step_default"
RATIOS = (
    Ratio("default_vs_fp32_eager", (TRAIN, "test_train_step_fp32_eager"), _time_ratio("test_train_step_fp32_eager", TRAIN),
          (">=", 2.0), "train-step speed-up of channels_last + auto-precision autocast over fp32 contiguous eager"),
    Ratio("convs_default_vs_fp32_eager", ("test_convs_default", "test_convs_fp32_eager"),
          _time_ratio("test_convs_fp32_eager", "test_convs_default"),
          None, "the same speed-up for the step's convolutions alone: default_vs_fp32_eager if nothing else ran"),
    Ratio("convs_share_of_train_step", (TRAIN, "test_convs_default"), _time_ratio("test_convs_default", TRAIN),
          None, "time of the step's convolutions (forward + backward) / the default train step"),
    Ratio("vs_diffusers_unet2d", (TRAIN, "test_train_step_diffusers_unet2d"),
          _time_ratio("test_train_step_diffusers_unet2d", TRAIN),
          (">=", 1.2), "training throughput of attention_unet / diffusers UNet2DModel (params within 10%)"),
    Ratio("backbone_peak_fraction", ("test_forward_default", "test_matmul_peak"),
          lambda bs: _per_second(bs["test_forward_default"], "flops") / _per_second(bs["test_matmul_peak"], "flops"),
          None, "backbone forward GFLOP/s / large-matmul GFLOP/s, same precision"),
    Ratio("ddim50_vs_ddpm1000", ("test_sample_ddim50", "test_sample_ddpm1000"),
          _time_ratio("test_sample_ddpm1000", "test_sample_ddim50"),
          (">=", 15.0), "DDPM-1000 / DDIM-50 wall time for one segment"),
    Ratio("stft_share_of_train_step", (TRAIN, "test_stft_encode_decode"), _time_ratio("test_stft_encode_decode", TRAIN),
          ("<=", 0.03), "STFT normalizer encode + decode of a training batch / one train step"),
    Ratio("loader_vs_train_consumption", (TRAIN, "test_load_cached_segments"),
          lambda bs: _per_second(bs["test_load_cached_segments"], "segments") / _per_second(bs[TRAIN], "batch"),
          (">=", 5.0), "segments/s the cached loader delivers / segments/s a train step consumes"),
    Ratio("loader_warm_vs_base_train_consumption",
          ("test_train_step_base_model", "test_loader_warm[wav-w2]", "test_loader_warm[stem_mp4-w2]"),
          lambda bs: min(_per_second(bs[f"test_loader_warm[{form}-w2]"], "segments") for form in ("wav", "stem_mp4"))
          / _per_second(bs["test_train_step_base_model"], "batch"),
          (">=", 10.0), "segments/s of the warm disk cache with 2 workers (full-length songs, the slower form) / "
                        "segments/s the base model's train step consumes on this machine"),
    *(Ratio(f"loader_cold_workers_speedup_{form}", (f"test_loader_cold[{form}-w0]", f"test_loader_cold[{form}-w2]"),
            _time_ratio(f"test_loader_cold[{form}-w0]", f"test_loader_cold[{form}-w2]"),
            (">=", 1.7), f"first pass from an empty cache ({form} songs): segments/s with 2 workers / with 0")
      for form in ("wav", "stem_mp4")),
    Ratio("cli_help_vs_python_startup", ("test_cli_help[help]", "test_python_startup"),
          _time_ratio("test_cli_help[help]", "test_python_startup"),
          ("<=", 8.0), "`toolkit --help` in a fresh interpreter / `python -c pass`"),
    Ratio("synth_seconds_per_audio_second", ("test_synth_render[default]",),
          lambda bs: _median(bs["test_synth_render[default]"])
          / float(bs["test_synth_render[default]"]["extra_info"]["clip_seconds"]),
          ("<=", 0.1), "seconds to render one second of a default-style synthetic song (44.1 kHz)"),
    Ratio("synth_varied_vs_default", ("test_synth_render[varied]", "test_synth_render[default]"),
          _time_ratio("test_synth_render[varied]", "test_synth_render[default]"),
          ("<=", 2.0), "render time of a 'varied' song / a default song of the same length"),
    Ratio("separate_rtf", ("test_separate_clip",),
          lambda bs: _median(bs["test_separate_clip"]) / float(bs["test_separate_clip"]["extra_info"]["clip_seconds"]),
          None, "seconds of compute per second of audio, whole-clip separation"),
    Ratio("unrolled2_vs_regular_step", ("test_micro_step_regular", "test_micro_step_unrolled2"),
          _time_ratio("test_micro_step_unrolled2", "test_micro_step_regular"),
          ("<=", 2.0), "training micro-step through a 2-evaluation sampler / a regular one (UNROLL_STEPS = 2 on the "
          "last 20 % of the steps keeps training within 0.8 + 0.2 x this)"),
)


def _status(value: float | None, goal) -> str:
    if value is None:
        return "n/a"
    if goal is None:
        return "report"
    op, bound = goal
    return "pass" if (value >= bound if op == ">=" else value <= bound) else "FAIL"


def compute_ratios(data: dict) -> dict:
    """``{key: {value, goal, status, meaning[, reason]}}`` plus the SDR gap and machine facts."""
    benches = {b["name"]: b for b in data.get("benchmarks", [])}
    skipped = data.get("toolkit", {}).get("skipped", {})
    out: dict = {}
    for r in RATIOS:
        entry = {"value": None, "goal": None if r.goal is None else f"{r.goal[0]} {r.goal[1]:g}", "meaning": r.meaning}
        missing = [n for n in r.needs if n not in benches]
        if missing:
            entry["reason"] = "; ".join(f"{n}: {skipped.get(n, 'not run')}" for n in missing)
        else:
            entry["value"] = float(r.compute(benches))
        entry["status"] = _status(entry["value"], r.goal)
        out[r.key] = entry
    sdr = benches.get("test_sampler_sdr_gap", {}).get("extra_info", {})
    out["ddim50_minus_ddpm1000_sdr_db"] = {
        "value": sdr.get("sdr_gap_db"), "goal": None, "status": "report" if "sdr_gap_db" in sdr else "not measured",
        "meaning": "vocal SDR of DDIM-50 minus DDPM-1000 on synthetic test clips (needs BENCH_CHECKPOINT)",
        **({} if "sdr_gap_db" in sdr else
           {"reason": skipped.get("test_sampler_sdr_gap", "not run").removeprefix("not measured: ")}),
    }
    details = {}
    if "test_train_step_diffusers_unet2d" in benches:
        info = benches["test_train_step_diffusers_unet2d"]["extra_info"]
        details["params"] = {"attention_unet": info.get("attention_unet_params"), "diffusers_unet2d": info.get("params"),
                             "diffusers_block_out_channels": info.get("block_out_channels")}
    for name, key in (("test_forward_default", "backbone_forward_gflops"), ("test_matmul_peak", "matmul_gflops")):
        if name in benches:
            details[key] = _per_second(benches[name], "flops") / 1e9
    return {"ratios": out, "details": details, "machine": data.get("machine_info", {}).get("toolkit", {}),
            "sizes": data.get("toolkit", {}).get("sizes", {}), "datetime": data.get("datetime")}


def _seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _note(info: dict) -> str:
    keep = ("params", "batch", "precision", "layout", "steps", "flops", "segments", "clip_seconds", "n", "dtype")
    parts = []
    for k in keep:
        if k in info:
            v = info[k]
            parts.append(f"{k}={v / 1e9:.1f}G" if k == "flops" else f"{k}={v}")
    return ", ".join(parts)


def render_markdown(data: dict, derived: dict) -> str:
    m, sizes = derived["machine"], derived["sizes"]
    machine = (f"{m.get('cpu', '?')} ({m.get('cpu_capability', '?')}, native bf16: {m.get('native_bf16', '?')}), "
               f"{m.get('threads', '?')} threads / {m.get('cores', '?')} cores, device {m.get('device', '?')}"
               + (f" ({m['gpu']})" if "gpu" in m else "")
               + f", precision {m.get('precision', '?')}, torch {m.get('torch', '?')}")
    lines = [
        "# Benchmarks",
        "",
        f"Run {derived.get('datetime', '?')}, mode **{sizes.get('mode', '?')}** ({sizes.get('experiment', '?')}: "
        f"{sizes.get('sample_rate', '?')} Hz, n_fft {sizes.get('n_fft', '?')} / hop {sizes.get('hop_length', '?')}, "
        f"{sizes.get('segment_seconds', '?')} s segments, batch {sizes.get('batch_size', '?')}).",
        "",
        f"Machine: {machine}.",
        "",
        "## Ratios (medians of this run)",
        "",
        "| ratio | value | goal | status | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, r in derived["ratios"].items():
        value = "—" if r["value"] is None else f"{r['value']:.3g}"
        status = r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        lines.append(f"| `{key}` | {value} | {r['goal'] or '—'} | {status} | {r['meaning']} |")
    d = derived["details"]
    if "params" in d:
        p = d["params"]
        lines += ["", f"Parameters: attention_unet {p['attention_unet']:,}, diffusers UNet2DModel {p['diffusers_unet2d']:,} "
                      f"(block_out_channels {p['diffusers_block_out_channels']})."]
    if "backbone_forward_gflops" in d and "matmul_gflops" in d:
        lines += ["", f"Achieved: backbone forward {d['backbone_forward_gflops']:.1f} GFLOP/s, "
                      f"matmul {d['matmul_gflops']:.1f} GFLOP/s."]
    lines += ["", "## Benchmarks", "", "| benchmark | group | median | IQR | rounds | notes |", "|---|---|---|---|---|---|"]
    for b in data.get("benchmarks", []):
        s = b["stats"]
        lines.append(f"| {b['name']} | {b.get('group') or ''} | {_seconds(s['median'])} | {_seconds(s['iqr'])} | "
                     f"{s['rounds']} | {_note(b.get('extra_info', {}))} |")
    return "\n".join(lines) + "\n"


def publish(raw: Path, out_dir: Path, move: bool = False) -> list[Path]:
    """``raw`` pytest-benchmark JSON -> ``out_dir``/latest.json, ratios.json, latest.md; returns the paths.

    ``move`` renames ``raw`` (a temporary file in ``out_dir``) into place instead of copying it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = out_dir / "latest.json"
    data = json.loads(Path(raw).read_text())
    if move:
        os.replace(raw, latest)
    elif Path(raw).resolve() != latest.resolve():
        atomic_write_text(latest, json.dumps(data, indent=4))
    return [latest, *write_derived(data, out_dir)]


def write_derived(data: dict, out_dir: Path) -> list[Path]:
    derived = compute_ratios(data)
    ratios_path, md_path = out_dir / "ratios.json", out_dir / "latest.md"
    atomic_write_text(ratios_path, json.dumps(derived, indent=2) + "\n")
    atomic_write_text(md_path, render_markdown(data, derived))
    return [ratios_path, md_path]


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else HERE / "results" / "latest.json"
    if not path.is_file():
        print(f"{path}: no benchmark JSON here; run `make bench` first", file=sys.stderr)
        return 2
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        print(f"{path}: not valid JSON ({exc}); rerun `make bench`", file=sys.stderr)
        return 2
    for written in write_derived(data, path.parent):
        print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
