"""Audio files in and out (soundfile), resampling and channel layout.

Arrays are always ``audio: (channels, samples)``, float32 in [-1, 1] for
PCM sources. Bad input files fail with one-line :class:`UserError`s that
name the file and the way out; writes are atomic (temp file + rename).

``.stem.mp4`` files (MUSDB18's Native Instruments stems) and other MP4/M4A
audio are read through ``stempeg``/ffmpeg: :func:`read` returns their first
stream, which for a stem file is the mixture.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
import stempeg
import torch
import torchaudio.functional

from .errors import UserError
from .io_utils import atomic_path

# Extension -> soundfile major format, for the formats this libsndfile build has.
_EXTENSION_FORMATS = {
    ".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG",
    ".aiff": "AIFF", ".aif": "AIFF", ".aifc": "AIFF", ".mp3": "MP3", ".au": "AU", ".caf": "CAF",
    ".w64": "W64", ".rf64": "RF64",
}
SOUNDFILE_EXTENSIONS = tuple(ext for ext, fmt in _EXTENSION_FORMATS.items() if fmt in sf.available_formats())
# decoded by stempeg/ffmpeg; MUSDB18 stems are .stem.mp4
FFMPEG_EXTENSIONS = (".mp4", ".m4a", ".aac", ".wma", ".webm", ".mka", ".m4b")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + FFMPEG_EXTENSIONS

_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
# Placeholder sizes that streaming writers (ffmpeg to a pipe, recorders) leave in headers.
_STREAMING_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 1}
_HEADER_SIZE_LOG = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: ``format``/``subtype`` are soundfile names ("WAV", "PCM_16")."""

    path: Path
    format: str
    subtype: str
    channels: int
    frames: int
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an audio file; pass a file (or the folder where a list of files is expected)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes); re-export or re-download it")


def _not_audio(path: Path, reason: str) -> UserError:
    reason = " ".join(str(reason).split()) or "unknown error"
    return UserError(f"{path}: not a readable audio file ({reason}); convert it to WAV/FLAC")


def _check_truncation(path: Path) -> None:
    """libsndfile quietly reads what is there when a WAV/AIFF is cut short; we refuse."""
    log = sf.info(str(path), verbose=True).extra_info
    for declared, present in _HEADER_SIZE_LOG.findall(log):
        declared, present = int(declared), int(present)
        if declared > present and declared not in _STREAMING_SIZES:
            raise UserError(
                f"{path}: truncated audio file (header promises {declared} bytes of samples, "
                f"the file holds {present}); re-export or re-download it"
            )


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int, AudioInfo]:
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        raise UserError(f"{path}: reading {path.suffix} files needs ffmpeg; install it (e.g. apt-get install ffmpeg) or convert the file to WAV/FLAC")
    try:
        stem_info = stempeg.Info(str(path))
        data, rate = stempeg.read_stems(str(path), stem_id=0, dtype=np.float32, info=stem_info)
    except Exception as exc:  # ffmpeg-python's Error keeps ffprobe's stderr; stempeg raises bare Warnings
        output = getattr(exc, "stderr", None)
        output = output.decode(errors="replace") if isinstance(output, bytes) else str(exc)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        reason = lines[-1].removeprefix(f"{path}:").strip() if lines else type(exc).__name__
        raise _not_audio(path, reason) from exc
    audio = np.ascontiguousarray(np.asarray(data, dtype=np.float32).reshape(len(data), -1).T)
    info = AudioInfo(path, "MP4", "AAC", audio.shape[0], audio.shape[1], int(rate))
    return audio, int(rate), info


