"""Writing a synthetic MUSDB18-HQ tree: its manifest, its track folders.

The tree has the MUSDB18-HQ layout, so every loader treats it like the real thing::

    out/synth.json                                the arguments that made the tree
    out/train/synth_000/{mixture,drums,bass,other,vocals}.wav
    out/test/synth_test_000/{mixture,drums,bass,other,vocals}.wav

32-bit float WAVs come from a tiny writer of our own: libsndfile stamps float
files with the time of writing, which would break byte-identical output.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import stempeg

from toolkit.data import STEMS
from toolkit.errors import UserError
from toolkit.io_utils import atomic_dir, atomic_path, atomic_write_bytes

STYLES = ("default", "alt", "varied")  # the names of presets.STYLES
SUBTYPES = ("FLOAT", "PCM_16", "PCM_24")
MANIFEST = "synth.json"
GENERATOR_VERSION = 1
SPLIT_IDS = {"train": 0, "test": 1}
STYLE_IDS = {"default": 0, "alt": 1, "varied": 2}  # part of each track's seed: fixed per style


def track_name(split: str, index: int) -> str:
    """``synth_000`` for train tracks, ``synth_test_000`` for test tracks (unique across subsets)."""
    return f"synth_{index:03d}" if split == "train" else f"synth_{split}_{index:03d}"


def manifest(tracks, seconds, sample_rate, seed, test_tracks, style, subtype) -> dict:
    def whole(name, value, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserError(f"synth: {name} must be an integer >= {low}, got {value!r}")
        return int(value)

    tracks = whole("tracks", tracks, 1)
    test_tracks = max(1, tracks // 2) if test_tracks is None else whole("test_tracks", test_tracks, 0)
    seed = whole("seed", seed, 0)
    sample_rate = whole("sample_rate", sample_rate, 8000)
    if sample_rate > 192000:
        raise UserError(f"synth: sample_rate must be at most 192000, got {sample_rate}")
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise UserError(f"synth: seconds must be a number, got {seconds!r}") from None
    if not 0.25 <= seconds <= 600:  # rendering holds ~0.8 GB per minute of 44.1 kHz audio
        raise UserError(f"synth: seconds must be between 0.25 and 600, got {seconds}")
    if style not in STYLES:
        raise UserError(f"synth: unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if subtype not in SUBTYPES:
        raise UserError(f"synth: unknown subtype {subtype!r}; choose one of {', '.join(SUBTYPES)}")
    # "toolkit.synth": the generator's name since its first version, kept so that existing trees stay valid
    return {"generator": "toolkit.synth", "version": GENERATOR_VERSION, "tracks": tracks,
            "test_tracks": test_tracks, "seconds": seconds, "sample_rate": sample_rate, "seed": seed,
            "style": style, "subtype": subtype}


def prepare_out(out: Path, manifest: dict) -> None:
    """Check that ``out`` may receive this tree; write its manifest; drop stale temp folders."""
    if out.exists() and not out.is_dir():
        raise UserError(f"synth: --out {out} is a file; pass a new or empty folder")
    path = out / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old != manifest:
            raise UserError(f"synth: {out} already holds a synthetic tree made with other arguments "
                            f"({_differences(old, manifest)}); pass the same arguments to complete it, or a new --out")
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"synth: {out} is not empty and is not a synth tree (no {MANIFEST}); "
                        f"pass a new or empty folder as --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not path.is_file():  # the manifest first: a failure after it leaves a tree that a re-run completes
            atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        for split in ("train", "test"):
            (out / split).mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):  # folders of a writer that was killed
            for stale in (out / split).glob(".*.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
    except OSError as exc:
        raise UserError(f"synth: cannot write into {out}: {exc.strerror or exc}; pass a writable folder") from exc


def _differences(old, new: dict) -> str:
    if not isinstance(old, dict):
        return f"unreadable {MANIFEST}"
    return ", ".join(f"{key}={old.get(key)!r} there, {value!r} asked" for key, value in new.items() if old.get(key) != value)


def write_track(dest: Path, stems: dict[str, np.ndarray], sample_rate: int, subtype: str) -> None:
    """Write ``{stem: (samples, 2)}`` as ``dest/<stem>.wav``; the folder appears whole or not at all."""
    with atomic_dir(dest) as tmp:
        for name, audio in stems.items():
            if subtype == "FLOAT":
                _write_wav_float32(tmp / f"{name}.wav", audio, sample_rate)
            else:
                sf.write(tmp / f"{name}.wav", audio, sample_rate, subtype=subtype, format="WAV")


def _write_wav_float32(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """RIFF/WAVE, format 3 (IEEE float), 32 bit; ``audio: (samples, channels)``."""
    data = np.ascontiguousarray(audio, dtype="<f4")
    frames, channels = data.shape
    if data.nbytes > 2**32 - 64:
        raise UserError(f"synth: {path} would exceed the 4 GiB WAV limit; use fewer --seconds")
    header = b"".join([
        b"RIFF", struct.pack("<I", 4 + 24 + 12 + 8 + data.nbytes), b"WAVE",
        b"fmt ", struct.pack("<IHHIIHH", 16, 3, channels, sample_rate, sample_rate * channels * 4, channels * 4, 32),
        b"fact", struct.pack("<II", 4, frames),
        b"data", struct.pack("<I", data.nbytes),
    ])
    with open(path, "wb") as f:
        f.write(header)
        f.write(data.tobytes())


def to_stem_mp4(wav_root, out) -> Path:
    """A MUSDB18 (``<out>/<subset>/<track>.stem.mp4``, AAC) copy of a MUSDB18-HQ tree; tracks already there are kept.

    Each file is written atomically, so a file that exists is complete.
    """
    out = Path(out)
    for folder in sorted(Path(wav_root).glob("*/*/")):
        if not (folder / "mixture.wav").is_file():
            continue
        dest = out / folder.parent.name / f"{folder.name}.stem.mp4"
        if dest.exists():
            continue
        stems, rates = zip(*(sf.read(str(folder / f"{stem}.wav"), dtype="float32", always_2d=True) for stem in STEMS))
        with atomic_path(dest) as tmp:
            stempeg.write_stems(str(tmp), np.stack(stems), sample_rate=rates[0], writer=stempeg.StreamsWriter(codec="aac"))
    return out
