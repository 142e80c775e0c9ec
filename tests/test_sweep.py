"""Sweeps: grid parsing, reuse of trainings, skip-done/resume after a kill, the report."""
import json
import signal
import subprocess
import sys

import pytest

from conftest import REPO, assert_one_line_error, run_cli, wait_until
from toolkit import sweep
from toolkit.errors import UserError

TINY = REPO / "tests" / "tiny.gin"
QUICK = REPO / "experiments" / "quickstart.gin"


def test_grid_values_are_quoted_and_typed():
    assert sweep.parse_grid_arg("SCHEDULE=linear,cosine") == ("SCHEDULE", ["'linear'", "'cosine'"])
    assert sweep.parse_grid_arg("SAMPLING_STEPS=5,20") == ("SAMPLING_STEPS", ["5", "20"])
    assert sweep.parse_grid_arg("samplers.ddim.eta=0.0,1e-1") == ("samplers.ddim.eta", ["0.0", "1e-1"])
    assert sweep.parse_grid_arg("X='a,b',[1, 2]") == ("X", ["'a,b'", "[1, 2]"])
    with pytest.raises(UserError):
        sweep.parse_grid_arg("SCHEDULE")


def test_cartesian_product_and_training_reuse():
    cells = sweep.expand({"A": ["1", "2"], "SAMPLING_STEPS": ["5", "20"], "SAMPLER": ["'ddim'", "'ddpm'"]})
    assert len(cells) == 8
    keys = {sweep._key({k: v for k, v in c.items() if not sweep.SAMPLING_ONLY.match(k)}) for c in cells}
    assert len(keys) == 2


def test_invalid_binding_exits_2_naming_it(tmp_path):
    p = run_cli("sweep", QUICK, TINY, "--grid", "SCHEDULE=linear,cosin", "--out", tmp_path / "s")
    assert_one_line_error(p, 2, "cosin")
    assert not (tmp_path / "s" / "train").exists()
    p = run_cli("sweep", QUICK, TINY, "--grid", "NOPE.x=1", "--out", tmp_path / "s")
    assert_one_line_error(p, 2, "NOPE")


def test_sweep_reuses_trainings_and_resumes_after_kill(tmp_path):
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "toolkit.cli", "sweep", str(QUICK), str(TINY), "--grid", "SCHEDULE=linear,cosine",
           "--grid", "SAMPLING_STEPS=2,3", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: len(list(out.glob("cells/*/results.json"))) >= 2, proc, "two finished cells")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/results.json")}
    assert len(done) == 2, done
    p = run_cli("sweep", *cmd[4:], check=0)
    results = list((out / "cells").glob("*/results.json"))
    assert len(results) == 4
    for name, mtime in done.items():  # the first two cells were not redone
        assert (out / "cells" / name / "results.json").stat().st_mtime_ns == mtime
    assert len(list((out / "train").glob("*/run.json"))) == 2  # two trainings, not four
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("SCHEDULE,SAMPLING_STEPS")
    assert (out / "sdr_vs_steps.png").stat().st_size > 1000
    for r in results:
        assert (r.parent / "operative_config.gin").is_file()


def test_report_from_fake_cells(tmp_path):
    for i, (sched, steps, sdr) in enumerate([("linear", 5, 1.0), ("linear", 20, 2.0), ("cosine", 5, 3.0), ("cosine", 20, 4.0)]):
        cell = tmp_path / "cells" / f"c{i}"
        cell.mkdir(parents=True)
        scores = {"vocals": {"SDR": sdr, "SIR": 1.0, "SAR": 2.0}, "accompaniment": {"SDR": -sdr, "SIR": 1.0, "SAR": 2.0}}
        (cell / "results.json").write_text(json.dumps({"cell": f"c{i}", "bindings": {"SCHEDULE": repr(sched), "SAMPLING_STEPS": str(steps)},
                                                       "scores": scores, "tracks": 2, "separation_s_per_s": 0.1 * steps,
                                                       "training_minutes": 1.0}))
    (tmp_path / "baseline.json").write_text(json.dumps({"vocals": {"SDR": -1.0}, "accompaniment": {"SDR": 1.0}}))
    run_cli("sweep", "--report", tmp_path, check=0)
    rows = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert rows[1].split(",")[:3] == ["linear", "5", "1.0"]
    assert rows[4].split(",")[-4] == "5.0"  # cosine/20: 4.0 - (-1.0)
    md = (tmp_path / "results.md").read_text()
    assert "sdr_vs_steps.png" in md and (tmp_path / "sdr_vs_time.png").exists()


