"""Training and validation segments of any MUSDB-shaped root (the core of every dataset plugin).

Dataset plugins (``plugins/datasets/``) subclass :class:`SegmentDataset`
with their own way to find or make the root; items follow
:class:`toolkit.contracts.Dataset`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from einops import rearrange

from .audio import to_channels
from .data import SOURCES, STEMS, default_cache_dir, open_db, resolve_root, track_ref, track_stems
from .errors import UserError


class SegmentDataset(torch.utils.data.Dataset):
    """Segments of a MUSDB-shaped root as ``{mixture, instrumental, vocals}: (channels, samples)`` float32 tensors.

    Training (``random_segments=True``): item ``i`` of epoch ``e`` is drawn from
    ``numpy.random.default_rng([seed, e, i])``, a track uniformly, then a start
    uniformly (with ``augment_remix`` each source from its own track and start,
    as in Open-Unmix/Demucs), so items do not depend on worker order;
    ``len == segments_per_epoch``; call :meth:`set_epoch` each epoch (with
    non-persistent DataLoader workers, which copy the dataset anew each epoch).
    Augmentations: per-source gain in [0.25, 1.25], per-source left/right swap.

    Fixed (``random_segments=False``): segments tiling every track from its start,
    the last one zero-padded (at most ``segments_per_epoch`` of them, evenly
    spread, when that is set), or whole tracks when ``segment_seconds`` is None.

    ``mixture`` is always ``instrumental + vocals`` computed from the (augmented)
    sources, so the identity holds exactly. Mono is the mean of both channels;
    stereo from mono files repeats the channel. ``split`` applies to the train
    subset only and is ignored for ``subset="test"``.

    ``disk_cache=True`` reads the stems from memory-mapped ``.npy`` files in
    ``cache_dir`` (default: :func:`toolkit.data.default_cache_dir`) holding
    exactly what is read, at ``sample_rate`` with ``channels``; a missing entry
    is decoded on first use (``toolkit data prepare`` fills the cache ahead).
    Without it, ``cache_dir`` keeps the file's channels.
    """

    label = "dataset"  # how error messages name the part, e.g. "datasets.musdb"

    def __init__(self, root=None, subset="train", split="train", is_wav=None, sample_rate=44100, channels=1,
                 segment_seconds=3.0, segments_per_epoch=1000, random_segments=True, seed=0, augment_gain=False,
                 augment_channel_swap=False, augment_remix=False, cache_dir=None, disk_cache=False):
        if channels not in (1, 2):
            raise UserError(f"{self.label}: channels must be 1 or 2, got {channels!r}")
        if segment_seconds is None and random_segments:
            raise UserError(f"{self.label}: random_segments needs segment_seconds; set one or use random_segments=False")
        if segment_seconds is not None and segment_seconds <= 0:
            raise UserError(f"{self.label}: segment_seconds must be positive, got {segment_seconds}")
        if random_segments and (segments_per_epoch is None or segments_per_epoch < 1):
            raise UserError(f"{self.label}: segments_per_epoch must be >= 1, got {segments_per_epoch}")
        self.root = resolve_root(root)
        db = open_db(self.root, subset, split if subset == "train" else None, is_wav)
        self.tracks = [track_ref(t) for t in db.tracks]
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.segment_seconds = None if segment_seconds is None else float(segment_seconds)
        self.segment = None if segment_seconds is None else int(round(segment_seconds * self.sample_rate))
        self.segments_per_epoch = segments_per_epoch
        self.random_segments = random_segments
        self.seed = int(seed)
        self.augment_gain = augment_gain
        self.augment_channel_swap = augment_channel_swap
        self.augment_remix = augment_remix
        self.disk_cache = bool(disk_cache)
        if self.disk_cache and cache_dir is None:
            cache_dir = default_cache_dir()
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.epoch = 0
        # lengths at the target rate, as torchaudio's resample makes them
        self.frames = [math.ceil(t.frames * self.sample_rate / t.rate) for t in self.tracks]
        self.items = None if random_segments else self._fixed_items()

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tracks]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.segments_per_epoch if self.random_segments else len(self.items)

    def _fixed_items(self) -> list[tuple[int, int]]:
        if self.segment is None:
            return [(t, 0) for t in range(len(self.tracks))]
        items = [(t, start) for t, frames in enumerate(self.frames) for start in range(0, max(frames, 1), self.segment)]
        if self.segments_per_epoch is not None and len(items) > self.segments_per_epoch:
            keep = np.unique(np.linspace(0, len(items) - 1, self.segments_per_epoch).round().astype(int))
            items = [items[k] for k in keep]
        return items

    def _random_pick(self, rng: np.random.Generator) -> tuple[int, int]:
        track = int(rng.integers(len(self.tracks)))
        return track, int(rng.integers(0, max(0, self.frames[track] - self.segment) + 1))

    def _source(self, track: int, start: int, source: str) -> np.ndarray:
        """``(samples, channels as read)`` of one source, zero-padded to the segment length."""
        stems = self.track_stems(track)
        audio = stems[STEMS.index(source)]
        if self.segment is None:
            return np.array(audio, dtype=np.float32)
        piece = np.zeros((self.segment, audio.shape[1]), dtype=np.float32)
        part = audio[start:start + self.segment]
        piece[: len(part)] = part
        return piece

    def track_stems(self, track: int) -> np.ndarray:
        """``(5, samples, channels)`` of track ``track`` at ``sample_rate``: the experiment's channels with ``disk_cache``."""
        return track_stems(self.tracks[track], self.sample_rate, self.cache_dir, self.channels if self.disk_cache else None)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.random_segments:
            if self.augment_remix:
                picks = [self._random_pick(rng) for _ in SOURCES]
            else:
                picks = [self._random_pick(rng)] * len(SOURCES)
        else:
            picks = [self.items[index]] * len(SOURCES)
        sources = {name: self._source(track, start, name) for name, (track, start) in zip(SOURCES, picks)}
        for name, (track, _) in zip(SOURCES, picks):
            audio = sources[name]
            # the draw depends on the file, not on what is cached, so a disk cache of mono stems reads the same stream
            if self.augment_channel_swap and self.tracks[track].channels == 2 and rng.random() < 0.5:
                audio = audio[:, ::-1]
            if self.augment_gain:
                audio = audio * np.float32(rng.uniform(0.25, 1.25))
            sources[name] = to_channels(audio.T, self.channels).T
        instrumental = sources["drums"] + sources["bass"] + sources["other"]
        vocals = sources["vocals"]
        return {name: torch.from_numpy(np.ascontiguousarray(rearrange(x, "t c -> c t")))
                for name, x in (("mixture", instrumental + vocals), ("instrumental", instrumental), ("vocals", vocals))}
