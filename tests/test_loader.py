"""The training DataLoader: the same batches with any number of workers, resumable at any step."""
import pytest
import torch

from diffmsst_plugins.datasets import synthetic as synth
from toolkit import registry
from toolkit.loader import SlotBatches, batch_loader


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = synth.synthesize(tmp_path_factory.mktemp("loader") / "root", tracks=3, test_tracks=1, seconds=1.0, seed=2)
    return registry.get("datasets", "musdb")(root=root, segment_seconds=0.25, segments_per_epoch=5, seed=3,
                                             augment_gain=True, augment_remix=True, channels=2)


def _batches(dataset, workers, start=0, steps=4):
    sampler = SlotBatches(start, steps, batch_size=3, grad_accum=2)
    return list(batch_loader(dataset, sampler, workers, torch.device("cpu")))


def test_same_batches_with_0_1_and_4_workers(dataset):
    reference = _batches(dataset, 0)
    assert len(reference) == 8 and reference[0]["mixture"].shape == (3, 2, 11025)
    # 8 micro-batches of 3 items: 24 items over epochs of 5, so set_epoch is exercised
    assert [int(b["index"][0]) for b in reference] == list(range(0, 24, 3))
    assert not torch.equal(reference[0]["vocals"], reference[2]["vocals"])
    for workers in (1, 4):
        got = _batches(dataset, workers)
        assert len(got) == len(reference)
        for a, b in zip(got, reference):
            for key in ("mixture", "instrumental", "vocals", "index"):
                assert torch.equal(a[key], b[key]), (workers, key)


def test_a_loader_opened_at_a_later_step_reads_what_the_full_run_read(dataset):
    full = _batches(dataset, 0)
    resumed = _batches(dataset, 2, start=2)
    assert len(resumed) == 4
    for a, b in zip(resumed, full[4:]):
        assert torch.equal(a["mixture"], b["mixture"]) and torch.equal(a["index"], b["index"])


def test_ranks_read_disjoint_batches():
    a = list(SlotBatches(0, 2, batch_size=2, world=2, rank=0))
    b = list(SlotBatches(0, 2, batch_size=2, world=2, rank=1))
    assert a == [[0, 1], [4, 5]] and b == [[2, 3], [6, 7]]
