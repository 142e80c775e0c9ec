from pathlib import Path

from conftest import REPO, assert_one_line_error, run_cli


def test_help_and_version():
    p = run_cli("--help", check=0)
    for cmd in ("run", "list", "data", "separate", "evaluate", "sweep"):
        assert cmd in p.stdout
    p = run_cli("--version", check=0)
    assert "toolkit" in p.stdout


def test_list_shows_kinds_and_builtins():
    p = run_cli("list", check=0)
    for name in ("stft_normalizer", "attention_unet", "linear", "cosine", "ddpm", "ddim", "counterfactual"):
        assert name in p.stdout
    for kind in ("transforms", "backbones", "schedules", "samplers", "losses"):
        assert kind in p.stdout


def test_unknown_sampler_in_gin_file(tmp_path):
    gin_file = tmp_path / "typo.gin"
    gin_file.write_text("samplers.ddmi.steps = 10\n")
    out = tmp_path / "out"
    p = run_cli("run", gin_file, "--out", out)
    assert_one_line_error(p, 2, "did you mean 'samplers.ddim'")
    assert not out.exists()


def test_unknown_sampler_macro(tmp_path):
    out = tmp_path / "out"
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", "--gin_param", "SAMPLER='ddmi'", "--out", out)
    assert_one_line_error(p, 2, "did you mean 'ddim'")
    assert not out.exists()


def test_gin_syntax_error_names_file_and_line(tmp_path):
    gin_file = tmp_path / "bad.gin"
    gin_file.write_text("SEED = 0\nSEED = = 3\n")
    p = run_cli("run", gin_file)
    assert_one_line_error(p, 2, "bad.gin:2")


def test_missing_gin_file(tmp_path):
    p = run_cli("run", tmp_path / "nope.gin")
    assert_one_line_error(p, 2, "no such gin file")


def test_debug_shows_traceback(tmp_path):
    p = run_cli("--debug", "run", tmp_path / "nope.gin")
    assert p.returncode == 2 and "Traceback" in p.stderr


def test_plugin_file_outside_repo_is_listed(tmp_path):
    plugin = tmp_path / "my_sampler.py"
    plugin.write_text(
        "from toolkit import registry\n"
        "@registry.register('samplers', 'my_sampler')\n"
        "def my_sampler(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None):\n"
        "    '''Returns the noise: a plugin example.'''\n"
        "    return x_T\n")
    p = run_cli("list", "samplers", "--plugin", plugin, check=0)
    assert "my_sampler" in p.stdout


def test_unknown_kind_in_list():
    assert_one_line_error(run_cli("list", "samplerz"), 2, "did you mean 'samplers'")


def test_bad_argument_is_one_line():
    assert_one_line_error(run_cli("run"), 2)
