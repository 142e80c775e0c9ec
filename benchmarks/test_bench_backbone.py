"""The attention U-Net: train step, vs diffusers' UNet2DModel, and achieved FLOP/s.

Ratios (computed by ``report.py`` from these medians):

- ``default_vs_fp32_eager``: fp32 contiguous eager step time / toolkit default step time
  (channels_last + ``autocast`` with the ``auto`` precision, as ``Trainer`` runs it);
- ``vs_diffusers_unet2d``: diffusers ``UNet2DModel`` step time / ours, the same input
  behind the same pad + space-to-depth stem and the same precision policy, the
  diffusers widths chosen so its parameter count is within 10% of ours;
- ``backbone_peak_fraction``: forward GFLOP/s (``FlopCounterMode``) / GFLOP/s of a
  large matmul in the same precision.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from toolkit.precision import autocast
from toolkit.train import adamw

# Train-step medians over 11 / 7 rounds: with 5 / 3 the fp32 median moved 249-266 ms between runs of the same
# code (the default one 135-139), and the ratio with it (1.79-1.96x); ~5 s more per run.
TRAIN_ROUNDS, FP32_ROUNDS, FORWARD_ROUNDS, MATMUL_ROUNDS = 11, 7, 10, 10


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def batch(sizes, device):
    return make_batch(sizes, device)


def make_batch(sizes, device):
    """x: (batch, 2, freq, frames) noisy spec + mixture, t: (batch,), target: (batch, 1, freq, frames)."""
    gen = torch.Generator().manual_seed(0)
    b, _, f, t = sizes.spec_shape()
    x = torch.randn(b, 2, f, t, generator=gen).to(device)
    timesteps = torch.randint(0, sizes.num_timesteps, (b,), generator=gen).to(device)
    target = torch.randn(b, 1, f, t, generator=gen).to(device)
    return x, timesteps, target


def as_toolkit_default(net: nn.Module, x: torch.Tensor):
    """The trainer's layout: channels_last weights and input on CPU and CUDA."""
    if x.device.type in ("cpu", "cuda"):
        return net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return net, x


def train_step(net, x, t, target, device, precision, sync):
    """One forward + backward + AdamW step, closed over its optimizer: ``() -> None``."""
    opt = adamw(net.parameters(), device, lr=1e-4)  # the trainer's optimizer, for every network compared
    scaler = torch.amp.GradScaler("cuda", enabled=(precision == "fp16" and device.type == "cuda"))
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            out = net(x, t)
        loss = F.mse_loss(out.float(), target)  # losses in fp32, as the toolkit's
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sync()

    return step


def run_train_bench(benchmark, net, x, t, target, device, precision, sync, rounds, **info):
    benchmark.extra_info.update(params=parameter_count(net), batch=x.shape[0], input_shape=list(x.shape),
                                precision=precision, **info)
    benchmark.pedantic(train_step(net, x, t, target, device, precision, sync), rounds=rounds, warmup_rounds=1)


@pytest.mark.benchmark(group="backbone-train")
def test_train_step_default(benchmark, sizes, make_backbone, batch, device, precision, sync):
    x, t, target = batch
    net, x = as_toolkit_default(make_backbone(sizes.backbone), x)
    run_train_bench(benchmark, net, x, t, target, device, precision, sync, TRAIN_ROUNDS, layout="channels_last")


@pytest.mark.benchmark(group="backbone-train")
def test_train_step_fp32_eager(benchmark, sizes, make_backbone, batch, device, sync):
    x, t, target = batch
    net = make_backbone(sizes.backbone)
    run_train_bench(benchmark, net, x.contiguous(), t, target, device, "fp32", sync, FP32_ROUNDS, layout="contiguous")


