"""Training runs: every experiment builds and trains a tiny step; exact resume; safety."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gin
import pytest
import torch

from conftest import REPO, assert_one_line_error, run_cli, wait_until
from toolkit.checkpoint import step_files

EXPERIMENTS = sorted((REPO / "experiments").glob("*.gin"))
TINY = REPO / "tests" / "tiny.gin"
RUNNABLE = [e for e in EXPERIMENTS if not e.name.startswith("ablation")]


@pytest.mark.parametrize("gin_file", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_parses_and_builds(gin_file):
    from toolkit import config, parts
    from toolkit.runner import build_experiment

    config.parse([gin_file])
    try:
        exp = build_experiment()
        assert exp.train.steps >= 1
        # every part, at the size the file sets, from the data settings it binds (no data read)
        data = SimpleNamespace(root="ROOT", channels=gin.query_parameter(f"datasets.{exp.dataset}.channels"),
                               sample_rate=config.macro("SAMPLE_RATE"), segment_seconds=config.macro("SEGMENT_SECONDS"))
        built = parts.build_parts(parts.experiment_records(exp, data))
        assert built.loss_fn is not None and sum(p.numel() for p in built.net.parameters()) > 0
        built.engine(built.net, device=torch.device("cpu"), precision="fp32")
    finally:
        gin.clear_config()


def test_quickstart_v1_part_restores_the_earlier_quickstart():
    """gin/train/quickstart_v1.gin restores the first quickstart's settings (compared in docs/results.md)."""
    from toolkit import config
    from toolkit.runner import build_experiment

    config.parse([REPO / "experiments" / "quickstart.gin", REPO / "gin" / "train" / "quickstart_v1.gin"])
    try:
        exp = build_experiment()
        assert exp.train.steps == 1200 and exp.train.lr == 1e-3
        assert gin.query_parameter("datasets.synthetic.songs") == 24
        assert gin.query_parameter("losses.counterfactual.vocal_space") == "normalized"
        assert gin.query_parameter("backbones.attention_unet.cond_skip") is False
    finally:
        gin.clear_config()


@pytest.mark.parametrize("gin_file", RUNNABLE, ids=lambda p: p.name)
def test_every_experiment_trains_a_tiny_run(gin_file, tmp_path):
    out = tmp_path / "run"
    run_cli("run", gin_file, TINY, "--out", out, check=0)
    for name in ("operative_config.gin", "config.gin", "run.json", "checkpoints/last.pt", "checkpoints/step_4.pt"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    for key in ("model", "ema", "optimizer", "scheduler", "step", "rng", "config", "version"):
        assert key in state
    assert state["step"] == 4
    assert "Experiment.prediction" in state["config"]


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _newest_step(run) -> int:
    files = step_files(run / "checkpoints") if (run / "checkpoints").is_dir() else []
    return int(files[-1].stem.split("_")[1]) if files else -1


def _max_rel_diff(a, b):
    return max(((a[k].float() - b[k].float()).abs().max() / (b[k].float().abs().max() + 1e-12)).item() for k in a)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_and_resume_matches_uninterrupted(workers, tmp_path):
    args = ["--gin_param", "TRAIN_STEPS=10", "--gin_param", "CHECKPOINT_EVERY=1",
            "--gin_param", f"TrainConfig.num_workers={workers}"]
    ref = tmp_path / "ref"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, *args, "--out", ref, check=0)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "toolkit.cli", "run", str(REPO / "experiments" / "quickstart.gin"), str(TINY), *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # any step >= 4: with CHECKPOINT_EVERY=1 rotation may delete step_4.pt before a poll sees it
    wait_until(lambda: _newest_step(out) >= 4, proc, "a checkpoint of step 4 or later")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoints" / "step_10.pt").exists(), "the run finished before it could be killed"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, *args, "--out", out, "--resume", check=0)
    a, b = torch.load(out / "checkpoints" / "last.pt", weights_only=True), torch.load(ref / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 10
    assert a["history"] == pytest.approx(b["history"], rel=1e-5)
    assert _max_rel_diff(a["model"], b["model"]) < 1e-5
    assert _max_rel_diff(a["ema"]["model"], b["ema"]["model"]) < 1e-5


def test_used_out_dir_without_resume_exits_2_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--out", out, check=0)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*") if p.is_file()}
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--out", out)
    assert_one_line_error(p, 2, "--resume")
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "toolkit.cli", "run", str(REPO / "experiments" / "quickstart.gin"), str(TINY),
           "--gin_param", "TRAIN_STEPS=100000", "--gin_param", "CHECKPOINT_EVERY=1", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _newest_step(out) >= 1, proc, "a first checkpoint")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] >= 1
    assert "Traceback" not in err and "--resume" in err


def test_validation_logs_audio_and_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", "VALIDATE_EVERY=2", "--out", out, check=0)
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"audio": 0, "images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "loss/total" in tags["scalars"] and "valid/vocals_SDR" in tags["scalars"]
    assert any("vocals_estimate" in t for t in tags["audio"])
    assert any("spectrograms" in t for t in tags["images"])
    assert (out / "checkpoints" / "best.pt").is_file()


NAN_LOSS = '''
import torch
from toolkit import registry

@registry.register("losses", "always_nan")
class AlwaysNaN:
    """A loss that is always NaN (tests the divergence guard)."""
    def __call__(self, net, diffusion, batch):
        raise FloatingPointError("non-finite loss (total=nan)")
'''


def test_nonfinite_loss_stops_with_clear_error(tmp_path):
    plugin = tmp_path / "nan_loss.py"
    plugin.write_text(NAN_LOSS)
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--plugin", plugin,
                "--gin_param", "Experiment.loss='always_nan'", "--gin_param", "TrainConfig.max_nonfinite=2",
                "--out", tmp_path / "run")
    assert_one_line_error(p, 2, "diverged")


