"""Training batches from a ``torch.utils.data.DataLoader`` with worker processes, the same with any number of them.

Batch slot ``s = (step * grad_accum + micro) * world + rank`` holds the global
items ``s * batch_size ... s * batch_size + batch_size - 1``, and item ``g``
depends only on ``(seed, g)`` (:func:`toolkit.data_index.fetch`). Workers
therefore change when a batch is read, never what it holds, and a resumed run
opens the loader at its step and reads what the uninterrupted run read.
"""
from __future__ import annotations

import numpy as np
import torch

from .data_index import fetch

KEYS = ("mixture", "instrumental", "vocals")


class GlobalItems(torch.utils.data.Dataset):
    """Item ``g`` of the endless stream of ``dataset``: ``{mixture, instrumental, vocals}: (channels, samples)``, ``index``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, g: int) -> dict:
        return {**fetch(self.dataset, int(g)), "index": int(g)}


class SlotBatches(torch.utils.data.Sampler):
    """Lists of global indices, one per (step, micro) of this rank from ``start_step`` to ``steps``."""

    def __init__(self, start_step: int, steps: int, batch_size: int, grad_accum: int = 1, world: int = 1, rank: int = 0):
        self.start_step, self.steps = int(start_step), int(steps)
        self.batch_size, self.grad_accum, self.world, self.rank = batch_size, grad_accum, world, rank

    def first_index(self, step: int, micro: int) -> int:
        # DDP: rank r takes the r-th of `world` consecutive batches, so ranks never train on the same segments
        return ((step * self.grad_accum + micro) * self.world + self.rank) * self.batch_size

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            for micro in range(self.grad_accum):
                g0 = self.first_index(step, micro)
                yield list(range(g0, g0 + self.batch_size))

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.grad_accum


def collate(items: list[dict]) -> dict:
    """``{mixture, instrumental, vocals}: (batch, channels, samples)`` and ``index: (batch,)``."""
    # numpy stacking: torch.stack in the main process waits for torch's idle intra-op threads
    batch = {k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in KEYS}
    batch["index"] = torch.tensor([it["index"] for it in items])
    return batch


def batch_loader(dataset, sampler: SlotBatches, num_workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    """A DataLoader of ``sampler``'s batches: ``num_workers`` processes (0 = in this process), pinned and kept alive on CUDA."""
    on_cuda = torch.device(device).type == "cuda"
    extra = {"prefetch_factor": 4, "persistent_workers": on_cuda} if num_workers > 0 else {}
    return torch.utils.data.DataLoader(GlobalItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                                       collate_fn=collate, pin_memory=on_cuda, **extra)
