"""Synthetic music: a generator of MUSDB18-HQ-shaped songs and the dataset that trains on them.

``synthesize(out, ...)`` writes a deterministic tree (``toolkit data synth``);
the ``synthetic`` dataset generates one into the cache on first use (keyed by
its arguments, one process at a time) and serves segments from it, so the
quickstart needs no download. ``style="alt"`` draws other voices and
instruments, for evaluation on material unlike the training songs;
``style="varied"`` draws from more presets than ``default`` (see ``songs.py``).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit import registry
from toolkit.data import STEMS
from toolkit.io_utils import exclusive_lock
from toolkit.paths import cache_dir
from toolkit.segments import SegmentDataset

from . import presets, songs
from .tree import SPLIT_IDS, STYLE_IDS, STYLES, SUBTYPES, manifest, prepare_out, to_stem_mp4, track_name, write_track

__all__ = ["STYLES", "SUBTYPES", "Synthetic", "generated_root", "render_track", "synthesize", "to_stem_mp4", "track_name"]

Progress = Callable[[int, int, str], None]


def render_track(rng: np.random.Generator, seconds: float, sample_rate: int, style: str = "default") -> dict[str, np.ndarray]:
    """One synthetic song in the named style: ``{stem: (samples, 2) float32}`` for every name in ``STEMS``.

    ``mixture`` is the float32 sum ``((drums + bass) + other) + vocals``.
    """
    return songs.render(rng, seconds, sample_rate, presets.STYLES[style])


def synthesize(out, tracks: int = 4, seconds: float = 8.0, sample_rate: int = 44100, seed: int = 0,
               test_tracks: int | None = None, style: str = "default", subtype: str = "FLOAT",
               progress: Progress | None = None) -> Path:
    """Write a synthetic MUSDB18-HQ tree under ``out`` and return its path.

    ``test_tracks`` defaults to ``max(1, tracks // 2)``. Re-running with the same
    arguments on an existing tree only fills in missing tracks (each track is
    written into a temporary folder and renamed, so a track folder that exists
    is complete); an existing tree made with other arguments, or a non-empty
    folder that is not a synth tree, raises ``UserError``. ``progress(done,
    total, track_name)`` is called after each track.
    """
    spec = manifest(tracks, seconds, sample_rate, seed, test_tracks, style, subtype)
    out = Path(out)
    prepare_out(out, spec)
    jobs = [("train", i) for i in range(spec["tracks"])] + [("test", i) for i in range(spec["test_tracks"])]
    for done, (split, index) in enumerate(jobs, 1):
        dest = out / split / track_name(split, index)
        if not all((dest / f"{stem}.wav").is_file() for stem in STEMS):
            rng = np.random.default_rng([seed, SPLIT_IDS[split], index, STYLE_IDS[style]])
            stems = render_track(rng, seconds, sample_rate, style)
            write_track(dest, stems, sample_rate, subtype)
        if progress is not None:
            progress(done, len(jobs), dest.name)
    return out


def generated_root(spec: dict) -> Path:
    """The cached tree ``synthesize(**spec)`` writes, generated on first use; parallel callers wait for one writer."""
    spec = dict(spec)
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_dir() / f"synthetic-{key}"
    done = root / ".complete"
    if done.exists():
        return root
    with exclusive_lock(cache_dir() / f".synthetic-{key}.lock"):
        if not done.exists():
            print(f"generating {spec.get('tracks')} + {spec.get('test_tracks')} synthetic songs into {root} (once)",
                  file=sys.stderr)
            synthesize(root, **spec)
            done.write_text(json.dumps(spec, sort_keys=True))
    return root


@registry.register("datasets", "synthetic")
class Synthetic(SegmentDataset):
    """Segments of generated songs (``root=None``: the cached tree of these arguments), or of ``root`` if given.

    ``songs`` / ``test_songs`` tracks of ``song_seconds`` at ``song_rate`` Hz from
    ``song_seed`` in ``style``; the other arguments are
    :class:`toolkit.segments.SegmentDataset`'s (``sample_rate`` is the rate the
    model trains at).
    """

    label = "datasets.synthetic"
    synthesize = staticmethod(synthesize)

    def __init__(self, root=None, subset="train", split="train", is_wav=None, sample_rate=44100, channels=1,
                 segment_seconds=3.0, segments_per_epoch=1000, random_segments=True, seed=0, augment_gain=False,
                 augment_channel_swap=False, augment_remix=False, cache_dir=None, disk_cache=False, songs: int = 96, test_songs: int = 6,
                 song_seconds: float = 12.0, song_rate: int = 44100, song_seed: int = 0, style: str = "default"):
        if root is None:
            root = generated_root({"tracks": songs, "test_tracks": test_songs, "seconds": song_seconds,
                                   "sample_rate": song_rate, "seed": song_seed, "style": style})
        super().__init__(root, subset, split, is_wav, sample_rate, channels, segment_seconds, segments_per_epoch,
                         random_segments, seed, augment_gain, augment_channel_swap, augment_remix, cache_dir, disk_cache)