def test_wandb_offline_files(tmp_path):
    out = tmp_path / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", "Experiment.loggers=['tensorboard', 'wandb']",
            "--out", out, check=0, env={"WANDB_MODE": "offline"})
    assert list((out / "wandb").glob("offline-run-*")), list(out.rglob("*"))[:20]


def test_bad_values_are_one_line_errors(tmp_path, capfd):
    from test_bad_inputs import invoke

    q = REPO / "experiments" / "quickstart.gin"
    for binding, needle in (("SAMPLING_STEPS=5000", "SAMPLING_STEPS"), ("SAMPLING_STEPS=0", "SAMPLING_STEPS"),
                            ("PREDICTION='z'", "PREDICTION"), ("BATCH_SIZE=0", "batch_size"),
                            ("SCHEDULE='cosin'", "did you mean 'cosine'")):
        p = invoke(["run", q, TINY, "--gin_param", binding, "--out", tmp_path / "x"], capfd)  # in this process: faster
        assert_one_line_error(p, 2, needle)
        assert not (tmp_path / "x").exists()


def test_final_evaluation_scores_test_and_unseen_sets(tmp_path):
    out = tmp_path / "run"
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", "FINAL_EVALUATION=True",
                "--gin_param", "Experiment.evaluation_sets={'unseen': {'dataset': 'synthetic', 'songs': 1, "
                "'test_songs': 1, 'song_seconds': 2.0, 'song_rate': 22050, 'song_seed': 3, 'style': 'alt'}}", "--out", out, check=0)
    import json

    results = json.loads((out / "results.json").read_text())
    for key in ("test", "unseen"):
        res = results[key]
        assert res["tracks"] == 1
        gain = res["model"]["vocals"]["SDR"] - res["baseline"]["vocals"]["SDR"]
        assert abs(res["vocal_sdr_gain"] - gain) < 1e-9
        assert (out / "eval" / key / "scores").is_dir() and list((out / "eval" / key / "estimates").rglob("vocals.wav"))
    assert "vocal gain over the mixture baseline: cSDR" in p.stdout and (out / "results.md").is_file()
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["machine"]["cpu_capability"] and run_json["precision"] in ("bf16", "fp32")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_each_prediction_target_trains_records_and_separates(prediction, tmp_path):
    import numpy as np

    from toolkit import Separator

    out = tmp_path / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", f"PREDICTION='{prediction}'",
            "--gin_param", "TRAIN_STEPS=2", "--out", out, check=0)
    ckpt = out / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["meta"]["parts"]["sampling"]["prediction"] == prediction
    assert f"PREDICTION = '{prediction}'" in state["config"]
    sep = Separator.from_checkpoint(ckpt)
    assert sep.engine.diffusion.prediction == prediction
    audio = np.random.default_rng(0).standard_normal((1, 11025)).astype(np.float32) * 0.1
    vocals, inst = sep(audio, 22050)
    assert torch.isfinite(vocals).all() and torch.allclose(vocals + inst, torch.from_numpy(audio), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory):
    """Two train songs and one 2-s test song, as MUSDB18-HQ wav and as MUSDB18 stem mp4."""
    from diffmsst_plugins.datasets import synthetic as synth

    base = tmp_path_factory.mktemp("tiny")
    wav = synth.synthesize(base / "wav", tracks=2, test_tracks=1, seconds=2.0, seed=5)
    return {"wav": wav, "stem mp4": synth.to_stem_mp4(wav, base / "mp4")}


@pytest.mark.parametrize("form", ["wav", "stem mp4"])
def test_base_config_trains_separates_and_evaluates_at_full_size(form, tiny_roots, tmp_path):
    """experiments/diffmsst_base.gin as shipped (model, rate, workers, disk cache), shortened only in steps,
    batch, segment length and sampling steps."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    run_cli("run", REPO / "experiments" / "diffmsst_base.gin", "--data", tiny_roots[form], "--out", out,
            "--gin_param", "TRAIN_STEPS=2", "--gin_param", "BATCH_SIZE=1", "--gin_param", "SEGMENT_SECONDS=1.0",
            "--gin_param", "SAMPLING_STEPS=1", "--gin_param", "CHECKPOINT_EVERY=0",
            "--gin_param", "Experiment.loggers=[]", env={"TOOLKIT_CACHE": str(cache)}, check=0)
    run = json.loads((out / "run.json").read_text())
    assert run["training"]["steps"] == 2 and run["parameters"] > 15e6  # the base U-Net
    assert run["data"]["root"] == str(tiny_roots[form])
    assert run["evaluation"]["test"]["tracks"] == 1 and run["evaluation"]["test"]["seconds_audio"] == pytest.approx(2.0, abs=0.1)
    assert (out / "eval" / "test").is_dir()
    assert len(list((cache / "audio").glob("*.npy"))) == 2  # the base config reads both train songs from the disk cache


def test_psa_target_and_unrolled_fine_tuning_train_and_are_recorded(tmp_path):
    out = tmp_path / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", "TARGET='psa'",
            "--gin_param", "UNROLL_STEPS=2", "--gin_param", "TrainConfig.unroll_fraction=0.5",
            "--gin_param", "TRAIN_STEPS=2", "--out", out, check=0)  # step 1 of 2 is unrolled
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert "TARGET = 'psa'" in state["config"] and "UNROLL_STEPS = 2" in state["config"] and state["step"] == 2
    assert len(state["history"]) == 2 and torch.isfinite(torch.tensor(state["history"])).all()
