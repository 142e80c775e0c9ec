"""MUSDB18 access: root checks, musdb DBs with a validation split, an audio cache, datasets.

A root is either MUSDB18-HQ (``<root>/train/<track>/{mixture,drums,bass,other,vocals}.wav``,
also what ``toolkit data synth`` writes) or MUSDB18 (``<root>/train/<track>.stem.mp4``);
``is_wav`` is detected from the files when not given.

Validation split: musdb's own ``split="train"/"valid"`` lists 14 real MUSDB18 track
names. A root whose train tracks include none of them (a synthetic root, a
custom one) gets a deterministic fallback instead: the last ``VALID_FRACTION``
(20 %, at least one track when there are two or more) of the train tracks
sorted by name form ``valid``, the rest ``train``. See :func:`split_tracks`.

Audio is decoded once per process (an LRU dict, bounded by
``TOOLKIT_AUDIO_CACHE_MB``, default 2048) and, with ``cache_dir``, once per
machine: a ``.npy`` per track keyed by its paths, sizes, mtimes, sample rate
and channels, memory-mapped on later loads so that later epochs read no mp4
(:func:`prepare_cache` fills it ahead, ``toolkit data prepare``).

For evaluation, :func:`iter_tracks` yields ``(name, full-track arrays)``; for
training, :class:`toolkit.segments.SegmentDataset` yields segments.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import subprocess
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import musdb
import numpy as np
import soundfile as sf
import stempeg
import torch
import yaml
from einops import rearrange
from rich.table import Table

from . import paths
from .audio import resample, to_channels
from .errors import UserError
from .io_utils import atomic_path, exclusive_lock

STEMS = ("mixture", "drums", "bass", "other", "vocals")  # musdb stem_ids order
SOURCES = ("drums", "bass", "other", "vocals")
INSTRUMENTS = ("drums", "bass", "other")
VALID_FRACTION = 0.2
MUSDB_URL = "https://sigsep.github.io/datasets/musdb.html"
SUBSETS = ("train", "test")


# ---------------------------------------------------------------- roots

def _expected(root: Path) -> str:
    return (f"expected {root}/train/<track>/mixture.wav (+ drums.wav bass.wav other.wav vocals.wav, MUSDB18-HQ) "
            f"or {root}/train/<track>.stem.mp4 files (MUSDB18); get MUSDB18 from {MUSDB_URL} "
            f"or make a synthetic root with `toolkit data synth --out DIR`")


def _wav_tracks(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "mixture.wav").exists())


def _stem_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(".stem.mp4") and not p.name.startswith("."))


def detect_is_wav(root) -> bool | None:
    """True for MUSDB18-HQ wav folders, False for ``.stem.mp4`` files, None when neither is found.

    A root holding both is read as wav (the uncompressed HQ version).
    """
    root = Path(root)
    if any(_wav_tracks(root / s) for s in SUBSETS):
        return True
    if any(_stem_files(root / s) for s in SUBSETS):
        return False
    return None


def resolve_root(root=None) -> Path:
    """The MUSDB18 root: ``root``, else ``$MUSDB_PATH``; raises ``UserError`` unless it holds tracks."""
    if root is None or str(root) == "":
        root = os.environ.get("MUSDB_PATH")
        if not root:
            raise UserError("no MUSDB18 root given: pass the root folder or set MUSDB_PATH; "
                            + _expected(Path("<root>")))
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"MUSDB18 root {path} does not exist or is not a folder; " + _expected(path))
    if detect_is_wav(path) is None:
        raise UserError(f"no MUSDB18 tracks under {path}; " + _expected(path))
    return path


# ---------------------------------------------------------------- DBs and splits

def _musdb_validation_names() -> list[str]:
    # musdb's own setup file, read as package data (the file musdb.DB loads for its official split)
    text = (importlib.resources.files("musdb") / "configs" / "mus.yaml").read_text()
    return list(yaml.safe_load(text)["validation_tracks"])


def split_tracks(names) -> tuple[list[str], list[str], str]:
    """``(train_names, valid_names, rule)`` for the train subset's track names.

    musdb's official split when any name is in its validation list; otherwise the
    last 20 % of the names sorted (at least one when there are two or more) are valid.
    """
    names = list(names)
    official = set(_musdb_validation_names())
    if official & set(names):
        return [n for n in names if n not in official], [n for n in names if n in official], "musdb's validation list"
    ordered = sorted(names)
    n_valid = max(1, round(VALID_FRACTION * len(ordered))) if len(ordered) >= 2 else 0
    cut = len(ordered) - n_valid
    return ordered[:cut], ordered[cut:], f"last {n_valid} of {len(ordered)} train tracks by name"


def _corrupt(path, exc) -> str:
    return f"cannot read {path} ({exc}); the file is truncated or corrupt: re-create or re-download it"


def _check_wav_track(folder: Path) -> None:
    """Every stem present and readable, with the mixture's length, rate and channels."""
    reference = None
    for stem in STEMS:
        path = folder / f"{stem}.wav"
        if not path.is_file():
            raise UserError(f"{folder} lacks {stem}.wav; a MUSDB18-HQ track folder needs "
                            f"{', '.join(s + '.wav' for s in STEMS)}")
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise UserError(_corrupt(path, exc)) from None
        shape = (info.frames, info.samplerate, info.channels)
        if reference is None:
            reference = shape
        elif shape != reference:
            raise UserError(f"{path} has {shape[0]} frames, {shape[1]} Hz, {shape[2]} channels but mixture.wav has "
                            f"{reference[0]}, {reference[1]} Hz, {reference[2]}; the file is truncated or corrupt: "
                            f"re-create or re-download it")