def read(path: str | os.PathLike) -> tuple[np.ndarray, int, AudioInfo]:
    """Read a file as ``(audio: (channels, samples) float32, sample_rate, info)``.

    Raises :class:`UserError` (one line, naming the file) when the path is
    missing, a folder, empty, not decodable audio, truncated (the header
    promises more samples than the file holds), holds no samples, or holds
    NaN/inf samples (possible in FLOAT/DOUBLE files): non-finite samples
    would poison every STFT frame they touch, so they are refused, with
    their count, rather than silently zeroed.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        audio, rate, info = _read_ffmpeg(path)
    else:
        try:
            with sf.SoundFile(str(path)) as handle:
                info = AudioInfo(path, handle.format, handle.subtype, handle.channels, handle.frames, handle.samplerate)
                data = handle.read(dtype="float32", always_2d=True)
            _check_truncation(path)
        except PermissionError as exc:
            raise UserError(f"{path}: permission denied; make the file readable") from exc
        except (sf.SoundFileError, RuntimeError) as exc:
            raise _not_audio(path, getattr(exc, "error_string", None) or exc) from exc
        if len(data) < info.frames:
            raise UserError(
                f"{path}: truncated audio file ({len(data)} of {info.frames} frames decodable); re-export or re-download it"
            )
        audio, rate = np.ascontiguousarray(data.T), info.sample_rate
    if audio.shape[1] == 0:
        raise UserError(f"{path}: contains no audio samples; re-export it")
    bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
    if bad:
        raise UserError(f"{path}: {bad} samples are NaN or infinite; re-export the file from its source")
    return audio, rate, info


def _output_format(path: Path, format: str | None) -> str:
    fmt = (format or _EXTENSION_FORMATS.get(path.suffix.lower(), "")).upper()
    if fmt not in sf.available_formats() or fmt == "MP4":
        writable = ", ".join(SOUNDFILE_EXTENSIONS)
        what = f"format '{format}'" if format else f"extension '{path.suffix}'"
        raise UserError(f"{path}: cannot write audio with {what}; use one of {writable}")
    return fmt


def subtype_for(info: AudioInfo, format: str = "WAV") -> str:
    """The subtype to write a result of ``info``'s file in ``format``, keeping its precision.

    PCM_16 stays PCM_16 and FLOAT stays FLOAT when ``format`` allows it;
    PCM deeper than ``format`` can hold drops to its deepest PCM (PCM_32
    as FLAC: PCM_24). Other sources (FLOAT into FLAC, MP3/Vorbis/Opus/AAC,
    whose decoding gave floats) get FLOAT where ``format`` has it, else its
    deepest PCM, else its default; MP3 output is always MPEG Layer III.
    """
    fmt = format.upper()
    available = sf.available_subtypes(fmt)
    if fmt == "MP3":
        return "MPEG_LAYER_III"
    # only sample formats are kept: a codec (MPEG_LAYER_III, VORBIS) is not a depth, even where WAV can hold it
    if (info.subtype.startswith("PCM_") or info.subtype in _FLOAT_SUBTYPES) and sf.check_format(fmt, info.subtype):
        return info.subtype
    depths = sorted(int(name[4:]) for name in available if name.startswith("PCM_") and name[4:].isdigit())
    if info.subtype.startswith("PCM_") and info.subtype[4:].isdigit():
        fitting = [d for d in depths if d <= int(info.subtype[4:])]
        if fitting:
            return f"PCM_{fitting[-1]}"
    if "FLOAT" in available:
        return "FLOAT"
    if depths:
        return f"PCM_{depths[-1]}"
    return sf.default_subtype(fmt)


def write(
    path: str | os.PathLike,
    audio,
    sample_rate: int,
    subtype: str | None = None,
    format: str | None = None,
) -> Path:
    """Write ``audio: (channels, samples)`` (numpy or torch; 1-D means mono) atomically.

    ``format`` defaults to the extension's, ``subtype`` to the format's
    default (WAV/FLAC: PCM_16; see :func:`subtype_for` to keep an input's).
    Parent folders are created. PCM output is clipped to [-1, 1] first so
    loud estimates saturate instead of wrapping. Returns ``path``.
    """
    path = Path(path)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] > 64:
        raise ValueError(f"audio must be (channels, samples) with at most 64 channels; got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"refusing to write {path}: audio holds NaN or infinite samples")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer; got {sample_rate}")
    fmt = _output_format(path, format)
    subtype = (subtype or sf.default_subtype(fmt)).upper()
    if not sf.check_format(fmt, subtype):
        known = ", ".join(sorted(sf.available_subtypes(fmt)))
        raise UserError(f"{path}: subtype '{subtype}' cannot be written as {fmt}; use one of {known}")
    if subtype not in _FLOAT_SUBTYPES:
        audio = np.clip(audio, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio.T, int(sample_rate), subtype=subtype, format=fmt)
    return path


def resample(audio, orig_sr: int, new_sr: int) -> torch.Tensor:
    """``audio: (..., samples)`` at ``orig_sr`` -> ``(..., samples')`` at ``new_sr`` (identity when equal).

    Band-limited sinc interpolation (``torchaudio.functional.resample``);
    integer input is converted to float32 first.
    """
    x = torch.as_tensor(audio)
    if not x.is_floating_point():
        x = x.float()
    for name, rate in (("orig_sr", orig_sr), ("new_sr", new_sr)):
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"{name} must be a positive integer sample rate; got {rate}")
    if int(orig_sr) == int(new_sr):
        return x
    return torchaudio.functional.resample(x, int(orig_sr), int(new_sr))


def to_channels(audio, channels: int, *, source: str | None = None):
    """``audio: (C, samples)`` -> ``(channels, samples)``, numpy or torch as given.

    To mono by averaging; mono to several channels by repetition. Other
    changes (e.g. 6 -> 2) are ambiguous and raise :class:`UserError`
    (prefixed with ``source``, e.g. the file name).
    """
    have = audio.shape[0]
    if have == channels:
        return audio
    is_torch = isinstance(audio, torch.Tensor)
    if channels == 1:
        return audio.mean(dim=0, keepdim=True) if is_torch else _channel_mean(audio)
    if have == 1:
        return audio.repeat(channels, 1) if is_torch else np.repeat(audio, channels, axis=0)
    where = f"{source}: " if source else ""
    raise UserError(f"{where}cannot turn {have}-channel audio into {channels} channels; downmix it first (e.g. ffmpeg -ac {channels})")


def _channel_mean(audio: np.ndarray) -> np.ndarray:
    """``(C, samples) -> (1, samples)``: the same numbers as ``audio.mean(axis=0, keepdims=True)``.

    Channel by channel: numpy's reduction over a short axis of a transposed
    (interleaved) array is an order of magnitude slower than whole-row adds.
    """
    total = np.array(audio[0], dtype=audio.dtype if np.issubdtype(audio.dtype, np.floating) else np.float64)
    for row in audio[1:]:
        total += row
    total /= audio.shape[0]
    return total[None]


def _is_audio_name(path: Path) -> bool:
    # Dot-files are hidden: our own temporary files and macOS "._" resource forks.
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def list_audio_files(paths: str | os.PathLike | Iterable[str | os.PathLike], *, recursive: bool = False) -> list[Path]:
    """Files given directly, plus the audio files inside given folders (sorted).

    A folder contributes files with an extension in ``AUDIO_EXTENSIONS``
    (sub-folders too when ``recursive``); a file given directly is kept
    whatever its extension (reading it will say if it is not audio).
    Duplicates are dropped, order kept. A missing path, or a folder with no
    audio, raises :class:`UserError`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            pattern = given.rglob("*") if recursive else given.iterdir()
            files = sorted(p for p in pattern if p.is_file() and _is_audio_name(p))
            if not files:
                raise UserError(f"{given}: no audio files in this folder (looked for {', '.join(AUDIO_EXTENSIONS)})")
            found.extend(files)
        elif given.exists():
            found.append(given)
        else:
            raise UserError(f"{given}: no such file or folder; check the path")
    return list(dict.fromkeys(found))