# -- diffusers ----------------------------------------------------------------------------------------------------
class PatchedUNet2D(nn.Module):
    """diffusers' ``UNet2DModel`` behind AttentionUNet's pad + space-to-depth stem: (b, c, f, t) -> (b, out, f, t)."""

    def __init__(self, unet: nn.Module, patch_size: int, multiple: int):
        super().__init__()
        self.unet, self.patch_size, self.multiple = unet, patch_size, multiple

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        freq, frames = x.shape[-2:]
        p = self.patch_size
        h = F.pad(x, (0, -frames % self.multiple, 0, -freq % self.multiple))
        h = rearrange(h, "b c (f p1) (t p2) -> b (c p1 p2) f t", p1=p, p2=p)
        h = self.unet(h, t, return_dict=False)[0]
        h = rearrange(h, "b (c p1 p2) f t -> b c (f p1) (t p2)", p1=p, p2=p)
        return h[..., :freq, :frames]


def diffusers_config(backbone: dict, widths: tuple[int, ...]) -> dict:
    """UNet2DModel arguments mirroring an attention_unet configuration with other level widths.

    Same levels, res blocks per level, attention levels, groups and stem; diffusers
    has one head size for every level, so it is the divisor of every attention
    width giving the first attention level closest to ``num_heads`` heads.
    """
    mults = tuple(backbone.get("channel_mults", (1, 2, 4)))
    attention = tuple(backbone.get("attention_levels", (len(mults) - 1,)))
    attn_widths = [widths[i] for i in attention] + [widths[-1]]
    g = math.gcd(*attn_widths)
    heads = backbone.get("num_heads", 4)
    head_dim = min((d for d in range(1, g + 1) if g % d == 0), key=lambda d: (abs(attn_widths[0] // d - heads), -d))
    patch = backbone.get("patch_size", 1)
    return dict(
        sample_size=None,
        in_channels=2 * patch**2,
        out_channels=patch**2,
        block_out_channels=tuple(widths),
        layers_per_block=backbone.get("num_res_blocks", 1),
        down_block_types=tuple("AttnDownBlock2D" if i in attention else "DownBlock2D" for i in range(len(mults))),
        up_block_types=tuple("AttnUpBlock2D" if i in attention else "UpBlock2D" for i in reversed(range(len(mults)))),
        norm_num_groups=backbone.get("groups", 8),
        attention_head_dim=head_dim,
        dropout=backbone.get("dropout", 0.0),
    )


def matched_diffusers_unet(backbone: dict, target_params: int, device, seed: int = 0):
    """(PatchedUNet2D, its config) with the parameter count closest to ``target_params``.

    diffusers' decoder has one more ResBlock per level than ours, so at equal
    widths it is larger; the widths are ours scaled by a common factor and
    rounded to multiples of ``groups``.
    """
    from diffusers import UNet2DModel

    groups = backbone.get("groups", 8)
    base = backbone.get("base_channels", 32)
    mults = tuple(backbone.get("channel_mults", (1, 2, 4)))
    candidates = {tuple(groups * max(1, round(scale / 100 * base * m / groups)) for m in mults) for scale in range(50, 151, 2)}
    best = None
    for widths in sorted(candidates):
        config = diffusers_config(backbone, widths)
        with torch.device("meta"):  # counting parameters needs no memory and no init
            count = parameter_count(UNet2DModel(**config))
        if best is None or abs(count - target_params) < abs(best[0] - target_params):
            best = (count, config)
    count, config = best
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DModel(**config)
    patch = backbone.get("patch_size", 1)
    multiple = patch * 2 ** (len(mults) - 1)
    return PatchedUNet2D(unet, patch, multiple).to(device), config


@pytest.mark.benchmark(group="backbone-train")
def test_train_step_diffusers_unet2d(benchmark, sizes, make_backbone, batch, device, precision, sync):
    try:
        import diffusers  # noqa: F401
    except Exception as exc:  # an incompatible install raises more than ImportError
        pytest.skip(f"diffusers cannot be imported ({type(exc).__name__}: {exc}); `.venv/bin/pip install diffusers`")
    ours = parameter_count(make_backbone(sizes.backbone))
    net, config = matched_diffusers_unet(sizes.backbone, ours, device)
    theirs = parameter_count(net)
    assert abs(theirs - ours) <= 0.1 * ours, f"no diffusers width within 10% of {ours} parameters (closest {theirs})"
    x, t, target = batch
    net, x = as_toolkit_default(net, x)
    run_train_bench(benchmark, net, x, t, target, device, precision, sync, TRAIN_ROUNDS, layout="channels_last",
                    attention_unet_params=ours, diffusers_version=diffusers.__version__,
                    block_out_channels=list(config["block_out_channels"]),
                    attention_head_dim=config["attention_head_dim"])


# -- achieved FLOP/s --------------------------------------------------------------------------------------------
def sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """2 * b * h * (L_q * L_k * d (scores) + L_q * L_k * d_v (weighted sum)): FlopCounterMode misses the CPU kernel."""
    b, h, lq, d = query_shape
    lk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * lq * lk * (d + dv)


def forward_flops(net, x, t, device, precision) -> int:
    mapping = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = sdpa_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), autocast(device, precision), counter:
        net(x, t)
    return counter.get_total_flops()


@pytest.mark.benchmark(group="backbone-flops")
def test_forward_default(benchmark, sizes, make_backbone, batch, device, precision, sync):
    x, t, _ = batch
    net, x = as_toolkit_default(make_backbone(sizes.backbone), x)
    net.eval()
    flops = forward_flops(net, x, t, device, precision)

    def forward():
        with torch.no_grad(), autocast(device, precision):
            net(x, t)
        sync()

    benchmark.extra_info.update(flops=flops, params=parameter_count(net), input_shape=list(x.shape), precision=precision)
    benchmark.pedantic(forward, rounds=FORWARD_ROUNDS, warmup_rounds=1)


@pytest.mark.benchmark(group="backbone-flops")
def test_matmul_peak(benchmark, sizes, device, precision, sync):
    n = sizes.matmul_size
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)

    def matmul():
        torch.mm(a, b)
        sync()

    benchmark.extra_info.update(flops=2 * n**3, n=n, dtype=str(dtype).removeprefix("torch."))
    benchmark.pedantic(matmul, rounds=MATMUL_ROUNDS, warmup_rounds=2)


# -- the convolutions alone: default_vs_fp32_eager if only they ran ------------------------------------------------
def conv_calls(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> list[tuple[nn.Conv2d, tuple[int, ...]]]:
    """(module, input shape) of every ``Conv2d`` call in one forward of ``net``, in call order."""
    calls = []
    hooks = [m.register_forward_pre_hook(lambda m, args: calls.append((m, tuple(args[0].shape))))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(x, t)
    finally:
        for h in hooks:
            h.remove()
    return calls


def run_conv_bench(benchmark, net, x, t, device, precision, layout, sync, rounds):
    """Forward + backward of every convolution of one train step, on inputs of the shapes they see, nothing else.

    The first convolution (the stem, on data) gets no input gradient, as in training.
    """
    net = net.to(memory_format=layout)
    calls = conv_calls(net, x.contiguous(memory_format=layout), t)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=gen).to(device).contiguous(memory_format=layout).requires_grad_(i > 0)
              for i, (_, shape) in enumerate(calls)]
    grads = []

    def step():
        net.zero_grad(set_to_none=True)
        with autocast(device, precision):
            outs = [module(inp) for (module, _), inp in zip(calls, inputs)]
        if not grads:
            grads.extend(torch.randn(o.shape, generator=gen).to(device, o.dtype).contiguous(memory_format=layout)
                         for o in outs)
        torch.autograd.backward(outs, grads)
        sync()

    benchmark.extra_info.update(convolutions=len(calls), precision=precision,
                                layout="channels_last" if layout is torch.channels_last else "contiguous")
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1)


@pytest.mark.benchmark(group="backbone-convs")
def test_convs_default(benchmark, sizes, make_backbone, batch, device, precision, sync):
    x, t, _ = batch
    run_conv_bench(benchmark, make_backbone(sizes.backbone), x, t, device, precision, torch.channels_last, sync,
                   TRAIN_ROUNDS)


@pytest.mark.benchmark(group="backbone-convs")
def test_convs_fp32_eager(benchmark, sizes, make_backbone, batch, device, sync):
    x, t, _ = batch
    run_conv_bench(benchmark, make_backbone(sizes.backbone), x, t, device, "fp32", torch.contiguous_format, sync,
                   FP32_ROUNDS)
