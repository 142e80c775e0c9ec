"""GroupNorm, optionally followed by SiLU, with a compiled kernel for channels_last CPU tensors.

In a bf16 channels_last train step, PyTorch's CPU GroupNorm and SiLU (forward
and backward) took ~33 ms of ~150 ms, three times their fp32 cost: its
channels_last GroupNorm vectorizes over the few channels of one group, its
backward converts whole tensors to fp32 for sums, and SiLU reads and writes
the tensor once more each way. ``plugins/csrc/group_norm_silu.cpp`` does the norm and
the activation in two passes forward and two backward (recomputing the
activation's input rather than storing it), vectorized over all channels of a
position (README, Performance). It runs for bf16 or fp32 channels_last CPU
tensors when ``cpu_kernels.ops()`` has a build; everything else (CUDA,
contiguous tensors, no compiler, ``TOOLKIT_CPU_KERNELS=off``) takes
``F.group_norm`` then ``F.silu``. Both paths compute the same function; they
differ by rounding (the kernel keeps y in fp32 between norm and SiLU and sums
in fp32/double, so it is the closer of the two to float64: tests).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .. import cpu_kernels


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state dict), then SiLU when ``silu``; x: (batch, channels, f, t) -> same."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 silu: bool = False, **kwargs):
        super().__init__(num_groups, num_channels, eps=eps, affine=affine, **kwargs)
        self.silu = silu

    def extra_repr(self) -> str:
        return super().extra_repr() + (", silu=True" if self.silu else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.affine and uses_kernel(x):
            if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad or self.bias.requires_grad):
                return _FusedGroupNorm.apply(x, self.weight, self.bias, self.num_groups, self.eps, self.silu)
            return cpu_kernels.ops().group_norm_forward(x, self.weight.float(), self.bias.float(), self.num_groups,
                                                        self.eps, self.silu)[0]
        y = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.silu(y) if self.silu else y


def uses_kernel(x: torch.Tensor) -> bool:
    """Whether ``GroupNorm`` takes the compiled kernel for x (builds it on the first such call)."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.numel() > 0
        and x.dtype in (torch.bfloat16, torch.float32)
        and x.is_contiguous(memory_format=torch.channels_last)
        and cpu_kernels.ops() is not None
    )


class _FusedGroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float, silu: bool):
        kernels = cpu_kernels.ops()
        w, b = weight.float(), bias.float()
        out, mean, rstd = kernels.group_norm_forward(x, w, b, groups, eps, silu)
        ctx.save_for_backward(x, w, b, mean, rstd)
        ctx.groups, ctx.silu, ctx.param_dtype = groups, silu, weight.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dz):
        """dz: (batch, channels, f, t) -> dx (x's dtype, channels_last), dweight, dbias: (channels,)."""
        x, w, b, mean, rstd = ctx.saved_tensors
        dx, dw, db = cpu_kernels.ops().group_norm_backward(dz, x, mean, rstd, w, b, ctx.groups, ctx.silu)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dw.to(ctx.param_dtype) if need[1] else None,
                db.to(ctx.param_dtype) if need[2] else None, None, None, None)
