"""Bad input never costs a traceback or a file: every command, every kind of mistake.

Each case checks: exit status 2 (1 for a bug), exactly one line on stderr
that names the culprit, no traceback, and that nothing was written: the
test's folder (where every ``--out`` points) and the shared inputs
(checkpoints, audio) are byte- and mtime-identical afterwards; an output
folder that was absent may at most appear empty.

Cases run in this process through ``toolkit.cli.main`` (a subprocess costs
~3 s of imports per case on a small machine); stderr is captured at the
file-descriptor level and warnings are printed as a fresh interpreter
would. ``test_real_process_*`` repeats one case per command in a real
subprocess, and the read-only and 10-minute tests need one anyway.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import gin
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, assert_one_line_error, run_cli

QUICK = REPO / "experiments" / "quickstart.gin"
TINY = REPO / "tests" / "tiny.gin"
RATE = 22050  # the tiny run's model rate


# ------------------------------------------------------------------ shared artefacts

def trained_checkpoint(base: Path) -> Path:
    """``RUN/checkpoints/last.pt`` of a tiny quickstart run, trained once per session (also used by test_crash_safety)."""
    run = base / "reliability-run"
    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.exists():
        shutil.rmtree(run, ignore_errors=True)
        run_cli("run", QUICK, TINY, "--out", run, check=0, env={"TOOLKIT_CACHE": str(base / "toolkit-cache")})
    return ckpt


def tone(rate: int, channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    """(samples, channels) float32: a sine plus noise, different per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(max(1, int(rate * seconds))) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 55 * c) * t) + 0.05 * rng.standard_normal(t.shape)
                     for c in range(channels)], axis=1).astype(np.float32)


