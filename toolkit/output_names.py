"""Where ``toolkit separate`` writes each input's stems: a file-name template, collisions settled before work.

The default layout ``OUT/<model>/<track>/{vocals,instrumental}.<ext>`` keeps
the results of several models apart; ``toolkit evaluate --estimates OUT``
reads it back. Two inputs that would land on the same files are told apart
by their extension, then by their folder, or refused.
"""
from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

from .errors import UserError

STEMS = ("vocals", "instrumental")
DEFAULT_TEMPLATE = "{model}/{track}/{stem}.{ext}"
FIELDS = {"model": "the checkpoint's run folder", "track": "the input's name without extension",
          "stem": "vocals or instrumental", "ext": "the --format", "parent": "the input's folder name"}


def track_name(path: Path) -> str:
    """``song`` for ``song.flac`` and for MUSDB18's ``song.stem.mp4``."""
    name = Path(path).name
    for suffix in (".stem.mp4", Path(path).suffix):
        if suffix and name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)]
    return name


def model_name(checkpoint: Path) -> str:
    """``RUN`` for ``RUN/checkpoints/last.pt`` (what `toolkit run` writes), else the checkpoint's file stem."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name == "checkpoints" and checkpoint.parent.parent.name:
        return checkpoint.parent.parent.name
    return checkpoint.stem


def check_template(template: str) -> None:
    """Refuse a template with unknown fields, or one that would write vocals and instrumental to one file."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UserError(f"--filename {template}: {exc}; write fields as {{track}}") from exc
    unknown = sorted(used - set(FIELDS))
    if unknown:
        known = ", ".join(f"{{{k}}} ({v})" for k, v in FIELDS.items())
        raise UserError(f"--filename {template}: unknown field {{{unknown[0]}}}; fields: {known}")
    if "stem" not in used:
        raise UserError(f"--filename {template}: needs {{stem}}, or vocals and instrumental overwrite each other "
                        f"(e.g. {DEFAULT_TEMPLATE})")
    if template.startswith("/") or ".." in Path(template).parts:
        raise UserError(f"--filename {template}: must stay inside --out (a relative path without '..')")


def output_paths(inputs: list[Path], out: Path, template: str, model: str, ext: str
                 ) -> tuple[list[dict[str, Path]], list[str]]:
    """``([{stem: path}] per input, notes)``: distinct files for every input, or a UserError before any work.

    Inputs that share a name are told apart by their extension (``rock.flac``,
    ``rock.m4a``), then also by their folder (``a-rock.flac``); a template
    without ``{track}`` cannot tell them apart and is refused.
    """
    check_template(template)
    names = [track_name(p) for p in inputs]

    def render(i: int, track: str) -> dict[str, Path]:
        fields = {"model": model, "track": track, "ext": ext, "parent": inputs[i].resolve().parent.name}
        return {stem: out / template.format(stem=stem, **fields) for stem in STEMS}

    def clashing(tracks: list[str]) -> set[int]:
        paths = [render(i, t)["vocals"] for i, t in enumerate(tracks)]
        counts = Counter(paths)
        return {i for i, p in enumerate(paths) if counts[p] > 1}

    tracks = list(names)
    notes = []
    for widen in (lambda i: f"{names[i]}{inputs[i].suffix.lower()}",
                  lambda i: f"{inputs[i].resolve().parent.name}-{names[i]}{inputs[i].suffix.lower()}"):
        clash = clashing(tracks)
        if not clash:
            break
        for i in clash:
            tracks[i] = widen(i)
    clash = clashing(tracks)
    if clash:
        first = sorted(clash)[:2]
        raise UserError(f"{inputs[first[0]]} and {inputs[first[1]]} would both be written to "
                        f"{render(first[0], tracks[first[0]])['vocals'].parent}; nothing was separated: "
                        f"rename one, or give --filename a {{track}} field (default {DEFAULT_TEMPLATE})")
    for i, track in enumerate(tracks):
        if track != names[i]:
            notes.append(f"{inputs[i]} shares its name with another input: written as '{track}'")
    return [render(i, t) for i, t in enumerate(tracks)], notes
