"""Sweep results: ``results.csv``, ``results.md`` and PNG plots from finished cells."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from rich.table import Table

from .errors import UserError
from .io_utils import atomic_path, atomic_write_text

# museval's names: SDR is the cSDR (median over frames, then tracks); uSDR the mean over tracks of whole-track SDR
COLUMNS = [("vocals", "SDR"), ("vocals", "SIR"), ("vocals", "SAR"),
           ("accompaniment", "SDR"), ("accompaniment", "SIR"), ("accompaniment", "SAR"), ("vocals", "uSDR")]
AGGREGATION = ("vocals_SDR, accompaniment_SDR and the gain are **cSDR** (museval: median over 1 s frames, then over "
               "tracks), as SIR and SAR; vocals_uSDR is the mean over tracks of the whole-track SDR")


def _natural(name: str) -> list:
    """Sort key that orders ``STEPS=2`` before ``STEPS=16`` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def collect(out: Path) -> list[dict]:
    """Every finished cell's results, in natural order of the cell names."""
    paths = sorted((Path(out) / "cells").glob("*/results.json"), key=lambda p: _natural(p.parent.name))
    return [json.loads(path.read_text()) for path in paths]


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
        row += [s.get(t, {}).get(m, "" if m == "uSDR" else float("nan")) for t, m in COLUMNS]  # no uSDR: scored before it was kept
        voc = s.get("vocals", {}).get("SDR")
        row.append(voc - base_sdr if voc is not None and base_sdr is not None else "")
        row.append(c["separation_s_per_s"] if c.get("separation_s_per_s") is not None else "")
        row.append(c["training_minutes"] if c.get("training_minutes") is not None else "")
        row.append(c.get("tracks"))
        table.append(row)
    return header, table


def _csv_value(name: str, value):
    """Full values are kept for formatting; the CSV rounds once, per column."""
    if isinstance(value, float):
        return round(value, {"sep_s_per_s": 4, "train_min": 2}.get(name, 3))
    return value


# Markdown and terminal formats: fixed decimals per kind of number, so columns line up.
_DECIMALS = {"sep_s_per_s": 4, "train_min": 1, "tracks": 0}


def fmt(name: str, value) -> str:
    """``value`` of column ``name`` as fixed-decimal text (dB: 2 decimals, signed); text passes through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value == "":
        return str(value)
    if name in _DECIMALS:
        return f"{value:.{_DECIMALS[name]}f}"
    if name.split("_")[-1] in ("SDR", "SIR", "SAR", "gain") or name.endswith("SDR_gain"):
        return f"{value:+.2f}"
    return str(value)


def _numeric(header: list[str], table: list[list]) -> list[bool]:
    return [all(isinstance(r[i], (int, float)) or r[i] == "" for r in table) for i in range(len(header))]


def markdown_table(header: list[str], table: list[list]) -> list[str]:
    """Markdown rows: fixed decimals, numbers right-aligned."""
    numeric = _numeric(header, table)
    lines = ["| " + " | ".join(header) + " |", "|" + "".join("---:|" if n else "---|" for n in numeric)]
    lines += ["| " + " | ".join(fmt(h, v) for h, v in zip(header, r)) + " |" for r in table]
    return lines


# The columns printed at the end of a sweep: the bindings, then what a reader compares first.
SUMMARY = ("vocals_SDR", "accompaniment_SDR", "vocal_SDR_gain", "sep_s_per_s", "train_min")


def summary_table(out: Path, title: str = "sweep results: vocal and accompaniment cSDR (median over frames, then "
                                           "tracks) and the vocal cSDR gain, dB; separation s per s of audio"):
    """A rich table of the finished cells for the terminal: bindings and the main scores, fixed decimals."""
    cells = collect(Path(out))
    base = json.loads((Path(out) / "baseline.json").read_text()) if (Path(out) / "baseline.json").exists() else None
    header, table = rows(cells, base)
    keep = [i for i, h in enumerate(header) if h in SUMMARY or not any(h.startswith(p) for p in ("vocals_", "accompaniment_", "tracks"))]
    numeric = _numeric(header, table)
    short = {"vocals_SDR": "voc", "accompaniment_SDR": "acc", "vocal_SDR_gain": "gain", "sep_s_per_s": "s/s",
             "train_min": "train min"}  # the scores are cSDR, as the title says
    result = Table(title=title)
    for i in keep:
        name = header[i].split(".")[-1]
        result.add_column(short.get(name, name), justify="right" if numeric[i] else "left", overflow="fold")
    for r in table:
        result.add_row(*[fmt(header[i], r[i]) for i in keep])
    return result


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
    w.writerows([[_csv_value(h, v) for h, v in zip(header, r)] for r in table])
    atomic_write_text(out / "results.csv", buf.getvalue())
    md = [f"# {title}", "", f"dB; {AGGREGATION}; separation time in seconds per second of audio.", ""]
    md += markdown_table(header, table)
    if base:
        md += ["", f"Mixture-as-estimate baseline: vocals cSDR {base['vocals']['SDR']:+.2f} dB, "
                   f"accompaniment cSDR {base['accompaniment']['SDR']:+.2f} dB."]
    plots = plot(out, header, table, base)
    md += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    atomic_write_text(out / "results.md", "\n".join(md) + "\n")
    return {"cells": len(cells), "plots": [str(p) for p in plots]}


_SCORE_PREFIXES = ("vocals", "accompaniment", "vocal", "sep", "train", "tracks")


def _series_key(header, row, x_name):
    skip = {x_name} | {h for h in header if "_" in h and h.split("_")[0] in _SCORE_PREFIXES}
    # a binding that a variant leaves unset (blank) is not part of its label
    return ", ".join(f"{h.split('.')[-1]}={row[i]}" for i, h in enumerate(header)
                     if h not in skip and h != "tracks" and row[i] != "") or "all"


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto frontier of ``(time, sdr)`` points: each one better than every faster one, sorted by time."""
    best, front = float("-inf"), []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def _baseline_line(ax, base):
    sdr = (base or {}).get("vocals", {}).get("SDR")
    if sdr is not None:
        ax.axhline(sdr, color="0.4", linestyle="--", linewidth=1, label=f"mixture baseline ({sdr:+.2f} dB)")


