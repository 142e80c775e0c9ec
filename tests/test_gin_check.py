"""Gin mistakes refused before any work: unread macros (typos), unquoted strings, grid axes nothing reads."""
import pytest

from conftest import REPO, assert_one_line_error, run_cli
from toolkit import config, sweep
from toolkit.errors import UserError

QUICK = [REPO / "experiments" / "quickstart.gin", REPO / "tests" / "tiny.gin"]


def test_misspelled_macro_is_refused_with_did_you_mean():
    with pytest.raises(UserError, match=r"--gin_param TRAIN_STEP=30: macro TRAIN_STEP is set but nothing reads it; did you mean 'TRAIN_STEPS'\?"):
        config.parse(QUICK, ["TRAIN_STEP=30"])


def test_unquoted_string_names_the_fix():
    with pytest.raises(UserError, match="strings need quotes: SCHEDULE='cosine'"):
        config.parse(QUICK, ["SCHEDULE=cosine"])
    config.parse(QUICK, ["SCHEDULE='cosine'", "FINAL_EVALUATION=False", "TrainConfig.max_minutes=None"])


def test_unread_macro_in_a_gin_file(tmp_path):
    extra = tmp_path / "typo.gin"
    extra.write_text("SAMPLNG_STEPS = 3\n")
    with pytest.raises(UserError, match="macro SAMPLNG_STEPS is set but nothing reads it; did you mean 'SAMPLING_STEPS'"):
        config.parse([*QUICK, extra])


@pytest.mark.parametrize("gin_file", sorted((REPO / "experiments").glob("*.gin")), ids=lambda p: p.name)
def test_shipped_experiments_pass_the_check(gin_file):
    config.parse([gin_file, REPO / "tests" / "tiny.gin"])  # binds parts this run does not build: still allowed


def test_grid_axis_nothing_reads_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"--grid SAMPLNG_STEPS: no binding reads macro SAMPLNG_STEPS; did you mean 'SAMPLING_STEPS'\?"):
        sweep.plan(QUICK, ["SAMPLNG_STEPS=1,2"], [], [], tmp_path / "sw")
    with pytest.raises(UserError, match="--gin_param TRAIN_STEP=30: macro TRAIN_STEP is set but nothing reads it"):
        sweep.plan(QUICK, ["SAMPLING_STEPS=1,2"], ["TRAIN_STEP=30"], [], tmp_path / "sw")


def test_run_refuses_before_any_work(tmp_path):
    p = run_cli("run", *QUICK, "--gin_param", "TRAIN_STEP=30", "--out", tmp_path / "r")
    assert_one_line_error(p, 2, "did you mean 'TRAIN_STEPS'")
    assert not (tmp_path / "r").exists()
