"""End-of-run evaluation: separate and score the test set (and an unseen set) with museval."""
from __future__ import annotations

import json

from rich.progress import Progress

from .evaluate import evaluate_tracks, results_markdown, results_table, vocal_sdr_gain
from .io_utils import atomic_write_text


def final_evaluation(exp, built, ema_model, device, precision, out, console, data_root, stop=None) -> dict:
    from .separate import separate_array

    engine = built.engine(ema_model, device, precision)

    def separate(mixture, rate, track):
        if stop is not None:
            stop.check("evaluation stopped; finished tracks are kept and skipped when it is run again")
        return separate_array(engine, mixture, rate)

    results = {}
    sets = [("test", data_root)]
    unseen = exp.unseen_root()
    if unseen is not None:
        sets.append(("unseen", unseen))
    for key, root in sets:
        tracks = exp.test_tracks(root)
        with Progress(console=console) as bar:
            task = bar.add_task(f"evaluate {key}", total=len(tracks))
            res = evaluate_tracks(tracks, separate, out / "eval" / key,
                                  progress=lambda i, n, name: bar.update(task, completed=i))
        res["vocal_sdr_gain"] = vocal_sdr_gain(res)
        res["rtf"] = res["seconds_separation"] / max(1e-9, res["seconds_audio"])
        results[key] = res
        console.print(results_table(res, title=f"{key} set: median over frames, then tracks (dB)"))
        if res["vocal_sdr_gain"] is not None:
            console.print(f"[bold]{key}: vocal SDR gain over the mixture baseline {res['vocal_sdr_gain']:+.2f} dB[/] "
                          f"({len(tracks)} tracks, separation {res['rtf']:.2f} s per s of audio)")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    md = "\n".join(f"## {k}\n\n{results_markdown(v)}" for k, v in results.items())
    atomic_write_text(out / "results.md", md)
    return results
