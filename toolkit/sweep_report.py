"""Sweep results: ``results.csv``, ``results.md`` and PNG plots from finished cells."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .errors import UserError
from .io_utils import atomic_path, atomic_write_text

COLUMNS = [("vocals", "SDR"), ("vocals", "SIR"), ("vocals", "SAR"),
           ("accompaniment", "SDR"), ("accompaniment", "SIR"), ("accompaniment", "SAR")]


def collect(out: Path) -> list[dict]:
    cells = []
    for path in sorted((Path(out) / "cells").glob("*/results.json")):
        cells.append(json.loads(path.read_text()))
    return cells


def _value(text):
    t = str(text).strip("'\"")
    try:
        return float(t) if "." in t or "e" in t.lower() else int(t)
    except ValueError:
        return t


def rows(cells: list[dict], base: dict | None) -> tuple[list[str], list[list]]:
    names = []
    for c in cells:
        for k in c["bindings"]:
            if k not in names:
                names.append(k)
    header = names + [f"{t}_{m}" for t, m in COLUMNS] + ["vocal_SDR_gain", "sep_s_per_s", "train_min", "tracks"]
    table = []
    base_sdr = (base or {}).get("vocals", {}).get("SDR")
    for c in cells:
        s = c["scores"]
        row = [_value(c["bindings"].get(n, "")) for n in names]
        row += [round(s.get(t, {}).get(m, float("nan")), 3) for t, m in COLUMNS]
        voc = s.get("vocals", {}).get("SDR")
        row.append(round(voc - base_sdr, 3) if voc is not None and base_sdr is not None else "")
        row.append(round(c["separation_s_per_s"], 4) if c.get("separation_s_per_s") is not None else "")
        row.append(round(c["training_minutes"], 2) if c.get("training_minutes") is not None else "")
        row.append(c.get("tracks"))
        table.append(row)
    return header, table


def write_report(out: Path, base: dict | None = None, title: str = "Sweep") -> dict:
    out = Path(out)
    cells = collect(out)
    if not cells:
        raise UserError(f"{out}: no finished cells (cells/*/results.json); run the sweep first")
    if base is None and (out / "baseline.json").exists():
        base = json.loads((out / "baseline.json").read_text())
    header, table = rows(cells, base)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(table)
    atomic_write_text(out / "results.csv", buf.getvalue())
    md = [f"# {title}", "", "Median over frames, then over tracks (museval, dB); separation time in seconds per second of audio.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(v) for v in r) + " |" for r in table]
    if base:
        md += ["", f"Mixture-as-estimate baseline: vocals SDR {base['vocals']['SDR']:+.2f} dB, "
                   f"accompaniment SDR {base['accompaniment']['SDR']:+.2f} dB."]
    plots = plot(out, header, table)
    md += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    atomic_write_text(out / "results.md", "\n".join(md) + "\n")
    return {"cells": len(cells), "plots": [str(p) for p in plots]}


def _series_key(header, row, x_name):
    skip = {x_name} | {h for h in header if "_" in h and h.split("_")[0] in ("vocals", "accompaniment", "vocal", "sep", "train", "tracks")}
    return ", ".join(f"{h}={row[i]}" for i, h in enumerate(header) if h not in skip and h != "tracks") or "all"


def plot(out: Path, header: list[str], table: list[list]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    col = {h: i for i, h in enumerate(header)}
    sdr = col["vocals_SDR"]
    steps_name = next((h for h in header if h.endswith("SAMPLING_STEPS") or h.endswith("sampling_steps")), None)
    if steps_name:
        fig, ax = plt.subplots(figsize=(6, 4))
        series: dict[str, list] = {}
        for r in table:
            series.setdefault(_series_key(header, r, steps_name), []).append((r[col[steps_name]], r[sdr]))
        for label, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log")
        ticks = sorted({p[0] for pts in series.values() for p in pts if isinstance(p[0], (int, float))})
        if ticks:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("vocal SDR (dB)")
        ax.set_title("Vocal SDR vs sampling steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        made.append(_save(fig, out / "sdr_vs_steps.png"))
    sep = col["sep_s_per_s"]
    pts = [(r[sep], r[sdr], r) for r in table if r[sep] != ""]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for x, y, r in pts:
            ax.scatter([x], [y])
            ax.annotate(_series_key(header, r, ""), (x, y), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("separation time (s per s of audio)")
        ax.set_ylabel("vocal SDR (dB)")
        ax.set_title("Quality / speed frontier")
        ax.grid(alpha=0.3)
        made.append(_save(fig, out / "sdr_vs_time.png"))
    return made


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
