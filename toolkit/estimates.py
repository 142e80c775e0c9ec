"""Estimates on disk for ``toolkit evaluate --estimates DIR``, in the layouts the toolkit and museval write.

- ``DIR/<model>/<track>/{vocals,instrumental}.<ext>`` and ``DIR/<track>/...``: what ``toolkit separate --out DIR`` writes;
- ``DIR/<subset>/<track>/{vocals,accompaniment}.<ext>``: museval's (and ``toolkit evaluate``'s ``estimates/``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import read
from .errors import UserError

EXTENSIONS = (".wav", ".flac", ".mp3")
ACCOMPANIMENT = ("accompaniment", "instrumental")
LENGTH_SLACK_S = 0.05


def _stem_file(folder: Path, names) -> Path | None:
    return next((folder / f"{n}{e}" for n in names for e in EXTENSIONS if (folder / f"{n}{e}").is_file()), None)


def track_folder(root: Path, subset: str, name: str) -> Path:
    """The one folder under ``root`` holding ``name``'s estimates; UserError if none, or several models have it."""
    candidates = [root / subset / name, root / name, *sorted(p / name for p in root.glob("*") if p.is_dir())]
    found = list(dict.fromkeys(f for f in candidates if f.is_dir() and _stem_file(f, ("vocals",))))
    if not found:
        raise UserError(f"{root / subset / name}: no estimates for track '{name}'; expected vocals.wav and "
                        f"accompaniment.wav there, or {root}/<model>/{name}/ as `toolkit separate --out {root}` writes")
    if len(found) > 1 and found[0] != root / subset / name:
        models = ", ".join(str(f.parent) for f in found)
        raise UserError(f"--estimates {root}: several folders hold '{name}' ({models}); point --estimates at one of them")
    return found[0]


def read_estimates(root: Path, subset: str, name: str, rate: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(vocals, accompaniment)``, each ``(channels, samples)`` at ``rate``, cut or padded to the track's length.

    A lossy format (mp3) may round the length by a frame or so; more than
    ``LENGTH_SLACK_S`` off means the estimates belong to another file.
    """
    folder = track_folder(Path(root), subset, name)
    vocals_path, acc_path = _stem_file(folder, ("vocals",)), _stem_file(folder, ACCOMPANIMENT)
    if acc_path is None:
        raise UserError(f"{folder}: no accompaniment or instrumental file next to {vocals_path.name}; write both stems")
    out = []
    for path in (vocals_path, acc_path):
        audio, r, _ = read(path)
        if r != rate:
            raise UserError(f"{path}: estimate at {r} Hz, the track is {rate} Hz; resample it to {rate} Hz")
        if abs(audio.shape[1] - samples) > LENGTH_SLACK_S * rate:
            raise UserError(f"{path}: {audio.shape[1] / rate:.2f} s long, the track {samples / rate:.2f} s; "
                            "it was separated from another file")
        audio = audio[:, :samples]
        out.append(np.pad(audio, ((0, 0), (0, samples - audio.shape[1]))))
    return out[0], out[1]