def _first_unprobeable(files: list[Path]) -> Path | None:
    for path in files:
        try:
            stempeg.Info(str(path))
        except Exception:  # ffprobe failures come in many types
            return path
    return None


def open_db(root=None, subset: str = "train", split: str | None = None, is_wav: bool | None = None):
    """A ``musdb.DB`` of one subset; ``split`` ('train'/'valid', train subset only) per :func:`split_tracks`.

    Raises ``UserError`` for a bad root, an empty selection or an unreadable wav file.
    """
    root = resolve_root(root)
    if subset not in SUBSETS:
        raise UserError(f"unknown MUSDB18 subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    if split not in (None, "train", "valid"):
        raise UserError(f"unknown split {split!r}; choose 'train', 'valid' or none")
    if split is not None and subset != "train":
        raise UserError(f"split={split!r} applies to the train subset only, not {subset!r}; drop the split")
    if is_wav is None:
        is_wav = bool(detect_is_wav(root))
    folder = root / subset
    found = _wav_tracks(folder) if is_wav else _stem_files(folder)
    kind = "<track>/mixture.wav folders" if is_wav else "<track>.stem.mp4 files"
    if not found:
        raise UserError(f"no tracks in {folder} (looked for {kind}); " + _expected(root))
    if is_wav:
        for track_folder in found:
            _check_wav_track(track_folder)
    try:
        db = musdb.DB(root=str(root), subsets=subset, is_wav=is_wav)
    except Exception as exc:  # ffprobe and friends: say where
        bad = None if is_wav else _first_unprobeable(found)
        if bad is not None:
            raise UserError(_corrupt(bad, "ffprobe cannot read it")) from exc
        raise UserError(f"cannot read the MUSDB18 tracks in {folder}: {exc}; check the files") from exc
    # musdb also walks nested folders and takes every folder for a track: keep the ones checked above
    names = {p.name if is_wav else p.name[: -len(".stem.mp4")] for p in found}
    db.tracks = [t for t in db.tracks if t.name in names]
    if split is not None:
        train, valid, rule = split_tracks([t.name for t in db.tracks])
        keep = set(train if split == "train" else valid)
        db.tracks = [t for t in db.tracks if t.name in keep]
        if not db.tracks:
            raise UserError(f"the {split!r} split of {folder} is empty ({rule}; {len(train) + len(valid)} tracks); "
                            f"use split=None or add tracks")
    return db


@dataclass(frozen=True)
class TrackRef:
    """Where a track's audio lives (picklable, unlike musdb tracks with their ffprobe info)."""

    name: str
    subset: str
    is_wav: bool
    paths: tuple[str, ...]  # wav: one file per stem in STEMS order; mp4: the one .stem.mp4
    frames: int  # at the native rate (mp4: from the container, decoders may differ by a few ms)
    rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def track_ref(track) -> TrackRef:
    """The :class:`TrackRef` of a ``musdb.MultiTrack`` (a ``TrackRef`` passes through)."""
    if isinstance(track, TrackRef):
        return track
    if track.is_wav:
        folder = Path(track.path).parent
        paths = tuple(str(folder / f"{stem}.wav") for stem in STEMS)
        info = sf.info(paths[0])
        return TrackRef(track.name, track.subset, True, paths, int(info.frames), int(info.samplerate), int(info.channels))
    try:
        streams, frames, rate, channels = (track.info.nb_audio_streams, int(track.samples), int(track.rate),
                                           int(track.info.channels(0)))
    except Exception as exc:  # ffprobe failures come in many types
        raise UserError(_corrupt(track.path, exc)) from None
    if streams < len(STEMS):
        raise UserError(f"{track.path} has {streams} streams, a MUSDB18 .stem.mp4 needs {len(STEMS)} "
                        f"({', '.join(STEMS)}); re-download it")
    return TrackRef(track.name, track.subset, False, (str(track.path),), frames, rate, channels)


# ---------------------------------------------------------------- audio cache

_MEMORY: OrderedDict = OrderedDict()
_MEMORY_ENTRIES = 256


def _memory_budget() -> int:
    value = os.environ.get("TOOLKIT_AUDIO_CACHE_MB", "2048")
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise UserError(f"TOOLKIT_AUDIO_CACHE_MB={value!r} is not a number of megabytes; unset it or set e.g. 2048") from None


def clear_memory_cache() -> None:
    """Forget decoded tracks held by this process (the on-disk cache stays)."""
    _MEMORY.clear()


CACHE_FORMAT = 2  # bump when the layout of cached arrays changes: old entries are then rebuilt


def default_cache_dir() -> Path:
    """Where decoded stems are cached on disk by default: ``<toolkit cache>/audio``."""
    return paths.cache_dir() / "audio"


def _cache_key(ref: TrackRef, sample_rate: int, channels: int | None = None) -> tuple:
    stats = []
    for path in ref.paths:
        try:
            st = os.stat(path)
        except OSError:
            raise UserError(f"track file {path} disappeared; re-create the root or point to another one") from None
        stats.append((path, st.st_size, st.st_mtime_ns))
    key = (tuple(stats), int(sample_rate))
    return key if channels is None else (*key, int(channels), CACHE_FORMAT)


def cache_file(track, sample_rate: int | None, cache_dir, channels: int | None = None) -> Path:
    """The ``.npy`` that caches ``track_stems(track, sample_rate, cache_dir, channels)``.

    Its name holds a digest of the track's paths, sizes and mtimes, the rate and
    the channels, so a changed file or setting gets a new entry.
    """
    ref = track_ref(track)
    key = _cache_key(ref, ref.rate if sample_rate is None else int(sample_rate), channels)
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', ref.name)[:80]}-{digest}.npy"


def _remember(key, stems: np.ndarray) -> None:
    _MEMORY[key] = stems
    _MEMORY.move_to_end(key)

    def held():
        return sum(a.nbytes for a in _MEMORY.values() if not isinstance(a, np.memmap))

    while len(_MEMORY) > 1 and (len(_MEMORY) > _MEMORY_ENTRIES or held() > _memory_budget()):
        _MEMORY.popitem(last=False)


def _load_cached(disk: Path):
    if disk.is_file():
        try:
            return np.load(disk, mmap_mode="r")
        except (OSError, ValueError):
            pass  # a damaged cache file: decode again and overwrite it
    return None


def track_stems(track, sample_rate: int | None = None, cache_dir=None, channels: int | None = None) -> np.ndarray:
    """All stems of a track, read-only: ``(5, samples, channels)`` float32 in ``STEMS`` order.

    ``sample_rate=None`` keeps the file's rate; otherwise resampled (torchaudio).
    ``channels=None`` keeps the file's channels, 1 averages them, 2 repeats mono.
    With ``cache_dir`` the array is memory-mapped from an ``.npy`` there,
    decoded by one process at a time (a file lock per entry) and written
    atomically, so parallel readers never see a torn entry.
    """
    ref = track_ref(track)
    sample_rate = ref.rate if sample_rate is None else int(sample_rate)
    key = _cache_key(ref, sample_rate, channels)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    if cache_dir is None:
        stems = _decoded(ref, sample_rate, channels)
    else:
        disk = cache_file(ref, sample_rate, cache_dir, channels)
        stems = _load_cached(disk)
        if stems is None:
            with exclusive_lock(disk.parent / f".{disk.stem}.lock"):
                stems = _load_cached(disk)  # another process may have written it while we waited
                if stems is None:
                    with atomic_path(disk) as tmp:
                        _save_decoded(ref, sample_rate, channels, tmp)
                    stems = np.load(disk, mmap_mode="r")
    _remember(key, stems)
    return stems


def _decoded(ref: TrackRef, sample_rate: int, channels: int | None) -> np.ndarray:
    """``(5, samples, channels)`` float32, read-only."""
    out = None
    for index, stem in enumerate(_converted_stems(ref, sample_rate, channels)):  # stems may share one buffer
        if out is None:
            out = np.empty((len(STEMS), *stem.shape), dtype=np.float32)
        out[index] = stem
    out.setflags(write=False)
    return out


def _save_decoded(ref: TrackRef, sample_rate: int, channels: int | None, path) -> None:
    """Write what :func:`_decoded` returns to ``path`` as ``.npy``, one stem at a time.

    No whole-track array is built: first touches of fresh memory (page
    faults) dominate a decode and do not scale with worker processes
    (docs/musdb18.md).
    """
    with open(path, "wb") as f:
        for index, stem in enumerate(_converted_stems(ref, sample_rate, channels)):
            if index == 0:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                          "shape": (len(STEMS), *stem.shape)}
                np.lib.format.write_array_header_1_0(f, header)
            stem.tofile(f)


