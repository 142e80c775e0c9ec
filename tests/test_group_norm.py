"""plugins.backbones.group_norm: GroupNorm (+ SiLU), the compiled channels_last CPU kernel and its fallback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO, needs_cpu_kernels
from plugins import cpu_kernels
from plugins.backbones.group_norm import GroupNorm, uses_kernel


def inputs(shape, dtype, shift, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 2 + shift).to(dtype).contiguous(memory_format=torch.channels_last)
    dz = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(True), dz


def norm_of(groups, channels, silu, seed=1):
    norm = GroupNorm(groups, channels, silu=silu)
    with torch.no_grad():
        norm.weight.normal_(generator=torch.Generator().manual_seed(seed))
        norm.bias.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return norm


def grads(fn, params, x, dz):
    out = fn(x)
    return (out, *torch.autograd.grad(out, (x, *params), dz))


def pytorch_path(norm, x, dz, dtype=None):
    """F.group_norm then F.silu on the same inputs (dtype: cast first, e.g. float64 for the reference)."""
    w, b = (p.detach().clone().to(dtype or p.dtype).requires_grad_(True) for p in (norm.weight, norm.bias))
    x = x.detach().to(dtype or x.dtype).requires_grad_(True)

    def fn(v):
        y = F.group_norm(v, norm.num_groups, w, b, norm.eps)
        return F.silu(y) if norm.silu else y

    return grads(fn, (w, b), x, dz.to(dtype or dz.dtype))


def rel_err(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


@needs_cpu_kernels
def test_kernel_builds_here():
    assert cpu_kernels.ops() is not None, cpu_kernels.state()
    assert cpu_kernels.state().startswith("compiled")


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize(
    "shape, groups",
    [((4, 32, 12, 10), 8), ((3, 96, 9, 7), 8), ((1, 48, 5, 3), 4), ((2, 128, 33, 11), 8), ((2, 16, 40, 30), 2)],
)
@pytest.mark.parametrize("shift", [0.0, 5.0])  # 5: activations far from zero mean, where cancellation would show
def test_kernel_matches_float64_at_least_as_well_as_pytorch(dtype, silu, shape, groups, shift):
    norm = norm_of(groups, shape[1], silu)
    x, dz = inputs(shape, dtype, shift)
    assert uses_kernel(x)
    out, dx, dw, db = grads(norm, (norm.weight, norm.bias), x, dz)
    assert out.grad_fn.name() == "_FusedGroupNormBackward"
    assert out.dtype == dx.dtype == dtype and dw.dtype == db.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last) and dx.is_contiguous(memory_format=torch.channels_last)
    reference = pytorch_path(norm, x, dz, torch.float64)
    theirs = pytorch_path(norm, x, dz)
    for name, ours, ref, pt in zip(("out", "dx", "dw", "db"), (out, dx, dw, db), reference, theirs):
        # within 1.5 of PyTorch's own error, plus a rounding-size floor (bf16 keeps 8 bits, fp32 24)
        floor = 8e-3 if dtype == torch.bfloat16 else 2e-6
        assert rel_err(ours, ref) <= max(1.5 * rel_err(pt, ref), floor), name


@needs_cpu_kernels
def test_same_result_with_one_thread_or_two():
    """Chunks depend on the shape only, so the sums add up in the same order whatever the thread count."""
    norm = norm_of(8, 64, True)
    x, dz = inputs((3, 64, 40, 33), torch.bfloat16, 1.0)
    threads = torch.get_num_threads()
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        try:
            results.append(grads(norm, (norm.weight, norm.bias), x, dz))
        finally:
            torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_cpu_kernels
def test_inference_takes_the_kernel_without_a_graph():
    norm = norm_of(8, 32, True)
    x, _ = inputs((2, 32, 6, 5), torch.bfloat16, 0.0)
    with torch.inference_mode():
        out = norm(x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, norm(x).detach())


@needs_cpu_kernels
def test_inside_autocast_the_conv_output_is_bf16_and_grads_reach_fp32_parameters():
    conv, norm = nn.Conv2d(4, 32, 3, padding=1), norm_of(8, 32, True)
    conv, norm = (m.to(memory_format=torch.channels_last) for m in (conv, norm))
    x = torch.randn(2, 4, 8, 6).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(conv(x))
    assert out.dtype == torch.bfloat16 and out.grad_fn.name() == "_FusedGroupNormBackward"
    out.float().square().mean().backward()
    assert conv.weight.grad is not None and norm.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("case", ["contiguous", "float64", "no affine", "empty"])
def test_other_inputs_take_pytorch_ops(case):
    norm = GroupNorm(8, 32, affine=case != "no affine", silu=True).to(torch.float64 if case == "float64" else None)
    x, _ = inputs((0 if case == "empty" else 2, 32, 6, 5), torch.float64 if case == "float64" else torch.bfloat16, 0.0)
    if case == "contiguous":
        x = x.detach().contiguous().requires_grad_(True)
    out = norm(x)
    assert out.grad_fn.name() == "SiluBackward0"
    y = F.group_norm(x, 8, norm.weight, norm.bias, norm.eps)
    assert torch.equal(out, F.silu(y))


def test_without_silu_it_is_nn_group_norm():
    norm, plain = GroupNorm(8, 32), nn.GroupNorm(8, 32)
    assert norm.state_dict().keys() == plain.state_dict().keys() and isinstance(norm, nn.GroupNorm)
    x = torch.randn(2, 32, 5, 4)
    assert torch.equal(norm(x), plain(x))
    assert "silu=True" in repr(GroupNorm(8, 32, silu=True)) and "silu" not in repr(norm)


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


PROBE = """
import warnings, torch
from plugins import cpu_kernels
from plugins.backbones.group_norm import GroupNorm
x = torch.randn(2, 32, 6, 5).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_(True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = GroupNorm(8, 32, silu=True)(x)
out.float().sum().backward()
print(out.grad_fn.name(), "|", cpu_kernels.state(), "|", len(caught), caught[0].message if caught else "")
"""


def test_switched_off_by_the_environment():
    result = run_python(PROBE, TOOLKIT_CPU_KERNELS="off")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SiluBackward0 | off (TOOLKIT_CPU_KERNELS=off) | 0"), result.stdout


def test_a_failed_build_falls_back_with_one_warning(tmp_path):
    """No working compiler: one warning saying why, PyTorch's ops, a working backward."""
    result = run_python(PROBE, CXX="/bin/false", TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    grad_fn, state, warning = result.stdout.split(" | ")
    assert grad_fn == "SiluBackward0" and state.startswith("unavailable, PyTorch's ops used instead")
    assert warning.startswith("1 compiled CPU kernels unavailable") and "TOOLKIT_CPU_KERNELS=off" in warning
    assert "compiling the CPU kernels for this machine" in result.stderr  # an empty cache: a build was tried


@needs_cpu_kernels
def test_a_built_library_is_loaded_without_the_build_message():
    cpu_kernels.ops()  # built (or loaded) in this process's cache
    result = run_python(PROBE)
    assert result.returncode == 0 and result.stdout.startswith("_FusedGroupNormBackward | compiled ("), result.stdout
    assert "compiling the CPU kernels" not in result.stderr
