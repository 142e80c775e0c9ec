"""Scoring with museval, aggregated as SiSEC/museval do.

Per track: ``museval.eval_mus_track`` (bss_eval v4, 1 s windows, targets
``vocals`` and ``accompaniment``), its JSON saved exactly as museval writes
it (but atomically). Aggregation: median over frames per track, then median
over tracks (``museval.EvalStore``). The baseline is the mixture itself used
as the estimate of both targets.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterable

import museval
import numpy as np
from rich.table import Table

from .io_utils import atomic_write_text
from .audio import write as write_audio

TARGETS = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "ISR")


def score_track(track, estimates: dict[str, np.ndarray], json_path: Path | None = None):
    """estimates: name -> (samples, channels) like ``track.audio``. Returns museval's TrackStore."""
    store = museval.eval_mus_track(track, estimates)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_path, store.json)
    return store




def medians(stores: Iterable) -> dict:
    """{target: {metric: median over tracks of the median over frames}}."""
    agg = museval.EvalStore(frames_agg="median", tracks_agg="median")
    n = 0
    for store in stores:
        agg.add_track(store)
        n += 1
    if n == 0:
        return {}
    series = agg.agg_frames_tracks_scores()
    out: dict = {}
    for (target, metric), value in series.items():
        out.setdefault(target, {})[metric] = float(value)
    return out


def evaluate_tracks(tracks, separate: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], out_dir: Path,
                    baseline: bool = True, save_estimates: bool = True, progress: Callable | None = None) -> dict:
    """Separate and score every musdb track; resumable (tracks with a JSON are skipped).

    ``separate(mixture (channels, samples), rate, track) -> (vocals, accompaniment)``, both (channels, samples).
    Returns ``{"model": medians, "baseline": medians, "tracks": n, "seconds_audio", "seconds_separation"}``.
    """
    out_dir = Path(out_dir)
    model_stores, base_stores = [], []
    sep_seconds = audio_seconds = 0.0
    tracks = list(tracks)
    for i, track in enumerate(tracks):
        json_path = out_dir / "scores" / track.subset / f"{track.name}.json"
        base_path = out_dir / "baseline" / track.subset / f"{track.name}.json"
        mixture = np.asarray(track.audio, dtype=np.float32)  # (samples, channels)
        if json_path.exists():
            model_stores.append(_store_from_json(json_path))
        else:
            t0 = time.perf_counter()
            vocals, acc = separate(mixture.T.copy(), int(track.rate), track)
            sep_seconds += time.perf_counter() - t0
            audio_seconds += mixture.shape[0] / float(track.rate)
            est = {"vocals": vocals.T, "accompaniment": acc.T}
            if save_estimates:
                for name, audio in est.items():
                    write_audio(out_dir / "estimates" / track.subset / track.name / f"{name}.wav", audio.T, int(track.rate), subtype="FLOAT")
            model_stores.append(score_track(track, est, json_path))
        if baseline:
            if base_path.exists():
                base_stores.append(_store_from_json(base_path))
            else:
                base_stores.append(score_track(track, {"vocals": mixture, "accompaniment": mixture}, base_path))
        if progress:
            progress(i + 1, len(tracks), track.name)
    result = {"model": medians(model_stores), "tracks": len(tracks),
              "seconds_audio": audio_seconds, "seconds_separation": sep_seconds}
    if baseline:
        result["baseline"] = medians(base_stores)
    return result


def _store_from_json(path: Path):
    data = json.loads(Path(path).read_text())
    store = museval.TrackStore(track_name=data["name"])
    store.scores = data
    return store


def vocal_sdr_gain(result: dict) -> float | None:
    try:
        return result["model"]["vocals"]["SDR"] - result["baseline"]["vocals"]["SDR"]
    except (KeyError, TypeError):
        return None


def results_table(result: dict, title: str = "median over frames, then tracks (dB)"):
    """A rich table: target, metric columns, model vs mixture baseline."""
    table = Table(title=title)
    table.add_column("estimate")
    table.add_column("target")
    for m in METRICS:
        table.add_column(m, justify="right")
    for label, key in (("Diff-MSST", "model"), ("mixture (baseline)", "baseline")):
        scores = result.get(key) or {}
        for target in TARGETS:
            if target in scores:
                table.add_row(label, target, *[f"{scores[target].get(m, float('nan')):+.2f}" for m in METRICS])
    return table


def results_markdown(result: dict) -> str:
    lines = ["| estimate | target | " + " | ".join(METRICS) + " |", "|---|---|" + "---:|" * len(METRICS)]
    for label, key in (("Diff-MSST", "model"), ("mixture (baseline)", "baseline")):
        for target in TARGETS:
            s = (result.get(key) or {}).get(target)
            if s:
                lines.append(f"| {label} | {target} | " + " | ".join(f"{s.get(m, float('nan')):+.2f}" for m in METRICS) + " |")
    gain = vocal_sdr_gain(result)
    if gain is not None:
        lines.append(f"\nVocal SDR gain over the mixture baseline: **{gain:+.2f} dB** ({result.get('tracks')} tracks).")
    return "\n".join(lines) + "\n"