def _plain_log_ticks(ax) -> None:
    """Log x axis labelled 0.01, 0.02, 0.05, ... instead of crowded 2x10^-2 minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # matplotlib: heavy, imported only to draw

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(ax, n: int) -> None:
    # many series: the legend goes under the axes, in columns, instead of over the data
    if n > 6:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2 if n < 16 else 3, frameon=False)
    else:
        ax.legend(fontsize=7)


def plot(out: Path, header: list[str], table: list[list], base: dict | None = None) -> list[Path]:
    import matplotlib  # matplotlib: heavy, imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, imported only to draw

    made = []
    col = {h: i for i, h in enumerate(header)}
    sdr = col["vocals_SDR"]
    steps_name = next((h for h in header if h.endswith("SAMPLING_STEPS") or h.endswith("sampling_steps")), None)
    if steps_name:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        series: dict[str, list] = {}
        for r in table:
            series.setdefault(_series_key(header, r, steps_name), []).append((r[col[steps_name]], r[sdr]))
        for label, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        _baseline_line(ax, base)
        ax.set_xscale("log")
        ticks = sorted({p[0] for pts in series.values() for p in pts if isinstance(p[0], (int, float))})
        if ticks:
            from matplotlib.ticker import NullFormatter, ScalarFormatter  # matplotlib: heavy, imported only to draw

            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("vocal cSDR (dB, median over frames, then tracks)")
        ax.set_title("Vocal cSDR vs sampling steps")
        ax.grid(alpha=0.3)
        _legend(ax, len(series) + (base is not None))
        made.append(_save(fig, out / "sdr_vs_steps.png"))
    sep = col["sep_s_per_s"]
    pts = [(r[sep], r[sdr], r) for r in table if r[sep] != ""]
    if pts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        # colour by what changes training and sampling except the step count, which the frontier walks along
        groups: dict[str, list] = {}
        for x, y, r in pts:
            groups.setdefault(_series_key(header, r, steps_name or ""), []).append((x, y))
        for label, gp in sorted(groups.items()):
            ax.scatter([p[0] for p in gp], [p[1] for p in gp], s=18, alpha=0.8, label=label)
        front = frontier([(x, y) for x, y, _ in pts])
        ax.plot([p[0] for p in front], [p[1] for p in front], color="black", linewidth=1, label="frontier")
        # labels only on frontier points, alternating above and below so neighbours do not overlap
        by_point = {(x, y): r for x, y, r in pts}
        skip_scores = {h for h in header if "_" in h and h.split("_")[0] in _SCORE_PREFIXES} | {"tracks"}
        for k, (x, y) in enumerate(front):
            r = by_point[(x, y)]
            values = [str(r[i]) for i, h in enumerate(header) if h not in skip_scores and h != steps_name]
            if steps_name:
                values.append(f"{r[col[steps_name]]} step{'s' if r[col[steps_name]] != 1 else ''}")
            ax.annotate(", ".join(values), (x, y), xytext=(6, 8 if k % 2 == 0 else -12), textcoords="offset points",
                        fontsize=7)
        _baseline_line(ax, base)
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel("separation time (s per s of audio)")
        ax.set_ylabel("vocal cSDR (dB, median over frames, then tracks)")
        ax.set_title("Quality / speed frontier")
        ax.grid(alpha=0.3)
        _legend(ax, len(groups) + 1 + (base is not None))
        made.append(_save(fig, out / "sdr_vs_time.png"))
    return made


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt  # matplotlib: heavy, imported only to draw

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
