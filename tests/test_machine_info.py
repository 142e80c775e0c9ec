"""toolkit.precision.machine_info: the facts every log records, so timings and scores can be compared."""
from __future__ import annotations

import json

import torch

from toolkit.precision import machine_info


def test_machine_info_reports_cpu_capability_threads_device_and_precision():
    info = machine_info(torch.device("cpu"), "fp32")
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["threads"] == torch.get_num_threads()
    assert info["device"] == "cpu" and info["precision"] == "fp32" and info["torch"] == str(torch.__version__)
    assert json.loads(json.dumps(info)) == info  # written as is to run.json and the benchmark JSON
