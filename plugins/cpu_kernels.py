"""The plugins' compiled CPU kernels (``plugins/csrc/``), built on first use for this machine.

Two users: the U-Net's GroupNorm + SiLU (``backbones/group_norm.py``) and the STFT
normalizer's encode and decode (``transforms/stft_normalizer.py``); one library, one build.

``ops()`` returns ``torch.ops.diffmsst_fused`` once the kernels are loaded, or
``None`` (callers then use PyTorch's own ops) when they are switched off with
``TOOLKIT_CPU_KERNELS=off`` or cannot be built (no C++ compiler, no ninja): that
is said once, with the reason, as a warning. ``state()`` is the ``cpu_kernels``
entry of every ``machine_info`` (benchmarks, a run's ``run.json``).

The build uses ``torch.utils.cpp_extension.load`` (ninja, the C++ compiler,
``-O3 -march=native``) into PyTorch's extension cache
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``); the name
carries a hash of the sources, flags, torch version and the CPU's feature
flags, so a cache shared with another CPU never loads code built for this one.
First build: ~10 s; later processes only load the library.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

from toolkit.precision import add_machine_fact

CSRC = Path(__file__).parent / "csrc"
SOURCES = (CSRC / "group_norm_silu.cpp", CSRC / "spectrogram.cpp")
HEADERS = (CSRC / "vec_math.h",)
# no errno: sqrt vectorizes; no trapping math: selects with computed arms vectorize (csrc/vec_math.h)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math")
ENV = "TOOLKIT_CPU_KERNELS"

_state = "not loaded yet"


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    return platform.processor()


def _name() -> str:
    digest = hashlib.sha256()
    for part in (*[p.read_bytes() for p in SOURCES + HEADERS], " ".join(FLAGS).encode(), torch.__version__.encode(),
                 _cpu_flags().encode()):
        digest.update(part)
    return f"diffmsst_cpu_kernels_{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _ninja_on_path():
    """cpp_extension runs ``ninja`` from PATH; the venv's (pip's ninja) is not on it unless the venv is activated."""
    old = os.environ.get("PATH", "")
    try:
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, old])
    except ImportError:
        pass
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _announce_build(name: str) -> None:
    """One stderr line when ``load`` is about to compile rather than load (so a first run does not look stuck)."""
    try:  # a private helper of torch's: if it moves, only the message is lost
        from torch.utils.cpp_extension import _get_build_directory

        built = (Path(_get_build_directory(name, verbose=False)) / f"{name}.so").exists()
    except Exception:  # noqa: BLE001
        return
    if not built:
        print(f"[toolkit] compiling the CPU kernels for this machine (once, ~10 s): {name}", file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=None)
def ops():
    """``torch.ops.diffmsst_fused`` with this machine's build loaded, or None (see the module docstring)."""
    global _state
    if os.environ.get(ENV, "on").lower() in ("off", "0", "false", "no"):
        _state = f"off ({ENV}={os.environ[ENV]})"
        return None
    try:
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its 'no CUDA runtime' note
        from torch.utils.cpp_extension import load

        name = _name()
        _announce_build(name)
        with _ninja_on_path():
            load(name=name, sources=[str(p) for p in SOURCES], extra_cflags=list(FLAGS),
                 extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    except Exception as err:  # noqa: BLE001  (no compiler, no ninja, a build error: fall back, say why once)
        reason = " ".join(str(err).split())[:300]
        _state = f"unavailable, PyTorch's ops used instead ({type(err).__name__}: {reason})"
        warnings.warn(f"compiled CPU kernels {_state}; GroupNorm + SiLU and STFT encoding will be slower. "
                      f"Install a C++ compiler and ninja, or set {ENV}=off to silence this.", stacklevel=2)
        return None
    _state = f"compiled ({_name()}, {' '.join(FLAGS)})"
    return torch.ops.diffmsst_fused


def state() -> str:
    """What ``ops()`` did in this process: 'compiled (...)', 'off (...)', 'unavailable (...)' or 'not loaded yet'."""
    return _state


add_machine_fact("cpu_kernels", state)  # in every machine_info: benchmarks, run.json
