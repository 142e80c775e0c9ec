"""toolkit.host_memory: freed activations stay in the process under the toolkit's malloc settings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import json, os, sys, torch
    from toolkit import host_memory
    from toolkit.precision import machine_info
    before = host_memory.current()
    applied = host_memory.keep_freed_memory() if sys.argv[1] == "apply" else before
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page
    x = torch.ones(64 << 18)  # 64 MiB of float32, written so its pages are resident
    held = rss()
    del x
    print(json.dumps({"before": before, "applied": applied, "again": host_memory.keep_freed_memory() if sys.argv[1] == "apply" else None,
                      "released_mib": (held - rss()) / 2**20, "logged": machine_info()["host_allocator"]}))
""")


def probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, cwd=os.path.dirname(os.path.dirname(__file__)))
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_freed_memory_stays_mapped_only_when_applied():
    system = probe("leave")
    assert system["before"] == system["logged"] == "system malloc (defaults)"
    assert system["released_mib"] > 48, system  # glibc's default: a 64 MiB block goes back to the kernel on free
    kept = probe("apply")
    assert kept["applied"].startswith("glibc malloc keeping freed memory"), kept
    assert kept["again"] == kept["applied"] == kept["logged"]  # applied once, recorded in machine_info
    assert kept["released_mib"] < 16, kept  # the block stays for the next step's tensors


def test_opt_out_leaves_malloc_alone():
    out = probe("apply", TOOLKIT_HOST_ALLOCATOR="system")
    assert out["applied"] == "system malloc (TOOLKIT_HOST_ALLOCATOR=system)" == out["logged"]
    if sys.platform.startswith("linux"):
        assert out["released_mib"] > 48, out
