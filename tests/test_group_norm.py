"""plugins.backbones.group_norm: same forward as nn.GroupNorm, a layout-keeping backward that matches it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plugins.backbones.group_norm import GroupNorm, _ChannelsLastGroupNorm


def inputs(shape, dtype, shift, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) + shift).to(dtype).contiguous(memory_format=torch.channels_last)
    dy = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(True), dy


def grads(norm, x, dy):
    out = norm(x)
    return (out, *torch.autograd.grad(out, (x, norm.weight, norm.bias), dy))


def reference(norm, x, dy):
    """float64 gradients of the same GroupNorm."""
    ref = nn.GroupNorm(norm.num_groups, norm.num_channels, eps=norm.eps).double()
    ref.load_state_dict(norm.state_dict())
    return grads(ref, x.detach().double().requires_grad_(True), dy.double())


@pytest.mark.parametrize("channels", [32, 64, 96])
@pytest.mark.parametrize("shift", [0.0, 5.0])  # 5: activations far from zero mean, where cancellation would show
def test_bf16_channels_last_gradients_match_float64(channels, shift):
    norm = GroupNorm(8, channels)
    with torch.no_grad():
        norm.weight.normal_(generator=torch.Generator().manual_seed(1))
        norm.bias.normal_(generator=torch.Generator().manual_seed(2))
    x, dy = inputs((4, channels, 12, 10), torch.bfloat16, shift)
    out, dx, dw, db = grads(norm, x, dy)
    assert out.grad_fn.name() == "_ChannelsLastGroupNormBackward"  # the fast path ran
    assert torch.equal(out, F.group_norm(x, 8, norm.weight, norm.bias, norm.eps))  # PyTorch's own forward
    assert dx.dtype == torch.bfloat16 and dx.is_contiguous(memory_format=torch.channels_last)
    _, rdx, rdw, rdb = reference(norm, x, dy)
    # bf16 keeps 8 bits: a few of its ulps off in dx; dw within 5e-3 needs the mean correction (9e-3 without, shift 5)
    for got, want, tol in ((dx, rdx, 1.5e-2), (dw, rdw, 5e-3), (db, rdb, 1e-5)):
        assert ((got.double() - want).abs().max() / want.abs().max()).item() < tol


def test_the_gradient_in_float32_matches_pytorch_closely():
    """The formula itself, without bf16 rounding (float32 input takes PyTorch's kernel in GroupNorm: fast there)."""
    plain = nn.GroupNorm(8, 32)
    with torch.no_grad():
        plain.weight.normal_(generator=torch.Generator().manual_seed(1))
    x, dy = inputs((2, 32, 9, 7), torch.float32, 2.0)
    out = _ChannelsLastGroupNorm.apply(x, 8, plain.weight, plain.bias, plain.eps)
    ours = torch.autograd.grad(out, (x, plain.weight, plain.bias), dy)
    _, *theirs = grads(plain, x, dy)
    for got, want in zip(ours, theirs):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["contiguous", "many channels per group", "no grad", "float32"])
def test_other_inputs_take_pytorch_kernel(case):
    channels = 128 if case == "many channels per group" else 32
    norm = GroupNorm(8, channels)
    x, _ = inputs((2, channels, 6, 5), torch.float32 if case == "float32" else torch.bfloat16, 0.0)
    if case == "contiguous":
        x = x.detach().contiguous().requires_grad_(True)
    with torch.set_grad_enabled(case != "no grad"):
        out = norm(x)
    assert out.grad_fn is None if case == "no grad" else out.grad_fn.name() == "NativeGroupNormBackward0"


def test_same_parameters_as_nn_group_norm():
    assert GroupNorm(8, 32).state_dict().keys() == nn.GroupNorm(8, 32).state_dict().keys()
    assert isinstance(GroupNorm(8, 32), nn.GroupNorm)
