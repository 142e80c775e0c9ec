import pytest
import torch

from toolkit import registry
from toolkit.errors import UserError

registry.load_builtin_plugins()
AttentionUNet = registry.get("backbones", "attention_unet")
TINY = dict(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_heads=2, groups=4)


def inputs(batch=2, channels=2, freq=33, frames=17, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, freq, frames, generator=gen), torch.tensor([0, 999][:batch])


def perturb_output_conv(net):
    with torch.no_grad():
        net.conv_out.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("patch_size", [1, 2, 4])
@pytest.mark.parametrize("freq,frames", [(33, 17), (8, 8), (5, 3)])
def test_output_shape_any_size(patch_size, freq, frames):
    net = AttentionUNet(in_channels=2, out_channels=1, patch_size=patch_size, **TINY)
    perturb_output_conv(net)
    x, t = inputs(freq=freq, frames=frames)
    out = net(x, t)
    assert out.shape == (2, 1, freq, frames)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_default_arguments_three_levels():
    net = AttentionUNet()
    x, t = inputs(freq=9, frames=13)
    assert net(x, t).shape == (2, 1, 9, 13)


def test_zero_init_output_and_cond_is_stacked():
    net = AttentionUNet(in_channels=2, out_channels=1, **TINY)
    x, t = inputs()
    assert torch.equal(net(x, t), torch.zeros(2, 1, 33, 17))
    perturb_output_conv(net)
    torch.testing.assert_close(net(x[:, :1], t, x[:, 1:]), net(x, t))


def test_timestep_changes_output():
    net = AttentionUNet(**TINY)
    perturb_output_conv(net)
    x, _ = inputs()
    assert not torch.allclose(net(x, torch.tensor([3, 3])), net(x, torch.tensor([700, 700])))


def test_channels_last_and_bf16_autocast():
    net = AttentionUNet(patch_size=2, **TINY).to(memory_format=torch.channels_last)
    perturb_output_conv(net)
    x, t = inputs()
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, t)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 33, 17)
    reference = net(x.contiguous(), t)
    assert torch.isfinite(out).all()
    assert (out - reference).abs().max() < 0.1 * reference.abs().max()


def test_gradient_reaches_every_parameter():
    net = AttentionUNet(dropout=0.1, **TINY)
    perturb_output_conv(net)
    x, t = inputs(freq=12, frames=10)
    net(x, t).square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_norms_are_torch_group_norms_with_their_state_dict_keys():
    """Plain nn.GroupNorm (SiLU applied in forward), so checkpoints keep the keys norm*.weight / norm*.bias."""
    net = AttentionUNet(**TINY)
    norms = {name: module for name, module in net.named_modules() if name.rsplit(".", 1)[-1].startswith("norm")}
    assert norms and all(type(module) is torch.nn.GroupNorm for module in norms.values())
    assert {"down.0.blocks.0.norm1.weight", "down.0.blocks.0.norm2.bias", "mid_attention.norm.weight",
            "norm_out.bias"} <= net.state_dict().keys()


def test_res_block_is_group_norm_then_silu_then_conv():
    from diffmsst_plugins.backbones.attention_unet import ResBlock

    F = torch.nn.functional
    torch.manual_seed(0)
    block = ResBlock(8, 16, emb_dim=12, groups=4, dropout=0.0)
    x, emb = torch.randn(2, 8, 6, 5), torch.randn(2, 12)

    def norm_silu(norm, h):
        return F.silu(F.group_norm(h, 4, norm.weight, norm.bias, norm.eps))

    h = block.conv1(norm_silu(block.norm1, x)) + block.emb(emb)[:, :, None, None]
    expected = block.skip(x) + block.conv2(norm_silu(block.norm2, h))
    torch.testing.assert_close(block(x, emb), expected)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(patch_size=3), "patch_size"),
        (dict(base_channels=12, groups=8), "groups"),
        (dict(attention_levels=(5,)), "attention_levels"),
        (dict(num_heads=3), "num_heads"),
        (dict(channel_mults=()), "channel_mults"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(UserError, match=match):
        AttentionUNet(**kwargs)


def test_wrong_channels():
    net = AttentionUNet(**TINY)
    with pytest.raises(ValueError, match=r"\(batch, 2, freq, frames\)"):
        net(torch.zeros(1, 3, 8, 8), torch.tensor([1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_matches_cpu():
    net = AttentionUNet(patch_size=2, **TINY)
    perturb_output_conv(net)
    x, t = inputs()
    reference = net(x, t)
    net = net.cuda().to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = net(x.cuda(), t.cuda())
    assert out.dtype == torch.float32
    assert (out.cpu() - reference).abs().max() < 0.1 * reference.abs().max()


def test_cond_skip_adds_the_conditioning_to_the_output():
    plain = AttentionUNet(in_channels=4, out_channels=2, **TINY)
    skip = AttentionUNet(in_channels=4, out_channels=2, cond_skip=True, **TINY)
    skip.load_state_dict(plain.state_dict())  # no extra parameters
    x, t = inputs(channels=4)
    torch.testing.assert_close(skip(x, t), x[:, 2:])  # zero output conv: starts at "instrumental = mixture"
    perturb_output_conv(plain)
    perturb_output_conv(skip)
    torch.testing.assert_close(skip(x, t), plain(x, t) + x[:, 2:])
    torch.testing.assert_close(skip(x[:, :2], t, x[:, 2:]), skip(x, t))


def test_cond_skip_needs_conditioning_channels():
    with pytest.raises(UserError, match="cond_skip.*in_channels >= 2 \\* out_channels"):
        AttentionUNet(in_channels=2, out_channels=2, cond_skip=True, **TINY)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_cpu_math_attention_matches_scaled_dot_product_attention(dtype, tol):
    from diffmsst_plugins.backbones.attention_unet import MATH_ATTENTION_MAX_TOKENS, attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 40, 8, generator=gen).to(dtype).requires_grad_(True) for _ in range(3))
    dy = torch.randn(2, 4, 40, 8, generator=gen).to(dtype)
    assert 40 <= MATH_ATTENTION_MAX_TOKENS  # the explicit path is the one compared
    ours = attention(q, k, v)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    for a, b in zip(torch.autograd.grad(ours, (q, k, v), dy), torch.autograd.grad(theirs, (q, k, v), dy)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_placed_is_the_one_layout_rule():
    from toolkit.model import Denoiser, placed

    net = Denoiser(AttentionUNet(patch_size=2, **TINY))
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert placed(net, torch.device("cpu")) is net and conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain_net = placed(Denoiser(AttentionUNet(patch_size=2, **TINY)), torch.device("cpu"), channels_last=False)
    conv = next(m for m in plain_net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous() and not conv.weight.is_contiguous(memory_format=torch.channels_last)