def test_report_of_empty_folder_is_one_line(tmp_path):
    assert_one_line_error(run_cli("sweep", "--report", tmp_path), 2, "no finished cells")


def test_status_table_from_state_and_finished_cells(tmp_path):
    from toolkit.launch.state import SweepState

    cells = [sweep.Cell(f"SAMPLING_STEPS={n}", {"SAMPLING_STEPS": str(n)}, "k", {}) for n in (2, 3, 4)]
    spec = sweep.SweepSpec([str(QUICK)], [], [], str(tmp_path), cells)
    sweep.save_manifest(spec)
    scores = {"vocals": {"SDR": 1.25}, "accompaniment": {"SDR": 0.5}}
    (tmp_path / "cells" / cells[0].name).mkdir(parents=True)
    (tmp_path / "cells" / cells[0].name / "results.json").write_text(json.dumps({"scores": scores}))
    state = SweepState(tmp_path)
    state.set("cells", cells[1].name, state="running")  # its submitter is gone: lost
    state.data["launcher"] = "local"
    state.save()
    p = run_cli("sweep", "--status", tmp_path, check=0)
    lines = {ln.split("│")[1].strip(): ln for ln in p.stdout.splitlines() if ln.count("│") > 3}
    assert " done " in lines["SAMPLING_STEPS=2"] and "+1.250" in lines["SAMPLING_STEPS=2"]
    assert " lost " in lines["SAMPLING_STEPS=3"] and " pending " in lines["SAMPLING_STEPS=4"]
    assert "1 done, 1 running, 1 pending of 3 cells" in p.stdout


def _fake_cells(out, n_pred=3, steps=(1, 5, 10, 50), filters=("none", "soft", "wiener")):
    i = 0
    for pred in ("eps", "v", "x0")[:n_pred]:
        for st in steps:
            for pf in filters:
                cell = out / "cells" / f"c{i:02d}"
                cell.mkdir(parents=True)
                sdr = 1.0 + 0.5 * i / 7
                scores = {"vocals": {"SDR": sdr, "SIR": 1.23456, "SAR": 12.5}, "accompaniment": {"SDR": -sdr, "SIR": 1.0, "SAR": 2.0}}
                (cell / "results.json").write_text(json.dumps({
                    "cell": cell.name, "bindings": {"PREDICTION": repr(pred), "SAMPLING_STEPS": str(st), "POST_FILTER": repr(pf)},
                    "scores": scores, "tracks": 3, "separation_s_per_s": 0.01 * st * (1 + 0.01 * i), "training_minutes": 5.04}))
                i += 1
    (out / "baseline.json").write_text(json.dumps({"vocals": {"SDR": -0.85}, "accompaniment": {"SDR": 0.85}}))
    return i


def test_report_of_36_cells_prints_table_fixed_decimals_and_frontier(tmp_path):
    from toolkit.sweep_report import frontier

    assert _fake_cells(tmp_path) == 36
    p = run_cli("sweep", "--report", tmp_path, check=0)
    assert "+1.00" in p.stdout and "vocal and accompaniment cSDR" in " ".join(p.stdout.split())  # the results table, printed
    assert max(len(line) for line in p.stdout.splitlines()) <= 80
    md = (tmp_path / "results.md").read_text().splitlines()
    table = [ln for ln in md if ln.startswith("|")]
    assert table[1] == "|---|---:|---|" + "---:|" * 11  # numbers right-aligned
    assert "| +1.00 | +1.23 | +12.50 |" in table[2] and "| 0.0100 | 5.0 | 3 |" in table[2]  # fixed decimals
    assert (tmp_path / "sdr_vs_time.png").stat().st_size > 1000 and (tmp_path / "sdr_vs_steps.png").stat().st_size > 1000
    assert frontier([(1, 1.0), (2, 0.5), (3, 2.0), (0.5, 0.2)]) == [(0.5, 0.2), (1, 1.0), (3, 2.0)]


