"""Validation that represents the set, cheap previews, trackers that know the settings, checked sampler options."""
import warnings

import pytest
import torch

from conftest import REPO, assert_one_line_error, run_cli

TINY = REPO / "tests" / "tiny.gin"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked") / "run"
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--out", out,
                "--gin_param", "Experiment.loggers=['tensorboard', 'wandb']", "--gin_param", "VALIDATE_EVERY=2",
                "--gin_param", "PREVIEW_EVERY=4", "--gin_param", "VALIDATION_SEGMENTS_PER_SONG=2",
                "--gin_param", "VALIDATION_STEPS=3", "--gin_param", "FINAL_EVALUATION=True",
                check=0, env={"WANDB_MODE": "offline", "WANDB_SILENT": "false",
                              "TOOLKIT_CACHE": str(tmp_path_factory.getbasetemp() / "toolkit-cache")})
    return out, p


def tensorboard(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"audio": 0, "images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_validation_segments_come_from_every_song():
    from toolkit.validation import validation_indices

    class Valid:  # three songs of 10, 1 and 4 segments
        items = [(0, s) for s in range(10)] + [(1, 0)] + [(2, s) for s in range(4)]

        def __len__(self):
            return len(self.items)

    picks = validation_indices(Valid(), 2)
    assert [Valid.items[i] for i in picks] == [(0, 2), (0, 7), (1, 0), (2, 1), (2, 3)]
    assert validation_indices(Valid(), 2) == picks  # deterministic
    assert 0 not in validation_indices(Valid(), 3)  # the first segment (an intro) does not stand for the song


def test_validation_logs_sdr_sir_sar_and_the_console_shows_it(run):
    out, p = run
    scalars = tensorboard(out).Tags()["scalars"]
    assert {"valid/vocals_SDR", "valid/vocals_SIR", "valid/vocals_SAR"} <= set(scalars), scalars
    assert "step 2: validation vocal SDR" in p.stdout and "SIR" in p.stdout and "SAR" in p.stdout, p.stdout[-3000:]
    assert (out / "checkpoints" / "best.pt").is_file()


def test_previews_log_audio_and_spectrograms_every_k_steps(run):
    out, _ = run
    acc = tensorboard(out)
    assert "preview/vocals_estimate" in acc.Tags()["audio"]
    assert [e.step for e in acc.Audio("preview/vocals_estimate")] == [4]
    assert "preview/spectrograms" in acc.Tags()["images"]


def test_validation_and_preview_settings_reach_the_trainer(run):
    from toolkit.tracking import bindings

    out, _ = run
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    bound = bindings(state["config"])
    assert {k: bound[f"TrainConfig.{k}"] for k in ("validation_steps", "preview_steps", "validation_sampler",
                                                    "validation_segments_per_song", "preview_every")} == \
        {"validation_steps": 3, "preview_steps": 1, "validation_sampler": "ddim", "validation_segments_per_song": 2,
         "preview_every": 4}


def test_tensorboard_has_hparams_and_the_operative_config(run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, _ = run
    acc = tensorboard(out)
    assert "config/operative/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("config/operative/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "TrainConfig.lr" in text
    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["TRAIN_STEPS"].number_value == 4 and "TrainConfig.weight_decay" in hparams
    content = acc.SummaryMetadata("_hparams_/experiment").plugin_data.content
    metrics = [m.name.tag for m in plugin_data_pb2.HParamsPluginData.FromString(content).experiment.metric_infos]
    assert "test/vocals_SDR" in metrics and "valid/best_vocals_SDR" in metrics, metrics
    assert "test/vocals_SDR" in acc.Tags()["scalars"]


def test_wandb_gets_the_bindings_and_warns_nothing(run):
    out, p = run
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    record = b"".join(f.read_bytes() for f in runs[0].glob("run-*.wandb"))  # the offline run's records
    assert b"TrainConfig.weight_decay" in record and b"VALIDATION_STEPS" in record
    assert "deprecated" not in (p.stderr + p.stdout).lower(), p.stderr


def test_wandb_run_is_named_after_the_experiment_and_raises_no_deprecation(tmp_path, monkeypatch, capfd):
    from diffmsst_plugins.loggers.wandb import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "false")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        logger = WandbLogger(run_dir=tmp_path)
        logger.config("quickstart", {"SEED": 0, "TrainConfig.lr": 2e-4}, "SEED = 0")
        logger.scalars({"loss/total": 1.0}, 1)
        logger.hparams({"SEED": 0}, {"test/vocals_SDR": 1.5})
        assert logger.run.name == "quickstart" and logger.run.config["TrainConfig.lr"] == 2e-4
        assert logger.run.summary["test/vocals_SDR"] == 1.5
        logger.close()
    out, err = capfd.readouterr()
    assert "deprecated" not in (out + err).lower(), err


def test_bindings_flatten_an_operative_config():
    from toolkit.tracking import bindings

    text = ("# Macros:\nSEED = 0\nNAME = 'x'\nSTEPS = %OTHER\nOTHER = 5\nTrainConfig.steps = %STEPS\n\n# Parameters for TrainConfig:\nTrainConfig.lr = 0.0002\n"
            "TrainConfig.betas = (0.9,\n    0.999)\nExperiment.train = @TrainConfig()\nExperiment.sampling_steps = None\n")
    assert bindings(text) == {"SEED": 0, "NAME": "x", "STEPS": 5, "OTHER": 5, "TrainConfig.steps": 5, "TrainConfig.lr": 0.0002, "TrainConfig.betas": "(0.9, 0.999)",
                              "Experiment.train": "@TrainConfig()", "Experiment.sampling_steps": "None"}


def test_an_option_the_sampler_does_not_take_is_a_one_line_error(run, tmp_path):
    out, _ = run
    song = tmp_path / "song.wav"
    song.write_bytes(b"not audio at all")  # would fail differently if it were read first
    p = run_cli("separate", song, "--checkpoint", out / "checkpoints" / "last.pt", "--sampler", "ddpm", "--eta", "0.5",
                "--out", tmp_path / "sep")
    assert_one_line_error(p, 2, "sampler 'ddpm' takes no option eta; its options: clip_x0")


def test_experiment_sampler_options_are_checked_before_training(tmp_path):
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", "SAMPLER='ddpm'",
                "--gin_param", "Experiment.sampler_options={'eta': 0.5}", "--out", tmp_path / "x")
    assert_one_line_error(p, 2, "sampler 'ddpm' takes no option eta")
    assert not (tmp_path / "x").exists()


def test_validation_and_preview_steps_are_checked(tmp_path):
    for binding, needle in (("VALIDATION_STEPS=5000", "VALIDATION_STEPS"), ("PREVIEW_STEPS=0", "PREVIEW_STEPS"),
                            ("VALIDATION_SAMPLER='ddmi'", "did you mean 'ddim'")):
        p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--gin_param", binding, "--out", tmp_path / "x")
        assert_one_line_error(p, 2, needle)
