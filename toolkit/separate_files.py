"""Separate audio files on disk, streaming: memory does not grow with the track's length.

For each input, vocals and instrumental are written where
:mod:`toolkit.output_names` says, at the input's own rate, channel count,
length and bit depth (float for compressed inputs), through temp files
renamed at the end (a kill leaves no half-written file).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .audio import FFMPEG_EXTENSIONS, _check_file, _check_truncation, _not_audio, read, subtype_for, AudioInfo
from .errors import UserError
from .io_utils import atomic_path
from .separate import Engine, separate_stream


def open_input(path: Path):
    """(reader(start, n) -> (channels, n), total, rate, info, closer) without loading the file."""
    _check_file(path)
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        audio, rate, info = read(path)  # compressed containers: decoded whole (ffmpeg)

        def reader(start, n):
            block = audio[:, start:start + n]
            return np.pad(block, ((0, 0), (0, n - block.shape[1]))) if block.shape[1] < n else block

        return reader, audio.shape[1], rate, info, lambda: None
    try:
        handle = sf.SoundFile(str(path))
        _check_truncation(path)
    except PermissionError as exc:
        raise UserError(f"{path}: permission denied; make the file readable") from exc
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _not_audio(path, getattr(exc, "error_string", None) or exc) from exc
    info = AudioInfo(path, handle.format, handle.subtype, handle.channels, handle.frames, handle.samplerate)
    if info.frames == 0:
        handle.close()
        raise UserError(f"{path}: contains no audio samples; re-export it")

    def reader(start, n):
        handle.seek(min(start, info.frames))
        block = handle.read(n, dtype="float32", always_2d=True).T
        if not np.isfinite(block).all():
            raise UserError(f"{path}: holds NaN or infinite samples near {start / info.sample_rate:.1f} s; re-export the file")
        if block.shape[1] < n:
            block = np.pad(block, ((0, 0), (0, n - block.shape[1])))
        return block

    return reader, info.frames, info.sample_rate, info, handle.close


def separate_file(engine: Engine, path: Path, targets: dict[str, Path], fmt: str = "wav",
                  on_chunk: Callable[[int, int], None] | None = None) -> tuple[Path, Path]:
    """Write ``targets["vocals"]`` and ``targets["instrumental"]`` (from :func:`output_names.output_paths`)."""
    reader, total, rate, info, close = open_input(Path(path))
    fmt_up = fmt.upper()
    subtype = subtype_for(info, fmt_up)
    paths = (Path(targets["vocals"]), Path(targets["instrumental"]))
    # folders this file creates: a failed or interrupted file leaves nothing behind, not even them
    created = sorted({d for p in paths for d in p.parents if not d.exists()}, key=lambda d: len(d.parts), reverse=True)
    try:
        with contextlib.ExitStack() as stack:
            tmps = [stack.enter_context(atomic_path(p)) for p in paths]
            writers = [stack.enter_context(sf.SoundFile(str(t), "w", samplerate=rate, channels=info.channels,
                                                        subtype=subtype, format=fmt_up)) for t in tmps]
            pcm = not subtype.startswith(("FLOAT", "DOUBLE"))  # integer and lossy formats saturate at full scale
            for start, inst in separate_stream(engine, reader, total, rate, on_chunk):
                mix = reader(start, inst.shape[1])
                vocals = mix - inst
                if pcm:
                    vocals, inst = np.clip(vocals, -1, 1), np.clip(inst, -1, 1)
                writers[0].write(vocals.T)
                writers[1].write(inst.T)
            for w in writers:
                w.close()
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        close()
    return paths
