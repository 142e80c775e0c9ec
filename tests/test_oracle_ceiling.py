"""scripts/oracle_ceiling.py: the mixture-phase ceiling is well above the mixture baseline."""
import importlib.util
import re
import subprocess
import sys

from conftest import REPO

from diffmsst_plugins.datasets.synthetic import synthesize


def test_oracle_ceiling_scores_a_synthetic_set(tmp_path, capsys):
    root = synthesize(tmp_path / "synth", tracks=1, test_tracks=1, seconds=3.0, sample_rate=22050, seed=5)
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "oracle_ceiling.py"), "--root", str(root)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    gain = _gain(p.stdout)
    assert gain > 5.0, p.stdout  # a true magnitude separates far better than the mixture
    # the phase-sensitive target is the nearest magnitude given the mixture phase: a higher ceiling
    spec = importlib.util.spec_from_file_location("oracle_ceiling", REPO / "scripts" / "oracle_ceiling.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--root", str(root), "--target", "psa"]) == 0
    out = capsys.readouterr().out
    assert "target psa" in out and _gain(out) > gain + 1.0, (p.stdout, out)


def _gain(stdout: str) -> float:
    return float(re.search(r"oracle vocal cSDR gain over the mixture \(median over frames, then tracks\): ([+-][\d.]+) dB", stdout).group(1))


def test_oracle_ceiling_bad_root_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "oracle_ceiling.py"), "--root", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "not a folder" in p.stderr
