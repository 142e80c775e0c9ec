"""scripts/profile_train_step.py: both executions profiled, every op charged to one family."""
import re
import subprocess
import sys

from conftest import REPO


def test_profile_prints_each_family_for_both_executions():
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_train_step.py"), "--steps", "1", "--top", "0"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = dict(re.findall(r"^  (\S.*?)\s{2,}([\d.]+\s+[\d.]+\s+[\d.]+)$", p.stdout, re.M))
    for family in ("convolution (fwd + bwd)", "GroupNorm (fwd + bwd)", "SiLU (fwd + bwd)", "attention", "optimizer",
                   "median step (unprofiled)"):
        assert family in rows, p.stdout
    default, fp32, ratio = map(float, rows["convolution (fwd + bwd)"].split())
    assert default > 0 and fp32 > 0 and abs(ratio - fp32 / default) < 0.01 * ratio
