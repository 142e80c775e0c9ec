"""Pointing a run at data: --data ROOT and $MUSDB_PATH reach training, validation and the final evaluation;
bad roots are refused before anything trains."""
import json
import shutil

import pytest
import torch

from conftest import REPO, assert_one_line_error, run_cli
from diffmsst_plugins.datasets import synthetic as synth

QUICKSTART = REPO / "experiments" / "quickstart.gin"
TINY = REPO / "tests" / "tiny.gin"
UNSEEN = ("Experiment.evaluation_sets = {'unseen': {'dataset': 'synthetic', 'songs': 1, 'test_songs': 1, "
          "'song_seconds': 2.0, 'song_rate': 22050, 'style': 'alt'}}")
EVAL = ["--gin_param", "FINAL_EVALUATION=True", "--gin_param", "TRAIN_STEPS=2", "--gin_param", "CHECKPOINT_EVERY=0",
        "--gin_param", UNSEEN]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synth.synthesize(tmp_path_factory.mktemp("data") / "my root", tracks=3, test_tracks=1, seconds=2.0,
                            sample_rate=22050, seed=7)


def _check_run_used(out, root, source):
    run = json.loads((out / "run.json").read_text())
    assert run["data"] == {"dataset": "synthetic", "root": str(root), "source": source}
    assert f"synthetic.root = {str(root)!r}" in (out / "operative_config.gin").read_text()
    meta = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["meta"]
    assert meta["parts"]["dataset"]["root"] == str(root)
    results = json.loads((out / "results.json").read_text())
    assert sorted(results) == (["test"] if source == "--data" else ["test", "unseen"])
    assert results["test"]["tracks"] == 1


def test_data_flag_trains_validates_and_evaluates_the_quickstart_on_root(root, tmp_path):
    out = tmp_path / "run"
    p = run_cli("run", QUICKSTART, TINY, *EVAL, "--data", root, "--out", out, env={"COLUMNS": "400"}, check=0)
    assert "(from --data)" in p.stdout and str(root.name) in p.stdout
    _check_run_used(out, root, "--data")
    assert (out / "eval" / "test").is_dir() and not (out / "eval" / "unseen").exists()


def test_musdb_path_points_a_run_at_root(root, tmp_path):
    out = tmp_path / "run"
    p = run_cli("run", QUICKSTART, TINY, *EVAL, "--out", out, env={"MUSDB_PATH": str(root), "COLUMNS": "400"}, check=0)
    assert "(from MUSDB_PATH)" in p.stdout
    _check_run_used(out, root, "MUSDB_PATH")


def _copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / "copy")


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "no MUSDB18 tracks"),
    ("no test", "no tracks in"),
    ("no train", "no tracks in"),
    ("missing stem", "lacks vocals.wav"),
    ("unreadable", "truncated or corrupt"),
])
def test_bad_roots_are_refused_before_training(case, message, root, tmp_path):
    bad = tmp_path / "missing"
    if case == "empty":
        bad.mkdir()
    elif case != "missing":
        bad = _copy(root, tmp_path)
        if case == "no test":
            shutil.rmtree(bad / "test")
        elif case == "no train":
            shutil.rmtree(bad / "train")
        elif case == "missing stem":
            (bad / "test" / "synth_test_000" / "vocals.wav").unlink()
        else:
            path = bad / "test" / "synth_test_000" / "bass.wav"
            path.write_bytes(path.read_bytes()[:100])
    out = tmp_path / "run"
    p = run_cli("run", QUICKSTART, TINY, *EVAL, "--data", bad, "--out", out)
    assert_one_line_error(p, 2, message)
    assert not (out / "checkpoints").exists()


def test_sweep_data_binds_the_root_for_every_cell(root, tmp_path):
    from toolkit.run_data import data_bindings

    extra, info = data_bindings([QUICKSTART], [], [], str(root))
    assert extra == [f"datasets.synthetic.root = {str(root)!r}", "Experiment.evaluation_sets = {}"]
    assert info == {"dataset": "synthetic", "root": str(root), "source": "--data"}
    # a root bound in gin wins over MUSDB_PATH, never over --data
    bound = [f"datasets.synthetic.root = {str(root)!r}"]
    assert data_bindings([QUICKSTART], bound, [], None) == ([], None)
    p = run_cli("sweep", QUICKSTART, TINY, "--grid", "SEED=0", "--data", tmp_path / "nope", "--out", tmp_path / "sw")
    assert_one_line_error(p, 2, "does not exist")