def _converted_stems(ref: TrackRef, sample_rate: int, channels: int | None):
    """Each stem in ``STEMS`` order as C-contiguous ``(samples, channels)`` float32 at ``sample_rate``.

    A stem may be overwritten by the next one (a reused buffer): use or copy it before going on.
    """
    for stem in _stem_arrays(ref):
        if sample_rate != ref.rate:
            stem = _resample(stem, ref.rate, sample_rate)
        if channels is not None and channels != stem.shape[1]:
            stem = rearrange(to_channels(rearrange(stem, "t c -> c t"), channels), "c t -> t c")
        yield np.ascontiguousarray(stem, dtype=np.float32)


def _stem_arrays(ref: TrackRef):
    """Each stem in ``STEMS`` order as ``(samples, channels)`` float32; a wav root reuses one read buffer."""
    if not ref.is_wav:
        yield from _read_stem_mp4(ref)
        return
    buffer = None
    for path in ref.paths:
        try:
            with sf.SoundFile(path) as f:
                if buffer is None:
                    buffer = np.empty((f.frames, f.channels), dtype=np.float32)
                elif (f.frames, f.channels) != buffer.shape:
                    raise UserError(f"{path} holds {f.frames} frames x {f.channels} channels but mixture.wav "
                                    f"{buffer.shape[0]} x {buffer.shape[1]}; the file is truncated or corrupt: re-create it")
                if len(f.read(out=buffer)) != f.frames:
                    raise UserError(f"{path} ends before its header's {f.frames} frames; the file is truncated or "
                                    "corrupt: re-create it")
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise UserError(_corrupt(path, exc)) from None
        yield buffer


