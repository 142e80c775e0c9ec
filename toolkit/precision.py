"""Execution policy: device, precision and the machine facts every log records.

Precision ``auto``: bf16 autocast on CPU only where PyTorch's kernels run at
AVX-512 or better (oneDNN's bf16 paths need it); on AVX2-only CPUs bf16
matmuls are far slower than fp32, so those get fp32. ``auto`` never picks
fp16 on CPU; an explicit ``fp16`` runs there (slowly) so that the fp16 path,
GradScaler included, is testable without a GPU. On CUDA, ``auto`` is bf16
where supported, else fp16 (with a GradScaler).
"""
from __future__ import annotations

import contextlib
import os
import platform

import torch

from .errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_native_bf16() -> bool:
    """Whether bf16 runs fast on this CPU: PyTorch's own capability is AVX-512 (which AMX CPUs also report)."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def resolve_device(device: str | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device '{device}'; use cpu, cuda or cuda:N") from None


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' | 'fp32' | 'bf16' | 'fp16' -> the precision actually used on ``device``."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if device.type == "cpu":
        if precision == "auto":
            return "bf16" if cpu_has_native_bf16() else "fp32"
        return precision
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def autocast(device: torch.device, precision: str):
    """Autocast context for the resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def machine_info(device: torch.device | None = None, precision: str | None = None) -> dict:
    """Facts that make a timing or a score comparable; recorded in every log."""
    device = device or resolve_device("auto")
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": str(torch.__version__),
        "device": str(device),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if precision is not None:
        info["precision"] = precision
    return info
