"""Vocal SDR gain of checkpoints over sampling settings: evaluations x mixture bound x samples averaged.

For each checkpoint (``LABEL=PATH``), each set (``NAME=ROOT``, a MUSDB-shaped
root) and each setting (``--steps`` x ``--clip-x0`` x ``--samples``), the test
songs are separated with ``toolkit separate``'s engine and scored with museval
like ``toolkit evaluate`` (cSDR: median over 1-s frames, then over songs);
the gain is over the mixture-as-estimate baseline of the same songs, in cSDR and, in
brackets, uSDR (the mean over songs of whole-song SDR). Labels
ending in ``-s<N>`` are seeds of one configuration: the table adds their mean.
Scores are kept per song under ``--out`` and reused when run again.

    .venv/bin/python scripts/sampling_table.py --out tables/steps \\
        --checkpoint mag-s0=runs/mag-s0/checkpoints/last.pt --checkpoint mag-s1=... \\
        --set test=~/.cache/diffmsst-toolkit/synthetic-<hash> --steps 1 2 4 8 --clip-x0 true mixture --samples 1 4
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit.api import Separator  # noqa: E402
from toolkit.commands import CLIP_CHOICES  # noqa: E402
from toolkit.errors import UserError  # noqa: E402
from toolkit.evaluate import evaluate_tracks  # noqa: E402
from toolkit.final_eval import test_tracks  # noqa: E402
from toolkit.io_utils import atomic_write_text  # noqa: E402
from toolkit.separate import separate_array  # noqa: E402


def pair(text: str, what: str) -> tuple[str, Path]:
    if "=" not in text:
        raise UserError(f"{what} {text}: expected LABEL=PATH")
    label, path = text.split("=", 1)
    if not Path(path).expanduser().exists():
        raise UserError(f"{what} {text}: no such file or folder {path}")
    return label, Path(path).expanduser()


def setting_name(steps: int, clip: str, samples: int) -> str:
    return f"steps{steps}-clip_{clip}-k{samples}"


def gain(result: dict, baseline: dict, metric: str = "SDR") -> float | None:
    """The vocal ``metric`` gain over the mixture (None where a score has no uSDR)."""
    model, base = result["model"]["vocals"].get(metric), baseline["vocals"].get(metric)
    return None if model is None or base is None else model - base


def cell(value: tuple | None) -> str:
    if value is None:
        return ""
    csdr, usdr = value
    return f"{csdr:+.2f}" + (f" ({usdr:+.2f})" if usdr is not None else "")


def mean(values: list[tuple]) -> tuple | None:
    if not values:
        return None
    usdr = [u for _, u in values]
    return (sum(c for c, _ in values) / len(values), None if None in usdr else sum(usdr) / len(usdr))


def seed_group(label: str) -> str:
    return re.sub(r"-s\d+$", "", label)


def markdown(rows: dict, labels: list[str], sets: list[str]) -> str:
    """One table per set: a row per setting, a column per checkpoint, then the mean over each seed group."""
    groups = list(dict.fromkeys(seed_group(lb) for lb in labels))
    lines = []
    for name in sets:
        head = labels + [f"{g} (mean of {sum(seed_group(lb) == g for lb in labels)})" for g in groups]
        lines += [f"### {name}: vocal gain over the mixture, cSDR (uSDR), dB", "",
                  "| evaluations | clip_x0 | samples | " + " | ".join(head) + " |",
                  "|---:|---|---:|" + "---:|" * len(head)]
        for setting, by_label in rows[name].items():
            steps, clip, k = setting
            cells = [cell(by_label.get(lb)) for lb in labels]
            for g in groups:
                cells.append(cell(mean([by_label[lb] for lb in labels if seed_group(lb) == g and lb in by_label])))
            lines.append(f"| {steps} | {clip} | {k} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=PATH")
    p.add_argument("--set", action="append", required=True, metavar="NAME=ROOT", dest="sets")
    p.add_argument("--steps", type=int, nargs="+", default=[1])
    p.add_argument("--clip-x0", nargs="+", choices=tuple(CLIP_CHOICES), default=["true"])
    p.add_argument("--samples", type=int, nargs="+", default=[1])
    p.add_argument("--tracks", type=int, help="only the first N test songs of each set")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        checkpoints = [pair(c, "--checkpoint") for c in args.checkpoint]
        sets = [pair(s, "--set") for s in args.sets]
        out = Path(args.out)
        rows: dict = {name: {} for name, _ in sets}

        @functools.cache  # one model per setting for every set, loaded only if a song is not scored yet
        def separator(path: Path, steps: int, clip: str, k: int) -> Separator:
            return Separator.from_checkpoint(path, steps=steps, sampler_options={"clip_x0": CLIP_CHOICES[clip]}, samples=k)

        for name, root in sets:
            tracks = test_tracks(root, args.tracks)
            baseline = evaluate_tracks(tracks, lambda m, r, t: (m, m), out / "baseline" / name, baseline=False,
                                       save_estimates=False)["model"]
            for (label, path), steps, clip, k in itertools.product(checkpoints, args.steps, args.clip_x0, args.samples):
                key = (path, steps, clip, k)
                res = evaluate_tracks(tracks, lambda m, r, t, key=key: separate_array(separator(*key).engine, m, r),
                                      out / label / name / setting_name(steps, clip, k), baseline=False,
                                      save_estimates=False)
                rows[name].setdefault((steps, clip, k), {})[label] = (gain(res, baseline), gain(res, baseline, "uSDR"))
                print(f"{name} {label} steps {steps} clip_x0 {clip} samples {k}: "
                      f"{cell(rows[name][(steps, clip, k)][label])} dB", flush=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels = [label for label, _ in checkpoints]
    text = markdown(rows, labels, [name for name, _ in sets])
    atomic_write_text(out / "table.md", text)
    atomic_write_text(out / "table.json", json.dumps(
        {name: {setting_name(*s): {label: {"cSDR_gain": c, "uSDR_gain": u} for label, (c, u) in v.items()}
                for s, v in r.items()} for name, r in rows.items()}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
