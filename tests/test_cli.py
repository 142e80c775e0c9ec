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


def test_help_imports_nothing_heavy():
    # its start-up time is benchmarks/test_bench_startup.py's (a stopwatch here would fail on a busy machine)
    import subprocess
    import sys

    probe = ("import sys; from toolkit import cli; cli.build_parser(); "
             "print(sorted(m for m in ('torch', 'numpy', 'soundfile', 'torchaudio', 'matplotlib', 'museval') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]", p.stdout
    for args in (["--help"], ["--version"], *[[cmd, "--help"] for cmd in ("run", "list", "data", "separate", "evaluate", "sweep")]):
        assert run_cli(*args, check=0).stdout.strip(), args


def test_help_shows_defaults():
    p = run_cli("separate", "--help", check=0)
    for text in ("(default: 0.25)", "(default: wav)", "(default: {model}/{track}/{stem}.{ext})", "(default: 0)"):
        assert text in " ".join(p.stdout.split()), text
    assert "--max-minutes" in run_cli("run", "--help", check=0).stdout


def test_list_fits_80_columns_and_shows_plugin_file_and_options(tmp_path):
    plugin = tmp_path / "euler_ddim.py"
    plugin.write_text(
        "from toolkit import registry\n"
        "@registry.register('samplers', 'euler_ddim')\n"
        "def euler_ddim(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None, churn=0.5):\n"
        "    '''Euler steps: a plugin example.'''\n"
        "    return x_T\n")
    p = run_cli("list", "--plugin", plugin, env={"COLUMNS": "80"}, check=0)
    assert max(len(line) for line in p.stdout.splitlines()) <= 80
    text = "".join(p.stdout.replace("│", " ").split())  # long paths fold inside their cell
    assert "churn=0.5" in text and "eta=0.0" in text and f"{plugin.parent.name}/euler_ddim.py" in text
    assert "toolkit_plugin_" not in p.stdout


def test_quickstart_has_no_wall_clock_stop_and_max_minutes_says_when_it_stops(tmp_path):
    import gin

    from toolkit import config

    config.parse([REPO / "experiments" / "quickstart.gin"])
    assert gin.query_parameter("TrainConfig.max_minutes") is None  # its result must not depend on the machine
    gin.clear_config()
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", REPO / "tests" / "tiny.gin", "--gin_param", "TRAIN_STEPS=500",
                "--max-minutes", "0.0001", "--out", tmp_path / "r", check=0)
    assert "stopped early" in " ".join(p.stdout.split())
    assert_one_line_error(run_cli("run", REPO / "experiments" / "quickstart.gin", "--max-minutes", "0",
                                  "--out", tmp_path / "r2"), 2, "--max-minutes")