PLUGIN = '''
from toolkit import registry

@registry.register("samplers", "noise_out")
def noise_out(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None):
    """Returns x_T clamped to x0's range: a plugin for tests."""
    return x_T.clamp(-1, 1)
'''


def test_sweep_rerun_loads_recorded_plugins(tmp_path):
    plugin = tmp_path / "noise_out.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "s"
    run_cli("sweep", QUICK, TINY, "--grid", "SAMPLER='noise_out'", "--plugin", plugin, "--out", out, check=0)
    assert json.loads((out / "sweep.json").read_text())["plugins"] == [str(plugin.resolve())]
    p = run_cli("sweep", QUICK, TINY, "--grid", "SAMPLER='noise_out'", "--out", out, check=0)  # no --plugin now
    assert "loading the plugins" in p.stdout and "noise_out" in p.stdout


def test_variants_are_rows_crossed_with_the_grid(tmp_path):
    base = tmp_path / "v.gin"
    base.write_text(f"include '{QUICK}'\ninclude '{TINY}'\n"
                    "Sweep.variants = [{}, {'datasets.synthetic.augment_gain': True},\n"
                    "                  {'SAMPLING_START': 'mixture', 'SAMPLING_START_T': 0.5}]\n"
                    "Sweep.grid = {'SAMPLING_STEPS': [1, 2]}\n")
    spec = sweep.plan([base], [], [], [], tmp_path / "s")
    assert [c.bindings for c in spec.cells] == [
        {"SAMPLING_STEPS": "1"}, {"SAMPLING_STEPS": "2"},
        {"datasets.synthetic.augment_gain": "True", "SAMPLING_STEPS": "1"},
        {"datasets.synthetic.augment_gain": "True", "SAMPLING_STEPS": "2"},
        {"SAMPLING_START": "'mixture'", "SAMPLING_START_T": "0.5", "SAMPLING_STEPS": "1"},
        {"SAMPLING_START": "'mixture'", "SAMPLING_START_T": "0.5", "SAMPLING_STEPS": "2"},
    ]
    assert len({c.train_key for c in spec.cells}) == 2  # the sampling start reuses the plain training
    base.write_text(base.read_text().replace("[{}, ", "[{}, {}, "))
    with pytest.raises(UserError, match="both be"):
        sweep.plan([base], [], [], [], tmp_path / "s2")
    base.write_text(f"include '{QUICK}'\nSweep.variants = {{'SEED': 1}}\n")
    with pytest.raises(UserError, match="list of binding dicts"):
        sweep.plan([base], [], [], [], tmp_path / "s3")
    base.write_text(f"include '{QUICK}'\nSweep.variants = [{{'NOT_READ': 1}}]\n")
    with pytest.raises(UserError, match="NOT_READ"):
        sweep.plan([base], [], [], [], tmp_path / "s4")


def test_plot_labels_leave_out_what_a_variant_does_not_set():
    from toolkit.sweep_report import _series_key
    header = ["SAMPLING_START", "SAMPLING_START_T", "SAMPLING_STEPS", "vocals_SDR", "tracks"]
    assert _series_key(header, ["noise", "", 1, 8.1, 6], "SAMPLING_STEPS") == "SAMPLING_START=noise"
    assert _series_key(header, ["mixture", 0.4, 1, 8.1, 6], "SAMPLING_STEPS") == "SAMPLING_START=mixture, SAMPLING_START_T=0.4"
