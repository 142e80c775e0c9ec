"""MUSDB18 (stem mp4) and MUSDB18-HQ (wav) from the user's own copy (Rafii et al. 2017)."""
from __future__ import annotations

from toolkit import registry
from toolkit.segments import SegmentDataset


@registry.register("datasets", "musdb")
class MUSDB(SegmentDataset):
    """MUSDB18 / MUSDB18-HQ segments from ``root`` (default: ``$MUSDB_PATH``).

    ``split`` is musdb's own train/valid split (14 validation songs) where the
    root holds MUSDB18's songs, else the last 20 % of the train songs by name.
    Items, augmentations and determinism: :class:`toolkit.segments.SegmentDataset`.
    """

    label = "datasets.musdb"
