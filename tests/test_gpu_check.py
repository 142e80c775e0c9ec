"""scripts/gpu_check.sh: valid bash, a clear refusal without CUDA, and its timed run and report work on CPU."""
import subprocess
import sys

import numpy as np
import soundfile as sf

from conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.sh"


def test_the_script_is_valid_bash():
    p = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_without_cuda_it_exits_nonzero_with_one_clear_line(tmp_path):
    p = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "work")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert p.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device visible to PyTorch (torch.cuda.is_available() is False); run it on a CUDA machine"]
    assert not (tmp_path / "work").exists()  # refused before any work


def test_the_timed_run_and_the_report_work_on_cpu(tmp_path):
    import json

    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "scripts/gpu_check.py", "experiments/quickstart.gin", "tests/tiny.gin",
                        "--gin_param", "TRAIN_STEPS=5", "--warmup", "1", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("gpu_check {")]
    assert len(line) == 1, p.stdout[-3000:]
    r = json.loads(line[0].split(" ", 1)[1])
    assert r["steps"] == 5 and r["steps_timed"] == 3 and r["steps_per_s"] > 0 and r["segments_per_s"] > 0
    assert 0.0 <= r["data_wait_share"] < 1.0 and r["peak_gpu_memory_gib"] is None
    log = tmp_path / "cpu.log"
    log.write_text(p.stdout)
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros(22050 * 2, np.float32), 22050)
    rep = subprocess.run([sys.executable, "scripts/gpu_check.py", "report", str(song), "100.0", "103.0", str(log)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert "cpu" in rep.stdout and "1.500 s per s of audio" in rep.stdout, rep.stdout