class Evil:
    """Unpickling this runs a shell command: ``weights_only`` loading must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="session")
def art(tmp_path_factory):
    """Inputs shared by every case: a checkpoint, a MUSDB root, and one file per kind of damage."""
    base = tmp_path_factory.getbasetemp()
    ckpt = trained_checkpoint(base)
    d = tmp_path_factory.mktemp("bad-inputs")
    good = d / "good.wav"
    sf.write(good, tone(RATE, 1, 1.0), RATE, subtype="PCM_16")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("these are words, not samples\n")
    (d / "no_audio").mkdir()
    (d / "no_audio" / "notes.txt").write_text("no audio here")
    data = good.read_bytes()
    (d / "truncated.wav").write_bytes(data[: len(data) // 2])
    for name, value, at in (("nan", np.nan, 100), ("inf", np.inf, RATE // 2)):
        audio = tone(RATE, 1, 1.0)
        audio[at] = value
        sf.write(d / f"{name}.wav", audio, RATE, subtype="FLOAT")
    raw = ckpt.read_bytes()
    (d / "half.pt").write_bytes(raw[: len(raw) // 2])
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    marker = d / "CODE_RAN"
    torch.save({"model": Evil(marker)}, d / "evil.pt")
    torch.save({"model": {}, "step": 3}, d / "not_toolkit.pt")
    state = torch.load(ckpt, weights_only=True)
    state["meta"]["parts"]["backbone"]["kwargs"]["base_channels"] = 16  # the weights are for 8
    torch.save(state, d / "incompatible.pt")
    state["meta"]["parts"]["backbone"]["kwargs"]["base_channels"] = 7  # not a multiple of the group count
    torch.save(state, d / "unbuildable.pt")
    (d / "syntax.gin").write_text("SEED = 0\nSEED = = 3\n")
    (d / "bad_plugin.py").write_text("from toolkit import registry\ndef broken(:\n")
    root = d / "musdb"
    code = run_in_process(["data", "synth", "--out", root, "--tracks", "1", "--test-tracks", "1", "--seconds", "1",
                           "--sample-rate", str(RATE)])
    assert code == 0
    return SimpleNamespace(dir=d, ckpt=ckpt, run=ckpt.parent.parent, good=good, root=root, marker=marker)


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


# ------------------------------------------------------------------ running and checking

def _print_warnings_like_a_fresh_interpreter():
    warnings.resetwarnings()
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line))


def run_in_process(argv) -> int:
    from toolkit.cli import main

    with warnings.catch_warnings():
        _print_warnings_like_a_fresh_interpreter()
        return main([str(a) for a in argv])


def invoke(argv, capfd, check=None) -> SimpleNamespace:
    """``toolkit ARGV`` in this process: an object like ``subprocess.CompletedProcess`` (``check``: as ``run_cli``'s)."""
    capfd.readouterr()
    code = run_in_process(argv)
    out, err = capfd.readouterr()
    if check is not None:
        assert code == check, f"exit {code}\nstderr:\n{err[-3000:]}"
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def snapshot(root: Path) -> dict | None:
    """{relative path: 'dir' | (size, mtime_ns)} for everything under ``root`` (None when absent)."""
    root = Path(root)
    if not root.exists():
        return None
    if root.is_file():
        st = root.stat()
        return {".": (st.st_size, st.st_mtime_ns)}
    return {str(p.relative_to(root)): "dir" if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def assert_nothing_written(before: dict, after: dict, allowed_new_empty_dir: str = "out") -> None:
    """Identical, except that the absent output folder may now exist, empty."""
    extra = {k: v for k, v in after.items() if k not in before}
    if extra == {allowed_new_empty_dir: "dir"}:
        after = {k: v for k, v in after.items() if k != allowed_new_empty_dir}
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"


def temp_files(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if ".tmp" in p.name or p.name.startswith(".write-test")]


def assert_one_line(proc, code: int, needles) -> None:
    assert_one_line_error(proc, code)
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in: {proc.stderr.strip()}"


# ------------------------------------------------------------------ the cases

@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable  # (art, tmp) -> list; --out points at tmp / "out"
    needles: tuple  # strings the error line must contain (may use {dir} and {tmp})
    code: int = 2


def _sep(name, *extra):
    return lambda a, t: ["separate", a.dir / name, "--checkpoint", a.ckpt, "--out", t / "out", *extra]


def _sep_ckpt(ckpt):
    return lambda a, t: ["separate", a.good, "--checkpoint", ckpt(a, t), "--out", t / "out"]


def _eval_ckpt(ckpt):
    return lambda a, t: ["evaluate", "--checkpoint", ckpt(a, t), "--root", a.root, "--out", t / "out", "--no-baseline"]


# every command that writes, without its --out
WRITERS = [
    ("run", lambda a, t: ["run", QUICK, TINY]),
    ("separate", lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt]),
    ("evaluate", lambda a, t: ["evaluate", "--checkpoint", a.ckpt, "--root", a.root]),
    ("sweep", lambda a, t: ["sweep", QUICK, TINY, "--grid", "SEED=0,1"]),
    ("data-synth", lambda a, t: ["data", "synth", "--tracks", 1, "--seconds", 1]),
]

CASES = [
    # audio given to `separate`
    Case("separate-missing-file", lambda a, t: ["separate", t / "missing.wav", "--checkpoint", a.ckpt, "--out", t / "out"],
         ("missing.wav", "no such file")),
    Case("separate-folder-without-audio", _sep("no_audio"), ("no_audio", "no audio files")),
    Case("separate-zero-byte-file", _sep("empty.wav"), ("empty.wav", "empty file")),
    Case("separate-truncated-wav", _sep("truncated.wav"), ("truncated.wav", "truncated")),
    Case("separate-text-renamed-wav", _sep("text.wav"), ("text.wav", "not a readable audio file")),
    Case("separate-nan-samples", _sep("nan.wav"), ("nan.wav", "NaN")),
    Case("separate-inf-samples", _sep("inf.wav"), ("inf.wav", "infinite")),
    # separation options
    Case("separate-zero-steps", lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt, "--steps", 0, "--out", t / "out"],
         ("--steps",)),
    Case("separate-more-steps-than-timesteps",
         lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt, "--steps", 5000, "--out", t / "out"], ("--steps", "1..1000")),
    Case("separate-segment-shorter-than-frame",
         lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt, "--segment", 0.001, "--out", t / "out"], ("--segment", "STFT")),
    Case("separate-overlap-one", lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt, "--overlap", 1, "--out", t / "out"],
         ("--overlap",)),
    Case("separate-zero-batch", lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt, "--batch-size", 0, "--out", t / "out"],
         ("--batch-size",)),
    Case("separate-unknown-sampler",
         lambda a, t: ["separate", a.good, "--checkpoint", a.ckpt, "--sampler", "ddmi", "--out", t / "out"], ("did you mean 'ddim'",)),
    Case("separate-no-arguments", lambda a, t: ["separate"], ("required",)),
    # checkpoints, for `separate` and `evaluate`
    *[Case(f"{cmd}-checkpoint-{kind}", build(ckpt), needles)
      for cmd, build in (("separate", _sep_ckpt), ("evaluate", _eval_ckpt))
      for kind, ckpt, needles in (
          ("missing", lambda a, t: t / "none.pt", ("none.pt", "no such checkpoint")),
          ("truncated", lambda a, t: a.dir / "half.pt", ("half.pt", "cut short")),
          ("random-bytes", lambda a, t: a.dir / "random.pt", ("random.pt", "not a PyTorch")),
          ("a-wav-file", lambda a, t: a.good, ("good.wav", "not a PyTorch")),
          ("not-from-toolkit", lambda a, t: a.dir / "not_toolkit.pt", ("not_toolkit.pt", "missing keys")),
          ("incompatible-config", lambda a, t: a.dir / "incompatible.pt", ("incompatible.pt", "base_channels=16")),
          ("unbuildable-config", lambda a, t: a.dir / "unbuildable.pt", ("unbuildable.pt", "base_channels")),
          ("pickle-that-runs-code", lambda a, t: a.dir / "evil.pt", ("evil.pt", "weights_only")),
      )],
    Case("separate-checkpoint-folder-without-last", _sep_ckpt(lambda a, t: a.dir), ("without checkpoints/last.pt",)),
    # `evaluate` only
    Case("evaluate-missing-root", lambda a, t: ["evaluate", "--checkpoint", a.ckpt, "--root", t / "nowhere", "--out", t / "out"],
         ("nowhere", "does not exist")),
    Case("evaluate-unknown-track",
         lambda a, t: ["evaluate", "--checkpoint", a.ckpt, "--root", a.root, "--tracks", "nope", "--out", t / "out"],
         ("'nope'", "toolkit data info")),
    Case("evaluate-missing-estimates",
         lambda a, t: ["evaluate", "--estimates", t / "no_estimates", "--root", a.root, "--out", t / "out", "--no-baseline"],
         ("no_estimates", "no estimates")),
    Case("evaluate-neither-checkpoint-nor-estimates", lambda a, t: ["evaluate", "--root", a.root], ("--checkpoint",)),
    # places
    *[Case(f"{cmd}-out-is-a-file", lambda a, t, argv=argv: [*argv(a, t), "--out", t / "a_file"], ("a_file", "is a file"))
      for cmd, argv in WRITERS],
    *[Case(f"{cmd}-out-under-a-file", lambda a, t, argv=argv: [*argv(a, t), "--out", t / "a_file" / "sub"],
           ("a_file/sub", "Not a directory"))
      for cmd, argv in WRITERS],
    # data and list
    Case("data-info-missing-root", lambda a, t: ["data", "info", t / "nonexistent"], ("nonexistent", "does not exist")),
    Case("data-synth-zero-tracks", lambda a, t: ["data", "synth", "--out", t / "out", "--tracks", 0], ("tracks",)),
    Case("list-unknown-kind", lambda a, t: ["list", "samplerz"], ("samplerz", "did you mean 'samplers'")),
    # the rest of `run` and `sweep`
    Case("run-resume-without-checkpoint", lambda a, t: ["run", QUICK, TINY, "--out", t / "out", "--resume"],
         ("--resume", "no checkpoint")),
    Case("sweep-grid-without-values", lambda a, t: ["sweep", QUICK, TINY, "--grid", "SEED", "--out", t / "out"],
         ("--grid SEED", "BINDING=v1,v2")),
    Case("sweep-without-gin-file", lambda a, t: ["sweep", "--grid", "SEED=0,1"], ("give a gin file",)),
]

