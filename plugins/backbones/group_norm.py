"""GroupNorm with a faster backward for channels_last CPU tensors with few channels per group.

PyTorch's CPU ``native_group_norm_backward`` for bf16 channels_last input vectorizes
over the channels of one group; with 4 or 8 channels per group (a 32- or
64-channel level with 8 groups) it ran 3-12x slower than on a contiguous
tensor, 25 ms of a 180 ms quickstart train step. Copying to contiguous and
back costs as much as it saves (measured), so the backward here is written
with whole-tensor ops that keep the layout (the standard GroupNorm gradient,
e.g. Wu & He 2018, with sums over each group):

    dx = rstd * w * dy - rstd * A / n - rstd**3 * Bc / n * (x - mean)

where, per item and group, ``A = sum(w * dy)``, ``Bc = sum(w * dy * (x - mean))``
and ``n`` counts the group's elements. The forward is PyTorch's own kernel,
so outputs are bit-identical; gradients differ by rounding (bf16 products,
fp32 sums).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

FAST_BELOW = 16  # channels per group under which the native channels_last backward was slower (measured)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters, state dict and forward); x: (batch, channels, f, t) -> same.

    Takes the layout-keeping backward for bf16/fp16 channels_last tensors on
    the CPU with fewer than ``FAST_BELOW`` channels per group; PyTorch's otherwise.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype in (torch.bfloat16, torch.float16)  # fp32 channels_last is fast in PyTorch (measured)
            and x.dim() == 4
            and self.num_channels // self.num_groups < FAST_BELOW
            and self.affine
            and torch.is_grad_enabled()
            and (x.requires_grad or self.weight.requires_grad)
            and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous()
        ):
            return _ChannelsLastGroupNorm.apply(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class _ChannelsLastGroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, groups: int, weight, bias, eps: float):
        batch, channels = x.shape[:2]
        y, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, batch, channels, x[0, 0].numel(), groups, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.groups = groups
        return y

    @staticmethod
    def backward(ctx, dy):
        """dy: (batch, channels, f, t) channels_last -> dx (same layout), dweight, dbias: (channels,)."""
        x, weight, mean, rstd = ctx.saved_tensors
        groups, dtype = ctx.groups, x.dtype
        batch, channels = x.shape[:2]
        n = channels // groups * x[0, 0].numel()
        mean, rstd = (rearrange(s, "b g -> b g 1") for s in (mean, rstd))  # (batch, groups, 1) fp32

        def per_channel(stat):  # (batch, groups, 1) -> (batch, channels, 1, 1)
            return repeat(stat, "b g 1 -> b (g c) 1 1", c=channels // groups)

        mean_low = mean.to(dtype)  # centre on the mean as the input dtype holds it, correct the sums for the rest
        centered = x - per_channel(mean_low)
        offset = mean_low.float() - mean  # centered = (x - mean) - offset
        dy_sum = dy.sum((2, 3), dtype=torch.float32)  # (batch, channels)
        dy_centered = (dy * centered).sum((2, 3), dtype=torch.float32) + per_channel(offset)[..., 0, 0] * dy_sum
        w = weight.float()

        def group_sum(per_item_channel):  # (batch, channels) -> (batch, groups, 1)
            return rearrange(per_item_channel, "b (g c) -> b g c", g=groups).sum(2, keepdim=True)

        a, bc = group_sum(dy_sum * w), group_sum(dy_centered * w)
        k_centered = -rstd**3 * bc / n
        k_const = -rstd * a / n + k_centered * offset  # k * (x - mean) = k * centered + k * offset
        scale = rearrange(rstd * rearrange(w, "(g c) -> 1 g c", g=groups), "b g c -> b (g c) 1 1")  # rstd * w
        dx = None
        if ctx.needs_input_grad[0]:
            dx = centered.mul_(per_channel(k_centered).to(dtype))
            dx.addcmul_(dy, scale.to(dtype)).add_(per_channel(k_const).to(dtype))
        dw = db = None
        if ctx.needs_input_grad[2]:
            dw = (rearrange(dy_centered, "b (g c) -> b g c", g=groups) * rstd).sum(0).reshape(-1).to(weight.dtype)
        if ctx.needs_input_grad[3]:
            db = dy_sum.sum(0).to(weight.dtype)
        return dx, None, dw, db, None
