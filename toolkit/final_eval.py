"""End-of-run evaluation: separate and score the test set (and any ``Experiment.evaluation_sets``) with museval."""
from __future__ import annotations

import json
from pathlib import Path

from rich.progress import Progress

from . import parts
from .data import open_db
from .evaluate import TITLE, evaluate_tracks, results_markdown, results_table, vocal_sdr_gain
from .io_utils import atomic_write_text
from .separate import separate_array


def evaluation_roots(exp, train_root) -> dict[str, Path]:
    """``{label: root}``: ``test`` is the training root; each of ``exp.evaluation_sets`` is its dataset's root."""
    roots = {"test": Path(train_root)}
    for label, spec in exp.evaluation_sets.items():
        options = {k: v for k, v in spec.items() if k != "dataset"}
        dataset, _ = parts.build("datasets", spec["dataset"], subset="test", split=None, random_segments=False,
                                 segment_seconds=None, seed=exp.seed, **options)
        roots[label] = Path(dataset.root)
    return roots


def test_tracks(root, limit: int | None = None) -> list:
    """The musdb test tracks of ``root`` that an evaluation scores (the first ``limit``, or all)."""
    return list(open_db(root, "test").tracks)[: limit or None]


def final_evaluation(exp, built: parts.Parts, ema_model, device, precision, out, console, stop=None) -> dict:
    engine = built.engine(ema_model, device=device, precision=precision)

    def separate(mixture, rate, track):
        if stop is not None:
            stop.check("evaluation stopped; finished tracks are kept and skipped when it is run again")
        return separate_array(engine, mixture, rate)

    results = {}
    for key, root in evaluation_roots(exp, built.records["dataset"]["root"]).items():
        tracks = test_tracks(root, exp.evaluation_tracks)
        with Progress(console=console) as bar:
            task = bar.add_task(f"evaluate {key}", total=len(tracks))
            res = evaluate_tracks(tracks, separate, out / "eval" / key,
                                  progress=lambda i, n, name: bar.update(task, completed=i))
        res["vocal_sdr_gain"] = vocal_sdr_gain(res)  # cSDR
        res["vocal_usdr_gain"] = vocal_sdr_gain(res, "uSDR")
        res["rtf"] = res["seconds_separation"] / max(1e-9, res["seconds_audio"])
        results[key] = res
        console.print(results_table(res, title=f"{key} set ({TITLE})"))
        if res["vocal_sdr_gain"] is not None:
            also = f", uSDR {res['vocal_usdr_gain']:+.2f} dB" if res["vocal_usdr_gain"] is not None else ""
            console.print(f"[bold]{key}: vocal gain over the mixture baseline: cSDR {res['vocal_sdr_gain']:+.2f} dB{also}[/] "
                          f"({len(tracks)} tracks, separation {res['rtf']:.2f} s per s of audio)")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    md = "\n".join(f"## {k}\n\n{results_markdown(v)}" for k, v in results.items())
    atomic_write_text(out / "results.md", md)
    return results
