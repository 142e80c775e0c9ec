"""Every checkpoint load goes through toolkit.checkpoint, with an explicit map_location and weights_only=True."""
import re

import pytest
import torch

from conftest import REPO

SOURCES = sorted((REPO / "toolkit").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py")) + \
    sorted((REPO / "scripts").rglob("*.py"))


def test_torch_load_lives_only_in_toolkit_checkpoint():
    assert len(SOURCES) > 20
    found = [str(p.relative_to(REPO)) for p in SOURCES if re.search(r"\btorch\.load\(", p.read_text())]
    assert found == ["toolkit/checkpoint.py"], found
    text = (REPO / "toolkit" / "checkpoint.py").read_text()
    calls = re.findall(r"\btorch\.load\(([^)]*)\)", text)
    assert calls and all("weights_only=True" in c and "map_location=map_location" in c for c in calls), calls


def test_every_checkpoint_load_names_its_device():
    calls = [(p.relative_to(REPO), m.group(0)) for p in SOURCES
             for m in re.finditer(r"\b(?:checkpoint\.load|latest_valid)\([^\n]*", p.read_text())]
    assert calls, "no checkpoint loads found: the scanner is broken"
    assert all("map_location=" in call for _, call in calls), calls


def test_load_requires_a_map_location(tmp_path):
    from toolkit import checkpoint

    with pytest.raises(TypeError):
        checkpoint.load(tmp_path / "x.pt")  # noqa: the missing keyword is the point


def test_a_checkpoint_loads_onto_the_requested_device(tmp_path):
    from toolkit import checkpoint

    state = {k: torch.zeros(2) if k == "model" else {} for k in checkpoint.REQUIRED_KEYS}
    state.update(step=3, config="", version="0")
    checkpoint.save(state, tmp_path, 3)
    loaded = checkpoint.load(tmp_path / "last.pt", map_location="meta")
    assert loaded["model"].device.type == "meta" and loaded["step"] == 3
