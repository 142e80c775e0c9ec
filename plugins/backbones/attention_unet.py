"""A small U-Net with timestep conditioning and self-attention, for spectrograms.

After the DDPM / improved-diffusion U-Net (Ho et al. 2020; Nichol & Dhariwal 2021):
ResBlocks (GroupNorm, SiLU, 3x3 conv) with the timestep embedding added in each,
multi-head self-attention at the lowest resolutions and in the middle, one skip
connection per level, strided-conv downsampling, nearest+conv upsampling and a
zero-initialized output conv. A space-to-depth stem (``patch_size``) trades
resolution for channels so that full-resolution spectrograms stay cheap.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from toolkit import registry
from toolkit.errors import UserError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t: (batch,) -> (batch, dim), float32 (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(embedding, (0, dim - 2 * half))


class ResBlock(nn.Module):
    """x: (batch, in_ch, f, t), emb: (batch, emb_dim) -> (batch, out_ch, f, t)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + rearrange(self.emb(emb), "b c -> b c 1 1")
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


MATH_ATTENTION_MAX_TOKENS = 1024


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v; q, k, v: (batch, heads, tokens, d) -> (batch, heads, tokens, d).

    On the CPU, up to ``MATH_ATTENTION_MAX_TOKENS`` tokens, as explicit matmuls
    and a softmax in the input's dtype (PyTorch's CPU softmax accumulates bf16
    in fp32, so the scores need no cast): at these sizes PyTorch's fused CPU
    kernel is the slower of the two. Elsewhere, and on CUDA always,
    ``F.scaled_dot_product_attention``.
    """
    if q.device.type == "cpu" and q.shape[-2] <= MATH_ATTENTION_MAX_TOKENS:
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
        return scores.softmax(-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all (f, t) positions; x: (batch, ch, f, t) -> same."""

    def __init__(self, ch: int, num_heads: int, groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        freq = x.shape[2]
        q, k, v = rearrange(
            self.qkv(self.norm(x)), "b (three h d) f t -> three b h (f t) d", three=3, h=self.num_heads
        )
        out = attention(q, k, v)
        return x + self.proj(rearrange(out, "b h (f t) d -> b (h d) f t", f=freq))


class Level(nn.Module):
    """ResBlocks, each followed by attention when ``attention`` is set."""

    def __init__(self, in_ch, out_ch, num_blocks, emb_dim, groups, dropout, attention, num_heads):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(in_ch if i == 0 else out_ch, out_ch, emb_dim, groups, dropout) for i in range(num_blocks)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_ch, num_heads, groups) if attention else nn.Identity() for _ in range(num_blocks)
        )

    def forward(self, x, emb):
        for block, attention in zip(self.blocks, self.attentions):
            x = attention(block(x, emb))
        return x


