"""Costs that unit tests used to bound with a stopwatch: the CLI's start-up and rendering a synthetic song.

- ``cli_help_vs_python_startup``: ``toolkit --help`` (and one subcommand's help)
  in a fresh interpreter / a bare ``python -c pass``, timed in the same run;
  the CLI builds its parsers without importing torch, so ``--help`` stays quick.
- ``synth_seconds_per_audio_second``: rendering one 8-s, 44.1 kHz song of the
  default style, seconds per second of audio; ``synth_varied_vs_default``: the
  'varied' style (more presets) / the default style.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from diffmsst_plugins.datasets import synthetic as synth

SONG_SECONDS = 8.0


def _python(*args):
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True)


def test_python_startup(benchmark):
    benchmark.pedantic(_python, args=("-c", "pass"), rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("args", [("--help",), ("separate", "--help")], ids=["help", "separate-help"])
def test_cli_help(benchmark, args):
    benchmark.pedantic(_python, args=("-m", "toolkit.cli", *args), rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("style", ["default", "alt", "varied"])
def test_synth_render(benchmark, style):
    benchmark.extra_info["clip_seconds"] = SONG_SECONDS
    benchmark.pedantic(synth.render_track, args=(np.random.default_rng(0), SONG_SECONDS, 44100, style),
                       rounds=3, iterations=1)