def prepare_cache(tracks, sample_rate: int | None, channels: int | None, cache_dir, workers: int = 0,
                  progress=None) -> list[str]:
    """Decode every track not yet in ``cache_dir`` (``workers`` processes); returns one line per track that failed.

    ``progress(done, total, name)`` is called after each track. A track that
    cannot be decoded leaves nothing in the cache. Longest tracks go first, so
    workers (handed tracks in turn) finish close together.
    """
    tracks = sorted(tracks, key=lambda t: -track_ref(t).frames)
    loader = torch.utils.data.DataLoader(_CacheJobs(tracks, sample_rate, channels, str(cache_dir)), batch_size=None,
                                         num_workers=workers)
    failures = []
    for done, (name, error) in enumerate(loader, 1):
        if error:
            failures.append(error)
        if progress is not None:
            progress(done, len(tracks), name)
    return failures


class _CacheJobs(torch.utils.data.Dataset):
    """Item i decodes track i into the cache: ``(name, "" or the error line)``."""

    def __init__(self, tracks, sample_rate, channels, cache_dir):
        self.tracks, self.sample_rate, self.channels, self.cache_dir = tracks, sample_rate, channels, cache_dir

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, i: int) -> tuple[str, str]:
        track = self.tracks[i]
        try:
            track_stems(track, self.sample_rate, self.cache_dir, self.channels)
        except UserError as exc:
            return track.name, str(exc).splitlines()[0]
        finally:
            _MEMORY.clear()  # preparing holds nothing: the training reads the memory-mapped files
        return track.name, ""


def load_track(track, cache_dir=None, sample_rate: int | None = None) -> dict[str, np.ndarray]:
    """``{mixture, drums, bass, other, vocals, instrumental, accompaniment}``, each ``(samples, channels)`` float32.

    ``instrumental = drums + bass + other`` and ``accompaniment`` is the same array
    (musdb's name). The five stems are read-only views into the cache.
    """
    stems = track_stems(track, sample_rate, cache_dir)
    audio = dict(zip(STEMS, stems))
    audio["instrumental"] = audio["drums"] + audio["bass"] + audio["other"]
    audio["accompaniment"] = audio["instrumental"]
    return audio


