"""Kills and signals lose nothing: SIGKILL while checkpoints are written, SIGINT/SIGTERM while separating.

A training run is killed with SIGKILL 20+ times at seeded random moments
while it writes a checkpoint every step; after every kill the newest
surviving checkpoint must load (``toolkit.checkpoint.latest_valid``), must
not be older than the newest one the run had finished, and the next
``--resume`` must go on training. A separation interrupted by SIGINT or
SIGTERM exits 130/143 and leaves the output folder exactly as it was.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from conftest import REPO, assert_one_line_error
from test_bad_inputs import QUICK, TINY, run_in_process, snapshot, temp_files, tone, trained_checkpoint

KILLS = 10
SEED = 1234


def _start(args, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err)


def _steps(ckpt_dir: Path, stale=frozenset()) -> tuple[int, int]:
    """(newest finished step file, newest step file being written, ignoring ``stale`` temp files); -1 when none."""
    finished, writing = -1, -1
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return finished, writing
    for name in names:
        m = re.match(r"^(\.)?step_(\d+)(\.tmp-\w+)?\.pt$", name)
        if m and bool(m.group(1)) == bool(m.group(3)) and name not in stale:
            if m.group(1):
                writing = max(writing, int(m.group(2)))
            else:  # renamed into place only once complete
                finished = max(finished, int(m.group(2)))
    return finished, writing


def test_sigkill_while_checkpointing_never_loses_a_finished_checkpoint(tmp_path):
    from toolkit.checkpoint import latest_valid

    rng = random.Random(SEED)
    run, ckpts, log = tmp_path / "run", tmp_path / "run" / "checkpoints", tmp_path / "stderr.log"
    base = ["run", QUICK, TINY, "--gin_param", "CHECKPOINT_EVERY=1", "--gin_param", "TRAIN_STEPS=100000",
            "--gin_param", "TrainConfig.keep_last=2", "--out", run]
    finished, mid_write = -1, 0
    for kill in range(KILLS):
        # temp files a killed predecessor left (the new run sweeps them at its first save) are not this run's writes
        stale = frozenset(p.name for p in temp_files(ckpts)) if ckpts.exists() else frozenset()
        proc = _start(base + (["--resume"] if kill else []), log)
        target = max(finished + 1, 2)  # the first run keeps step 1, so that there is always something to resume
        deadline = time.monotonic() + 120
        # each process is killed while it saves, once the temp file of step `target` appears: every other
        # kill at once (inside the write of step_N.pt), the others at a random moment within the ~30 ms
        # that writing step_N.pt, copying last.pt and rotating take
        while max(_steps(ckpts, stale)) < target:
            assert proc.poll() is None, f"kill {kill}: the run exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"kill {kill}: no checkpoint write within 120 s"
            time.sleep(0.002)
        time.sleep(0.0 if kill % 2 == 0 else rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_write += bool({p.name for p in temp_files(ckpts)} - stale)
        newest, _ = _steps(ckpts)
        path, state = latest_valid(ckpts)
        assert state is not None, f"kill {kill}: no loadable checkpoint left in {sorted(os.listdir(ckpts))}"
        assert int(state["step"]) >= max(newest, finished), \
            f"kill {kill}: {path} (step {state['step']}) is older than a finished checkpoint (step {max(newest, finished)})"
        finished = int(state["step"])
    assert mid_write >= 1, "no kill landed inside a checkpoint write: the test did not test what it says"

    steps = finished + 2
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, base[:-2]), "--gin_param", f"TRAIN_STEPS={steps}",
                           "--out", run, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path, state = latest_valid(ckpts)
    assert path.name == "last.pt" and int(state["step"]) == steps
    assert not temp_files(ckpts), "the resumed run sweeps the temp files its killed predecessors left"
    print(f"{KILLS} kills, {mid_write} of them inside a checkpoint write; resumed to step {steps}")


@pytest.fixture(scope="module")
def separated(tmp_path_factory):
    """A checkpoint and an output folder that already holds the results of a first, short ``song.wav``."""
    base = tmp_path_factory.getbasetemp()
    ckpt = trained_checkpoint(base)
    d = tmp_path_factory.mktemp("signals")
    sf.write(d / "song.wav", tone(22050, 1, 1.0), 22050, subtype="FLOAT")
    assert run_in_process(["separate", d / "song.wav", "--checkpoint", ckpt, "--steps", 1, "--out", d / "out"]) == 0
    return ckpt, d


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_separate_keeps_old_outputs_and_writes_no_partial_file(sig, code, separated, tmp_path):
    ckpt, d = separated
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(d / "out"), str(out)], check=True)  # -a: keep the mtimes we compare
    song = tmp_path / "song.wav"
    sf.write(song, tone(22050, 1, 30.0, seed=1), 22050, subtype="FLOAT")  # long enough to be caught mid-way
    before = snapshot(out)
    old = {p: p.read_bytes() for p in (out / "reliability-run" / "song").iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "separate", str(song), "--checkpoint", str(ckpt),
                             "--steps", "2", "--batch-size", "1", "--out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not temp_files(out / "reliability-run" / "song"):  # the outputs are being written
        assert proc.poll() is None, f"separate ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    proc_result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_one_line_error(proc_result, code, "interrupted")
    assert snapshot(out) == before, "an interrupted separation changed the output folder"
    assert {p: p.read_bytes() for p in old} == old
