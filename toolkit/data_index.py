"""Global data indices: item ``g`` of an endless stream of segments.

Item ``g`` is item ``g % len(ds)`` of epoch ``g // len(ds)``, and a
dataset's item depends only on ``(seed, epoch, index)``; so the batch of any
step can be rebuilt after a resume without replaying the loader.
"""
from __future__ import annotations


def fetch(dataset, g: int):
    n = len(dataset)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(g // n)
    return dataset[g % n]