def _read_stem_mp4(ref: TrackRef):
    """Each stem of a MUSDB18 ``.stem.mp4`` in ``STEMS`` order, ``(samples, channels)`` float32 at its native rate.

    One ffmpeg decode per stream, the command ``stempeg.read_stems`` runs (same
    samples), without its two probes per call and its whole-track copy.
    """
    path = ref.paths[0]
    frames = None
    for index in range(len(STEMS)):
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "-ar", str(ref.rate),
               "-map", f"0:{index}", "pipe:"]
        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: one pipe is read in one call
            try:
                done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errors, check=False)
            except OSError as exc:
                raise UserError(f"cannot run ffmpeg to decode {path} ({exc}); install ffmpeg") from None
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip().splitlines()
        if done.returncode or not done.stdout:
            why = message[-1] if message else f"ffmpeg exit status {done.returncode}"
            raise UserError(f"cannot decode {path} ({why}); the file is truncated or corrupt: re-download it")
        stem = np.frombuffer(done.stdout, dtype="<f4").reshape(-1, ref.channels)
        if frames is not None and len(stem) != frames:
            raise UserError(f"{path}: stream {index} ({STEMS[index]}) decodes to {len(stem)} samples but the mixture "
                            f"to {frames}; the file is truncated or corrupt: re-download it")
        frames = len(stem)
        yield stem


def _resample(stem: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """One stem ``(samples, channels)`` from ``rate`` to ``sample_rate``."""
    wave = torch.from_numpy(rearrange(stem, "t c -> c t").copy())
    return rearrange(resample(wave, rate, sample_rate).numpy(), "c t -> t c")


def iter_tracks(root=None, subset: str = "test", split: str | None = None, is_wav: bool | None = None,
                sample_rate: int | None = 44100, cache_dir=None, names=None) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield ``(track name, load_track(...))`` for every track of a subset (or only ``names``), sorted by name.

    Arrays are full tracks ``(samples, channels)`` at ``sample_rate`` (MUSDB18's
    44100 by default; ``None`` keeps each file's rate). For evaluation.
    """
    db = open_db(root, subset, split, is_wav)
    tracks = sorted(db.tracks, key=lambda t: t.name)
    if names is not None:
        wanted = set(names)
        missing = wanted - {t.name for t in tracks}
        if missing:
            raise UserError(f"no track named {sorted(missing)[0]!r} in {subset}; known: {', '.join(t.name for t in tracks)}")
        tracks = [t for t in tracks if t.name in wanted]
    for track in tracks:
        yield track.name, load_track(track, cache_dir, sample_rate)


# ---------------------------------------------------------------- description

def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_root(root=None, is_wav: bool | None = None):
    """A rich ``Table``: per subset (and the train/valid split) tracks, duration, sample rates, channels."""
    root = resolve_root(root)
    if is_wav is None:
        is_wav = bool(detect_is_wav(root))
    table = Table(title=f"{root} ({'MUSDB18-HQ wav' if is_wav else 'MUSDB18 .stem.mp4'})")
    for column in ("subset", "split", "tracks", "duration", "shortest", "longest", "sample rate", "channels"):
        table.add_column(column, justify="left" if column in ("subset", "split") else "right")
    notes = []
    for subset in SUBSETS:
        if not (_wav_tracks(root / subset) if is_wav else _stem_files(root / subset)):
            table.add_row(subset, "all", "0", "-", "-", "-", "-", "-")
            continue
        refs = [track_ref(t) for t in open_db(root, subset, None, is_wav).tracks]
        groups = [("all", refs)]
        if subset == "train":
            train, valid, rule = split_tracks([r.name for r in refs])
            groups += [("train", [r for r in refs if r.name in set(train)]), ("valid", [r for r in refs if r.name in set(valid)])]
            notes.append(f"valid split: {rule}")
        for split, group in groups:
            seconds = [r.seconds for r in group]
            rates = sorted({r.rate for r in group})
            channels = sorted({r.channels for r in group})
            table.add_row(subset, split, str(len(group)), _clock(sum(seconds)) if group else "-",
                          f"{min(seconds):.1f} s" if group else "-", f"{max(seconds):.1f} s" if group else "-",
                          ", ".join(str(r) for r in rates) or "-", ", ".join(str(c) for c in channels) or "-")
    table.caption = "; ".join(notes) or None
    return table