@registry.register("backbones", "attention_unet")
class AttentionUNet(nn.Module):
    """U-Net: x: (batch, in_channels, freq, frames), t: LongTensor (batch,) -> (batch, out_channels, freq, frames).

    For Diff-MSST ``x`` is the noisy instrumental spectrogram stacked with the
    mixture along channels (``in_channels = 2 * out_channels``). Level ``i`` has
    ``base_channels * channel_mults[i]`` channels at 1/2**i of the (patched)
    resolution; ``attention_levels`` lists the levels (0 = finest) with
    self-attention. Any input size works: it is zero-padded to a multiple of
    ``patch_size * 2**(len(channel_mults) - 1)`` and the output cropped back.
    ``cond_skip`` adds the conditioning (the last ``out_channels`` input channels,
    the mixture) to the output: with ``PREDICTION = 'x0'`` the network then learns
    instrumental - mixture, zero where the mixture holds no voice, instead of the
    whole spectrogram (the residual form of mask-estimating separators); it starts
    from "instrumental = mixture" since the output conv is zero at init.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        base_channels: int = 32,
        channel_mults=(1, 2, 4),
        num_res_blocks: int = 1,
        attention_levels=(2,),
        num_heads: int = 4,
        dropout: float = 0.0,
        patch_size: int = 1,
        groups: int = 8,
        cond_skip: bool = False,
    ):
        super().__init__()
        channel_mults, attention_levels = tuple(channel_mults), tuple(attention_levels)
        _check_args(base_channels, channel_mults, num_res_blocks, attention_levels, num_heads, patch_size, groups)
        self.in_channels, self.out_channels, self.patch_size = in_channels, out_channels, patch_size
        if cond_skip and in_channels < 2 * out_channels:
            raise UserError(f"backbones.attention_unet: cond_skip adds the last {out_channels} input channel(s) (the "
                            f"conditioning) to the output; it needs in_channels >= 2 * out_channels, got {in_channels}")
        self.cond_skip = bool(cond_skip)
        self.multiple = patch_size * 2 ** (len(channel_mults) - 1)
        self.base_channels = base_channels
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        widths = [base_channels * m for m in channel_mults]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, base_channels, 3, padding=1)

        def level(i, in_ch, out_ch):
            return Level(in_ch, out_ch, num_res_blocks, emb_dim, groups, dropout, i in attention_levels, num_heads)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = base_channels
        for i, width in enumerate(widths):
            self.down.append(level(i, ch, width))
            self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1) if i < last else nn.Identity())
            ch = width
        self.mid1 = ResBlock(ch, ch, emb_dim, groups, dropout)
        self.mid_attention = SelfAttention(ch, num_heads, groups)
        self.mid2 = ResBlock(ch, ch, emb_dim, groups, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1) if i < last else nn.Identity())
            self.up.append(level(i, ch + widths[i], widths[i]))
            ch = widths[i]
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, out_channels * patch_size**2, 3, padding=1)
        # zero output at init: the first predictions are 0 (improved-diffusion)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, c, freq, frames), t: (batch,), cond: (batch, in_channels - c, freq, frames) or None.

        ``cond`` (if given) is stacked after x along channels, so ``net(x_t, t, cond)``
        is the call that losses and samplers make (through ``toolkit.model.raw_fn``).
        """
        if cond is not None:
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"AttentionUNet expects x (+ cond): (batch, {self.in_channels}, freq, frames) in all, "
                f"got {tuple(x.shape)}"
            )
        freq, frames = x.shape[-2:]
        pad_f, pad_t = -freq % self.multiple, -frames % self.multiple
        h = F.pad(x, (0, pad_t, 0, pad_f))
        p = self.patch_size
        h = rearrange(h, "b c (f p1) (t p2) -> b (c p1 p2) f t", p1=p, p2=p)
        emb = self.time_mlp(timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.base_channels).to(h.dtype))
        h = self.conv_in(h)
        skips = []
        for level, downsample in zip(self.down, self.downsample):
            h = level(h, emb)
            skips.append(h)
            h = downsample(h)
        h = self.mid2(self.mid_attention(self.mid1(h, emb)), emb)
        for upsample, level in zip(self.upsample, self.up):
            if not isinstance(upsample, nn.Identity):
                h = upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
        h = self.conv_out(F.silu(self.norm_out(h)))
        h = rearrange(h, "b (c p1 p2) f t -> b c (f p1) (t p2)", p1=p, p2=p)[..., :freq, :frames]
        if self.cond_skip:
            h = h.float() + x[:, -self.out_channels:].float()
        return h.to(x.dtype)


def _check_args(base_channels, channel_mults, num_res_blocks, attention_levels, num_heads, patch_size, groups):
    where = "backbones.attention_unet"
    if patch_size not in (1, 2, 4):
        raise UserError(f"{where}: patch_size must be 1, 2 or 4, got {patch_size}")
    if not channel_mults or any(int(m) != m or m < 1 for m in channel_mults):
        raise UserError(f"{where}: channel_mults must be positive integers, got {channel_mults}")
    if num_res_blocks < 1:
        raise UserError(f"{where}: num_res_blocks must be >= 1, got {num_res_blocks}")
    if groups < 1 or base_channels % groups:
        raise UserError(f"{where}: base_channels ({base_channels}) must be a multiple of groups ({groups})")
    bad = [level for level in attention_levels if not 0 <= level < len(channel_mults)]
    if bad:
        raise UserError(
            f"{where}: attention_levels {bad} out of range 0..{len(channel_mults) - 1} (one per channel_mults entry)"
        )
    widths = [base_channels * channel_mults[level] for level in (*attention_levels, len(channel_mults) - 1)]
    if num_heads < 1 or any(w % num_heads for w in widths):
        raise UserError(f"{where}: num_heads ({num_heads}) must divide the channels of every attention level {widths}")
