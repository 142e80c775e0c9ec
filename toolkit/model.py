"""The conditional denoiser and the ``model_fn`` that samplers call.

Conditioning is by channel concatenation: the backbone reads
``[x_t, mixture]`` (batch, 2*channels, freq, frames) and predicts, in the
diffusion's parameterisation (eps, x0 or v), the instrumental part
(batch, channels, freq, frames). Samplers get that raw prediction and convert
it with ``diffusion.to_x0`` / ``diffusion.to_eps`` (float64, see
docs/samplers.md), so third-party samplers work with every target and an x0
prediction is never rounded through eps.
"""
from __future__ import annotations

import torch
from torch import nn

from .precision import autocast

# where convolutions run fastest on channels-last tensors: weights and inputs take that layout there
CHANNELS_LAST_DEVICES = ("cpu", "cuda")


class Denoiser(nn.Module):
    """``net(x_t, t, cond) -> raw prediction``; the diffusion process is not inside."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x_t, cond], dim=1)
        if x.device.type in CHANNELS_LAST_DEVICES:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x, t)


def placed(net: nn.Module, device: torch.device, channels_last: bool = True) -> nn.Module:
    """``net`` on ``device``, with channels-last weights where :meth:`Denoiser.forward` gives channels-last inputs."""
    net = net.to(device)
    if channels_last and torch.device(device).type in CHANNELS_LAST_DEVICES:
        net = net.to(memory_format=torch.channels_last)
    return net


def raw_fn(net: nn.Module, device: torch.device, precision: str):
    """``model_fn(x_t, t, cond) -> raw prediction`` in float32, under the precision policy.

    This is the ``model_fn`` of the sampler contract (the prediction's type is
    ``diffusion.prediction``) and the network call of the losses.
    """

    def fn(x_t, t, cond):
        with autocast(device, precision):
            out = net(x_t, t, cond)
        return out.float()

    return fn