# configuration mistakes, each for `run` and for `sweep` (which checks every cell before training any)
CONFIG_MISTAKES = [
    ("gin-syntax-error", lambda a: [a.dir / "syntax.gin"], [], ("syntax.gin:2", "syntax error")),
    ("missing-gin-file", lambda a: [a.dir / "nope.gin"], [], ("nope.gin", "no such gin file")),
    ("unknown-configurable", lambda a: [QUICK, TINY], ["--gin_param", "samplers.ddmi.steps=10"],
     ("samplers.ddmi", "did you mean 'samplers.ddim'")),
    ("unknown-parameter", lambda a: [QUICK, TINY], ["--gin_param", "samplers.ddim.etta=0.5"],
     ("etta", "did you mean 'eta'")),
    ("unknown-plugin-name", lambda a: [QUICK, TINY], ["--gin_param", "SAMPLER='ddmi'"], ("'ddmi'", "did you mean 'ddim'")),
    ("string-batch-size", lambda a: [QUICK, TINY], ["--gin_param", "BATCH_SIZE='x'"], ("batch_size", "'x'", "whole number")),
    ("fractional-steps", lambda a: [QUICK, TINY], ["--gin_param", "TRAIN_STEPS=2.5"], ("steps", "2.5", "whole number")),
    ("string-learning-rate", lambda a: [QUICK, TINY], ["--gin_param", "TrainConfig.lr='fast'"], ("lr", "'fast'")),
    ("zero-steps", lambda a: [QUICK, TINY], ["--gin_param", "TRAIN_STEPS=0"], ("steps = 0", ">= 1")),
    ("negative-steps", lambda a: [QUICK, TINY], ["--gin_param", "TRAIN_STEPS=-3"], ("steps = -3", ">= 1")),
    ("sampling-steps-over-timesteps", lambda a: [QUICK, TINY], ["--gin_param", "SAMPLING_STEPS=5000"],
     ("SAMPLING_STEPS = 5000", "1..1000")),
    ("segment-shorter-than-stft-frame", lambda a: [QUICK, TINY], ["--gin_param", "SEGMENT_SECONDS=0.001"],
     ("SEGMENT_SECONDS = 0.001", "STFT frame")),
    ("plugin-file-missing", lambda a: [QUICK, TINY], ["--plugin", "{tmp}/gone.py"], ("gone.py", "no such file")),
    ("plugin-file-syntax-error", lambda a: [QUICK, TINY], ["--plugin", "{dir}/bad_plugin.py"], ("bad_plugin.py:2", "syntax error")),
    ("plugin-module-missing", lambda a: [QUICK, TINY], ["--plugin", "no_such_module_xyz"], ("no_such_module_xyz", "cannot import")),
]
for _name, _files, _extra, _needles in CONFIG_MISTAKES:
    def _argv(cmd, files=_files, extra=_extra):
        def argv(a, t):
            more = [str(x).format(dir=a.dir, tmp=t) for x in extra]
            grid = ["--grid", "SEED=0,1"] if cmd == "sweep" else []
            return [cmd, *files(a), *grid, *more, "--out", t / "out"]
        return argv
    CASES += [Case(f"run-{_name}", _argv("run"), _needles), Case(f"sweep-{_name}", _argv("sweep"), _needles)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, art, tmp_path, capfd):
    (tmp_path / "a_file").write_text("a file where a folder is expected\n")
    before, inputs_before = snapshot(tmp_path), snapshot(art.dir)
    ckpt_before = snapshot(art.run)
    proc = invoke(case.argv(art, tmp_path), capfd)
    needles = [n.format(dir=art.dir, tmp=tmp_path) for n in case.needles]
    assert_one_line(proc, case.code, needles)
    assert_nothing_written(before, snapshot(tmp_path))
    assert snapshot(art.dir) == inputs_before and snapshot(art.run) == ckpt_before, "an input was changed"
    assert not art.marker.exists(), "loading a checkpoint ran code from it"


