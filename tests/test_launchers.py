"""Sweep launchers: submitit (local executor) against the local launcher, a killed submitter,
failing cells, Slurm parameters (without a cluster) and one-line errors for bad names.

The submitit sweep compared with the local launcher is the one whose submitter was killed and
re-run, so one tiny 2x2 sweep shows both "same rows" and "only what was lost is resubmitted".
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, run_cli
from toolkit import sweep
from toolkit.errors import UserError
from toolkit.launch.failures import write_failures
from toolkit.launch.lock import submitter_lock, submitter_running
from toolkit.launch.params import make_launcher
from toolkit.launch.state import SweepState

pytest.importorskip("submitit")

TINY = REPO / "tests" / "tiny.gin"
QUICK = REPO / "experiments" / "quickstart.gin"
GRID = ["--grid", "SCHEDULE=linear,cosine", "--grid", "SAMPLING_STEPS=2,3"]
METRICS = ["vocals_SDR", "vocals_SIR", "vocals_SAR", "accompaniment_SDR", "accompaniment_SIR", "accompaniment_SAR"]
BROKEN = '''
from toolkit import registry

@registry.register("samplers", "broken")
def broken(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None):
    """Always raises (tests)."""
    raise RuntimeError("broken sampler exploded on purpose")
'''


def _env(factory) -> dict:
    # module fixtures start before conftest's per-test TOOLKIT_CACHE: name the same session cache here
    return {"TOOLKIT_CACHE": str(factory.getbasetemp() / "toolkit-cache"), "WANDB_MODE": "offline"}


def _rows(out: Path) -> dict:
    with open(out / "results.csv") as f:
        return {(r["SCHEDULE"], r["SAMPLING_STEPS"]): r for r in csv.DictReader(f)}


def _state(out: Path) -> dict:
    return json.loads((out / "state.json").read_text())


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _kill_tree(pid: int) -> None:
    """SIGKILL a local submitit job: its task processes, then its controller (all started by this test)."""
    for kid in _children(pid):
        _kill_tree(kid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "s"
    run_cli("sweep", QUICK, TINY, *GRID, "--out", out, env=_env(tmp_path_factory), check=0)
    return out


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory):
    """A submitit sweep (local executor, 2 at once) whose submitter is SIGKILLed once a cell is done and
    another runs; one running cell job is killed with it (lost); then the same command runs to the end."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to find and kill the job processes")
    out = tmp_path_factory.mktemp("submitit") / "s"
    args = ["sweep", str(QUICK), str(TINY), *GRID, "--launcher", "submitit", "--launcher-param", "max_parallel=2",
            "--launcher-param", "poll_s=0.2", "--out", str(out)]
    env = {**os.environ, **_env(tmp_path_factory)}
    log = open(out.parent / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", *args], cwd=REPO, env=env, stdout=log, stderr=log)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            cells = _state(out)["cells"].values()
        except (FileNotFoundError, ValueError, KeyError):
            cells = []
        states = [c["state"] for c in cells]
        if "done" in states and "running" in states:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (out.parent / "first.log").read_text()[-3000:]
    at_kill = _state(out)
    jobs = out / "jobs"
    victim = None
    for name, cell in at_kill["cells"].items():
        if cell["state"] == "running" and not (jobs / f"{cell['job_id']}_0_result.pkl").exists():
            victim = name
            _kill_tree(int(cell["job_id"]))
            break
    if victim and (out / "cells" / victim / "results.json").exists():
        victim = None  # it finished just before the kill: nothing was lost
    info = {
        "out": out, "at_kill": at_kill, "victim": victim,
        "submitted_at_kill": {p.name for p in jobs.glob("*_submitted.pkl")},
        "results_mtime": {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/results.json")},
        "train_mtime": {p.parent.name: p.stat().st_mtime_ns for p in (out / "train").glob("*/run.json")},
    }
    info["rerun"] = run_cli(*args, env=_env(tmp_path_factory), check=0)
    return info


def test_submitit_rows_match_local_launcher(local_sweep, resumed_sweep):
    out = resumed_sweep["out"]
    local, remote = _rows(local_sweep), _rows(out)
    assert len(local) == 4 and set(remote) == set(local)
    for key, row in local.items():
        for m in METRICS:
            assert abs(float(remote[key][m]) - float(row[m])) <= 1e-3, (key, m, remote[key][m], row[m])
    assert len(list((out / "train").glob("*/run.json"))) == 2  # two trainings for four cells
    logs = sorted((out / "jobs").glob("*_0_log.out"))
    assert len(logs) >= 6 and all(p.stat().st_size > 0 for p in logs)  # each job ran in its own submitit job
    assert not (local_sweep / "jobs").exists()  # the local launcher ran in process: no job folders
    assert (out / "sdr_vs_steps.png").exists() and json.loads((out / "failures.json").read_text()) == []


def test_rerun_after_kill_resubmits_only_what_was_lost(resumed_sweep):
    out, at_kill, victim = resumed_sweep["out"], resumed_sweep["at_kill"], resumed_sweep["victim"]
    final = _state(out)
    assert {c["state"] for c in final["cells"].values()} == {"done"} and len(final["cells"]) == 4
    for name, mtime in resumed_sweep["results_mtime"].items():  # finished cells were not redone
        assert (out / "cells" / name / "results.json").stat().st_mtime_ns == mtime
    for key, mtime in resumed_sweep["train_mtime"].items():  # nor trainings
        assert (out / "train" / key / "run.json").stat().st_mtime_ns == mtime
    assert len(resumed_sweep["train_mtime"]) == 2
    for name, cell in at_kill["cells"].items():
        if cell.get("job_id") and name != victim:  # alive or finished: adopted, not submitted again
            assert final["cells"][name]["job_id"] == cell["job_id"], name
    if victim:
        assert final["cells"][victim]["job_id"] != at_kill["cells"][victim]["job_id"]
    # every training and cell ran in exactly one job, but the lost one, which ran twice
    submitted = list((out / "jobs").glob("*_submitted.pkl"))
    assert len(submitted) == 6 + (1 if victim else 0), (victim, sorted(p.name for p in submitted))
    status = run_cli("sweep", "--status", out, check=0).stdout
    assert status.count(" done ") >= 6 and "4 done of 4 cells" in status


def test_failing_cell_is_reported_and_the_others_finish(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN)
    out = tmp_path / "s"
    p = run_cli("sweep", QUICK, TINY, "--grid", "SAMPLER=ddim,broken", "--plugin", plugin, "--launcher", "submitit",
                "--launcher-param", "max_parallel=2", "--launcher-param", "poll_s=0.2", "--out", out)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "1 of 2 cells failed" in " ".join(p.stdout.split())
    failures = json.loads((out / "failures.json").read_text())
    assert [f["cell"] for f in failures] == ["SAMPLER=broken"]
    assert "broken sampler exploded on purpose" in failures[0]["error"]  # the log's last lines
    assert Path(failures[0]["log"]).is_file()
    assert (out / "cells" / "SAMPLER=ddim" / "results.json").is_file()
    assert len((out / "results.csv").read_text().strip().splitlines()) == 2
    md = (out / "results.md").read_text()
    assert "Failed cells (1)" in md and "RuntimeError: broken sampler exploded on purpose" in md
    state = _state(out)
    assert state["cells"]["SAMPLER=broken"]["state"] == "failed" and state["cells"]["SAMPLER=ddim"]["state"] == "done"
    status = run_cli("sweep", "--status", out, check=0).stdout
    assert "failed" in status and "1 done, 1 failed of 2 cells" in status


def test_local_launcher_records_failures_and_goes_on(tmp_path, monkeypatch):
    cells = [sweep.Cell("a", {"X": "1"}, "k1", {"X": "1"}), sweep.Cell("b", {"X": "2"}, "k1", {"X": "2"}),
             sweep.Cell("c", {"X": "3"}, "k2", {"X": "3"}), sweep.Cell("d", {"X": "4"}, "k2", {"X": "4"})]
    spec = sweep.SweepSpec([], [], [], str(tmp_path), cells)
    trained = []

    def fake_training(spec, cell, console=None):
        trained.append(cell.train_key)
        if cell.train_key == "k2":
            raise RuntimeError("training k2 diverged")
        (spec.train_dir(cell.train_key)).mkdir(parents=True, exist_ok=True)
        (spec.train_dir(cell.train_key) / "run.json").write_text("{}")

    def fake_cell(spec, cell, console=None):
        if cell.name == "a":
            raise ValueError("cell a is broken")
        spec.cell_dir(cell).mkdir(parents=True)
        (spec.cell_dir(cell) / "results.json").write_text("{}")

    monkeypatch.setattr(sweep, "run_training", fake_training)
    monkeypatch.setattr(sweep, "run_cell", fake_cell)
    from rich.console import Console

    state = SweepState.load(tmp_path)
    make_launcher("local").launch(spec, state, Console(quiet=True))
    got = {name: e["state"] for name, e in _state(tmp_path)["cells"].items()}
    assert got == {"a": "failed", "b": "done", "c": "failed", "d": "failed"}
    assert trained == ["k1", "k2"]  # a failed training is not retried for its second cell
    records = write_failures(spec, state)
    assert [r["cell"] for r in records] == ["a", "c", "d"]
    assert "cell a is broken" in records[0]["error"] and "training k2 diverged" in records[2]["error"]


def test_one_submitter_per_sweep_folder(tmp_path):
    assert submitter_running(tmp_path) is False
    with submitter_lock(tmp_path):
        assert submitter_running(tmp_path) is True
        with pytest.raises(UserError, match="another `toolkit sweep`"):
            with submitter_lock(tmp_path):
                pass
    assert submitter_running(tmp_path) is False


def test_slurm_parameters_reach_submitit(tmp_path, monkeypatch):
    # stand-ins for Slurm's commands: srun makes submitit pick Slurm, sbatch accepts the job file unread
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 4242'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = make_launcher("submitit", [
        "cluster=slurm", "partition=gpu", "gpus_per_node=4", "cpus_per_task=8", "mem_gb=64", "timeout_min=120",
        "account=proj", "array_parallelism=3"])
    ex = launcher.make_executor(tmp_path / "jobs")
    assert ex.cluster == "slurm"
    p = ex.parameters
    assert (p["partition"], p["gpus_per_node"], p["cpus_per_task"], p["mem"], p["time"], p["account"],
            p["array_parallelism"], p["stderr_to_stdout"]) == ("gpu", 4, 8, "64GB", 120, "proj", 3, True)
    with ex.batch():  # one array of four jobs, as the launcher submits a round
        jobs = [ex.submit(os.getcwd) for _ in range(4)]
    assert [job.job_id for job in jobs] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    sbatch = jobs[0].paths.submission_file.read_text()
    for line in ("--partition=gpu", "--gpus-per-node=4", "--cpus-per-task=8", "--mem=64GB", "--time=120",
                 "--account=proj", "--array=0-3%3"):
        assert f"#SBATCH {line}" in sbatch, line
    assert "--error" not in sbatch  # stderr_to_stdout: one log per job
    assert launcher.parallel_limit("slurm") is None  # Slurm queues; array_parallelism caps each array

    local = make_launcher("submitit", ["cluster=local"])
    ex = local.make_executor(tmp_path / "jobs2")
    assert ex.cluster == "local" and local.parallel_limit("local") == 2
    assert ex.parameters["timeout_min"] == 24 * 60  # submitit's local default (2 min) would kill cells


def test_bad_launcher_values_raise_user_errors():
    for params, text in ((["max_parallel=two"], "int"), (["max_parallel=0"], "max_parallel"), (["cluster=k8s"], "k8s"),
                         (["partition"], "KEY=VALUE")):
        with pytest.raises(UserError, match=text):
            make_launcher("submitit", params)


def test_unknown_launcher_or_parameter_exits_2_with_one_line(tmp_path):
    p = run_cli("sweep", QUICK, TINY, "--launcher", "slurmx", "--out", tmp_path / "a")
    assert_one_line_error(p, 2, "unknown launcher 'slurmx'")
    assert "known: local, submitit" in p.stderr
    p = run_cli("sweep", QUICK, TINY, "--launcher", "submitit", "--launcher-param", "partitio=gpu", "--out", tmp_path / "b")
    assert_one_line_error(p, 2, "partitio")
    assert "did you mean 'partition'" in p.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing planned, nothing written
