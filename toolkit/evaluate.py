"""Scoring with museval, aggregated as SiSEC/museval do.

Per track: ``museval.eval_mus_track`` (bss_eval v4, 1 s windows, targets
``vocals`` and ``accompaniment``), its JSON saved exactly as museval writes
it (but atomically), and each target's whole-track SDR beside it
(``<track>.usdr.json``). Two aggregations, named wherever a score is shown
(:data:`AGGREGATION`): **cSDR** (the ``SDR`` key, as SiSEC 2018 and museval
report it) is the median over 1 s frames per track, then the median over
tracks (``museval.EvalStore``); **uSDR** is the mean over tracks of the
whole-track SDR (the Music Demixing Challenge 2021's, Mitsufuji et al. 2022;
"uSDR" in Lu et al. 2023, BS-RoFormer). The baseline is the mixture itself
used as the estimate of both targets.
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
METRICS = ("SDR", "SIR", "SAR", "ISR", "uSDR")
AGGREGATION = {"SDR": "cSDR: median over 1 s frames per track, then median over tracks (museval v4)",
               "SIR": "median over frames, then tracks", "SAR": "median over frames, then tracks",
               "ISR": "median over frames, then tracks",
               "uSDR": "mean over tracks of the whole-track SDR (Music Demixing Challenge 2021)"}
LABELS = {"SDR": "cSDR"}  # how a metric is headed in tables


def whole_track_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-7) -> float:
    """10 log10(sum s^2 / sum (s - s_hat)^2) over all samples and channels of a track, in dB.

    ``reference``, ``estimate``: (samples, channels). ``eps`` as in the Music
    Demixing Challenge 2021 scoring (Mitsufuji et al. 2022), so a silent
    reference and a silent estimate score 10 log10(eps / eps) = 0 instead of NaN.
    """
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    n = min(len(reference), len(estimate))
    reference, estimate = reference[:n], estimate[:n]
    return float(10 * np.log10((np.sum(reference ** 2) + eps) / (np.sum((reference - estimate) ** 2) + eps)))


def usdr_scores(track, estimates: dict[str, np.ndarray], json_path: Path | None = None) -> dict[str, float]:
    """``{target: whole-track SDR}`` of ``estimates`` (name -> (samples, channels)), saved to ``json_path`` if given."""
    scores = {name: whole_track_sdr(track.targets[name].audio, estimates[name]) for name in TARGETS if name in estimates}
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_path, json.dumps(scores))
    return scores


def usdr_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.stem + ".usdr.json")


def add_usdr(medians_: dict, per_track: list[dict | None]) -> dict:
    """``medians_`` with each target's ``uSDR`` (mean over tracks) when every track has one."""
    if per_track and all(s is not None for s in per_track):
        for target in TARGETS:
            if target in medians_ and all(target in s for s in per_track):
                medians_[target]["uSDR"] = float(np.mean([s[target] for s in per_track]))
    return medians_


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
    model_stores, base_stores, model_usdr, base_usdr = [], [], [], []
    sep_seconds = audio_seconds = 0.0
    tracks = list(tracks)
    for i, track in enumerate(tracks):
        json_path = out_dir / "scores" / track.subset / f"{track.name}.json"
        base_path = out_dir / "baseline" / track.subset / f"{track.name}.json"
        mixture = np.asarray(track.audio, dtype=np.float32)  # (samples, channels)
        if json_path.exists():
            model_stores.append(_store_from_json(json_path))
            model_usdr.append(_usdr_from_json(usdr_path(json_path)))
        else:
            t0 = time.perf_counter()
            vocals, acc = separate(mixture.T.copy(), int(track.rate), track)
            sep_seconds += time.perf_counter() - t0
            audio_seconds += mixture.shape[0] / float(track.rate)
            est = {"vocals": vocals.T, "accompaniment": acc.T}
            if save_estimates:
                for name, audio in est.items():
                    write_audio(out_dir / "estimates" / track.subset / track.name / f"{name}.wav", audio.T, int(track.rate), subtype="FLOAT")
            model_usdr.append(usdr_scores(track, est, usdr_path(json_path)))  # before museval's JSON: that marks the track done
            model_stores.append(score_track(track, est, json_path))
        if baseline:
            if base_path.exists():
                base_stores.append(_store_from_json(base_path))
                base_usdr.append(_usdr_from_json(usdr_path(base_path)))
            else:
                mix_est = {"vocals": mixture, "accompaniment": mixture}
                base_usdr.append(usdr_scores(track, mix_est, usdr_path(base_path)))
                base_stores.append(score_track(track, mix_est, base_path))
        if progress:
            progress(i + 1, len(tracks), track.name)
    result = {"model": add_usdr(medians(model_stores), model_usdr), "tracks": len(tracks),
              "seconds_audio": audio_seconds, "seconds_separation": sep_seconds, "aggregation": AGGREGATION}
    if baseline:
        result["baseline"] = add_usdr(medians(base_stores), base_usdr)
    return result


def _usdr_from_json(path: Path) -> dict | None:
    """The whole-track SDRs saved beside a museval JSON (None for scores written before they were kept)."""
    return json.loads(path.read_text()) if path.exists() else None


def _store_from_json(path: Path):
    """museval's TrackStore from the JSON :func:`score_track` saved (named after the track: museval keeps no name in it)."""
    store = museval.TrackStore(track_name=Path(path).stem)
    store.scores = json.loads(Path(path).read_text())
    return store


def vocal_sdr_gain(result: dict, metric: str = "SDR") -> float | None:
    """Vocal ``metric`` of the model minus the mixture baseline's (the cSDR gain by default)."""
    try:
        return result["model"]["vocals"][metric] - result["baseline"]["vocals"][metric]
    except (KeyError, TypeError):
        return None


TITLE = "dB; cSDR, SIR, SAR, ISR: median over frames, then tracks; uSDR: mean over tracks of whole-track SDR"


def results_table(result: dict, title: str = TITLE):
    """A rich table: target, metric columns, model vs mixture baseline."""
    table = Table(title=title)
    table.add_column("estimate")
    table.add_column("target")
    for m in METRICS:
        table.add_column(LABELS.get(m, m), justify="right")
    for label, key in (("Diff-MSST", "model"), ("mixture (baseline)", "baseline")):
        scores = result.get(key) or {}
        for target in TARGETS:
            if target in scores:
                table.add_row(label, target, *[f"{scores[target].get(m, float('nan')):+.2f}" for m in METRICS])
    return table


def results_markdown(result: dict) -> str:
    lines = [f"{TITLE}.", "", "| estimate | target | " + " | ".join(LABELS.get(m, m) for m in METRICS) + " |",
             "|---|---|" + "---:|" * len(METRICS)]
    for label, key in (("Diff-MSST", "model"), ("mixture (baseline)", "baseline")):
        for target in TARGETS:
            s = (result.get(key) or {}).get(target)
            if s:
                lines.append(f"| {label} | {target} | " + " | ".join(f"{s.get(m, float('nan')):+.2f}" for m in METRICS) + " |")
    gain, ugain = vocal_sdr_gain(result), vocal_sdr_gain(result, "uSDR")
    if gain is not None:
        also = f", uSDR {ugain:+.2f} dB" if ugain is not None else ""
        lines.append(f"\nVocal gain over the mixture baseline: **cSDR {gain:+.2f} dB**{also} ({result.get('tracks')} tracks).")
    return "\n".join(lines) + "\n"