def test_debug_adds_the_traceback(art, tmp_path, capfd):
    proc = invoke(["--debug", "separate", art.dir / "empty.wav", "--checkpoint", art.ckpt, "--out", tmp_path / "out"], capfd)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "empty file" in proc.stderr


def test_a_bug_exits_1_with_one_line(monkeypatch, capfd):
    from toolkit import registry

    def broken(kind, name):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(registry, "describe", broken)
    proc = invoke(["list", "samplers"], capfd)
    assert_one_line(proc, 1, ("internal error", "RuntimeError: boom", "--debug"))


# ------------------------------------------------------------------ run --resume with the wrong things

def _copy_run(art, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(art.run, out)
    return out


def test_resume_with_another_backbone_names_the_parameter(art, tmp_path, capfd):
    out = _copy_run(art, tmp_path)
    before = snapshot(out)
    proc = invoke(["run", QUICK, TINY, "--gin_param", "backbones.attention_unet.base_channels=16", "--out", out, "--resume"], capfd)
    assert_one_line(proc, 2, ("--resume", "base_channels=8 (now 16)"))
    assert snapshot(out) == before


def test_resume_never_runs_code_from_a_checkpoint(art, tmp_path, capfd):
    out = _copy_run(art, tmp_path)
    for p in (out / "checkpoints").glob("*.pt"):
        shutil.copyfile(art.dir / "evil.pt", p)
    before = snapshot(out)
    proc = invoke(["run", QUICK, TINY, "--out", out, "--resume"], capfd)
    assert_one_line(proc, 2, ("no loadable checkpoint",))
    assert snapshot(out) == before
    assert not art.marker.exists()


# ------------------------------------------------------------------ full disk (simulated in-process)

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_separate_disk_full_keeps_old_outputs(art, tmp_path, capfd, monkeypatch):
    out = tmp_path / "out"
    assert invoke(["separate", art.good, "--checkpoint", art.ckpt, "--steps", 1, "--out", out], capfd).returncode == 0
    old = {p: p.read_bytes() for p in (out / "reliability-run" / "good").iterdir()}
    before = snapshot(out)
    for target, name in ((sf.SoundFile, "write"), (os, "replace")):
        with monkeypatch.context() as m:
            m.setattr(target, name, _enospc)
            proc = invoke(["separate", art.good, "--checkpoint", art.ckpt, "--steps", 1, "--seed", 5, "--out", out], capfd)
        assert_one_line(proc, 2, ("good", "no space left"))
        assert not temp_files(out)
        assert snapshot(out) == before and {p: p.read_bytes() for p in old} == old


def test_run_disk_full_keeps_old_checkpoints(art, tmp_path, capfd, monkeypatch):
    out = _copy_run(art, tmp_path)
    ckpts = out / "checkpoints"
    before = snapshot(ckpts)
    real_save = torch.save

    def half_then_full(obj, f, *args, **kwargs):  # the disk fills up halfway through the file
        real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(Path(f).read_bytes()[:1000])
        _enospc()

    monkeypatch.setattr(torch, "save", half_then_full)
    proc = invoke(["run", QUICK, TINY, "--gin_param", "TRAIN_STEPS=6", "--out", out, "--resume"], capfd)
    assert_one_line(proc, 2, ("step_6.pt", "no space left"))
    assert snapshot(ckpts) == before and not temp_files(out)


def test_evaluate_disk_full_keeps_old_results(art, tmp_path, capfd, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("old results\n")
    monkeypatch.setattr(os, "replace", _enospc)
    proc = invoke(["evaluate", "--checkpoint", art.ckpt, "--root", art.root, "--steps", 1, "--out", out, "--no-baseline"], capfd)
    monkeypatch.undo()
    assert_one_line(proc, 2, ("no space left",))
    assert (out / "results.md").read_text() == "old results\n"
    assert not temp_files(out) and not [p for p in out.rglob("*") if p.is_file() and p.name != "results.md"]


@pytest.mark.parametrize("fails", ["os.replace", "os.rename"], ids=["manifest", "first-track"])
def test_data_synth_disk_full_then_completes(fails, tmp_path, capfd, monkeypatch):
    out = tmp_path / "root"
    argv = ["data", "synth", "--out", out, "--tracks", 1, "--test-tracks", 1, "--seconds", 1, "--sample-rate", 8000]
    with monkeypatch.context() as m:
        m.setattr(os, fails.split(".")[1], _enospc)
        proc = invoke(argv, capfd)
    assert_one_line(proc, 2, ("synth", str(out), "No space left"))
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert set(left) <= {"synth.json", "train", "test"}, f"half-written tracks or temp folders: {left}"
    assert invoke(argv, capfd).returncode == 0, "rerunning the same command completes the tree"
    assert sorted(p.name for p in (out / "train").iterdir()) and sorted(p.name for p in (out / "test").iterdir())


# ------------------------------------------------------------------ a read-only file system (real, in a mount namespace)

def _private_mount_works() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro,size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


READ_ONLY = [
    ("run", lambda a: ["run", QUICK, TINY]),
    ("separate", lambda a: ["separate", a.good, "--checkpoint", a.ckpt]),
    ("data-synth", lambda a: ["data", "synth", "--tracks", 1, "--seconds", 1]),
]


@pytest.mark.parametrize("cmd,argv", READ_ONLY, ids=[c for c, _ in READ_ONLY])
def test_read_only_output_folder(cmd, argv, art, tmp_path):
    if not _private_mount_works():
        pytest.skip("needs root and `unshare -m` to mount a read-only tmpfs (as root, chmod does not stop writes)")
    ro = tmp_path / "ro"
    ro.mkdir()
    inner = " ".join(f"'{x}'" for x in [sys.executable, "-m", "toolkit.cli", *map(str, argv(art)), "--out", str(ro / "out")])
    # the read-only mount lives in the child's own mount namespace and vanishes with it
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro,size=64k tmpfs '{ro}' && exec {inner}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert_one_line(proc, 2, (str(ro / "out"), "ead-only"))
    assert not list(ro.iterdir())


# ------------------------------------------------------------------ real processes, one case per command

REAL = [
    ("run", lambda a, t: ["run", a.dir / "syntax.gin", "--out", t / "out"], "syntax.gin:2"),
    ("separate", lambda a, t: ["separate", a.dir / "truncated.wav", "--checkpoint", a.ckpt, "--out", t / "out"], "truncated"),
    ("evaluate", lambda a, t: ["evaluate", "--checkpoint", a.dir / "evil.pt", "--root", a.root, "--out", t / "out"], "weights_only"),
    ("sweep", lambda a, t: ["sweep", QUICK, TINY, "--grid", "SAMPLER=ddim,ddmi", "--out", t / "out"], "did you mean 'ddim'"),
    ("data", lambda a, t: ["data", "info", t / "nonexistent"], "does not exist"),
    ("list", lambda a, t: ["list", "samplerz"], "did you mean 'samplers'"),
]


@pytest.mark.parametrize("cmd,argv,needle", REAL, ids=[c for c, _, _ in REAL])
def test_real_process_one_line_exit_2(cmd, argv, needle, art, tmp_path):
    before = snapshot(tmp_path)
    proc = run_cli(*argv(art, tmp_path), timeout=300)
    assert_one_line(proc, 2, (needle,))
    assert_nothing_written(before, snapshot(tmp_path))
    assert not art.marker.exists()


# ------------------------------------------------------------------ unusual but valid audio

EDGE_AUDIO = [  # id, rate, (samples, channels) audio
    ("digital-silence", RATE, lambda: np.zeros((RATE, 2), np.float32)),
    ("one-sample", RATE, lambda: np.array([[0.5]], np.float32)),
    ("eight-channels", RATE, lambda: tone(RATE, 8, 0.6)),
    ("8kHz", 8000, lambda: tone(8000, 2, 1.0)),
    ("192kHz", 192000, lambda: tone(192000, 2, 0.6)),
]


@pytest.mark.parametrize("name,rate,make", EDGE_AUDIO, ids=[e[0] for e in EDGE_AUDIO])
def test_unusual_audio_is_separated(name, rate, make, art, tmp_path, capfd):
    audio = make()
    song = tmp_path / f"{name}.wav"
    sf.write(song, audio, rate, subtype="FLOAT")
    invoke(["separate", song, "--checkpoint", art.ckpt, "--steps", 1, "--out", tmp_path / "out"], capfd, check=0)
    total = 0
    for stem in ("vocals", "instrumental"):
        path = tmp_path / "out" / "reliability-run" / name / f"{stem}.wav"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (rate, audio.shape[1], audio.shape[0])
        data, _ = sf.read(path, dtype="float32", always_2d=True)
        assert np.isfinite(data).all()
        if name == "digital-silence":
            assert not data.any(), "silence in, silence out"
        total = total + data
    assert np.abs(total - audio).max() < 1e-5, "the outputs sum to the input"
    assert not temp_files(tmp_path / "out")


# ------------------------------------------------------------------ memory does not grow with the track

PASSTHROUGH = '''
from toolkit import registry

@registry.register("samplers", "passthrough")
def passthrough(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, **_):
    """The mixture's own spectrogram as the estimate: the whole streaming path without the network's compute."""
    return cond
'''

# glibc keeps freed heap pages and hands them back at random moments, which adds ~100 MiB of noise to a
# peak; with these, large blocks are mapped and returned at once, so the peak is the live memory's peak
EXACT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _peak_rss_kib(argv, log: Path) -> int:
    """Peak RSS of ``toolkit ARGV``, from its own rusage (``os.wait4``: not mixed with other children)."""
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", *map(str, argv)], cwd=REPO,
                                env={**os.environ, **EXACT_MALLOC}, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, log.read_text()[-2000:]
    return usage.ru_maxrss


@pytest.mark.slow
def test_ten_minutes_use_no_more_memory_than_one(art, tmp_path):
    """10 min vs 1 min of stereo 48 kHz: peak RSS within 1.5x, and up by far less than the decoded track.

    The network is swapped for a plugin sampler that returns the mixture's
    spectrogram, so that 1600 chunks fit the test budget; everything that
    could hold on to the track (reading, resampling, STFT, overlap-add,
    writing) still runs, and the network's memory per batch is fixed by
    ``--batch-size``, not by the track.
    """
    plugin = tmp_path / "passthrough.py"
    plugin.write_text(PASSTHROUGH)
    rng = np.random.default_rng(0)
    peak = {}
    for minutes in (1, 10):
        song = tmp_path / f"song_{minutes}min.wav"
        with sf.SoundFile(song, "w", samplerate=48000, channels=2, subtype="PCM_16") as f:
            for _ in range(minutes * 6):  # 10 s blocks: the test itself stays small too
                f.write((0.1 * rng.standard_normal((480000, 2))).astype(np.float32))
        out = tmp_path / f"out_{minutes}"
        peak[minutes] = _peak_rss_kib(["separate", song, "--checkpoint", art.ckpt, "--plugin", plugin, "--sampler", "passthrough",
                                       "--steps", 1, "--segment", 0.5, "--batch-size", 32, "--out", out], tmp_path / "stderr.log")
        assert sf.info(out / "reliability-run" / song.stem / "vocals.wav").frames == minutes * 60 * 48000
        song.unlink()
        shutil.rmtree(out)
    decoded_10min = 10 * 60 * 48000 * 2 * 4 // 1024  # KiB of float32, as the track would sit in memory if loaded whole
    print(f"peak RSS: 1 min {peak[1] >> 10} MiB, 10 min {peak[10] >> 10} MiB")
    assert peak[10] <= 1.5 * peak[1], peak
    assert peak[10] - peak[1] < decoded_10min // 4, f"peak RSS grew by {(peak[10] - peak[1]) >> 10} MiB: {peak}"


# ------------------------------------------------------------------ security

UNSAFE = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"shell\s*=\s*True"), "shell=True"),
    (re.compile(r"\bos\.system\("), "os.system"),
    (re.compile(r"(?<![.\w])(?:eval|exec)\("), "eval/exec of a string"),
]


def _call_arguments(text: str, start: int) -> str:
    """The text between the parenthesis at ``start`` and its match (calls may span lines and nest)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i]
    return text[start + 1:]


def unsafe_calls(text: str) -> list[tuple[int, str]]:
    """(line, what) of every unpickling or shell call in Python source ``text``."""
    line = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731
    found = [(line(m.start()), "torch.load without weights_only=True") for m in re.finditer(r"\btorch\.load\(", text)
             if not re.search(r"weights_only\s*=\s*True", _call_arguments(text, m.end() - 1))]
    for pattern, what in UNSAFE:
        found += [(line(m.start()), what) for m in pattern.finditer(text)]
    return found


def test_the_scanner_sees_unsafe_calls():
    bad = ["torch.load(p)", "torch.load(\n    Path(p),\n    map_location='cpu')", "torch.load(p, weights_only=False)",
           "pickle.load(f)", "pickle.loads(b)", "subprocess.run(cmd, shell=True)", "os.system('ls')", "eval(s)", "exec(code)"]
    good = ["torch.load(Path(p), map_location='cpu', weights_only=True)", "torch.load(\n    p,\n    weights_only=True,\n)",
            "net.eval()", "spec.loader.exec_module(m)", "evaluate(tracks)", "subprocess.run(['ls'])"]
    assert all(unsafe_calls(code) for code in bad), [code for code in bad if not unsafe_calls(code)]
    assert not any(unsafe_calls(code) for code in good), [code for code in good if unsafe_calls(code)]


def test_no_unsafe_loading_or_shell_in_the_code():
    """The toolkit and its plugins never unpickle freely or hand strings to a shell."""
    files = sorted((REPO / "toolkit").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))
    assert len(files) > 20
    found = [f"{path.relative_to(REPO)}:{line}: {what}" for path in files for line, what in unsafe_calls(path.read_text())]
    assert not found, "\n".join(found)
