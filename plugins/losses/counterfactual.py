"""Diff-MSST's loss: the diffusion objective plus a counterfactual vocal term.

The network generates the instrumental; the vocals are what the mixture has left
("counterfactual": had the instrumental been x0_hat, the vocals would be
mixture - x0_hat). Penalizing that estimate against the true vocals ties the
one-step instrumental estimate to the quantity that is scored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit import registry
from toolkit.errors import UserError


def subtract_from_mixture(x0_hat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Vocals ~= mixture - instrumental, both (batch, channels, freq, frames) normalized specs.

    An approximation: magnitudes do not add and the two specs' normalizations need
    not match; the trainer passes a transform-aware ``to_vocals`` instead.
    """
    return cond - x0_hat


@registry.register("losses", "counterfactual")
class CounterfactualLoss:
    """MSE(pred, diffusion target) + vocal_weight * MSE(to_vocals(x0_hat, cond), vocals)."""

    def __init__(self, vocal_weight: float = 0.5):
        if not vocal_weight >= 0.0:
            raise UserError(f"losses.counterfactual: vocal_weight must be >= 0, got {vocal_weight}")
        self.vocal_weight = vocal_weight

    def __repr__(self):
        return f"CounterfactualLoss(vocal_weight={self.vocal_weight})"

    def __call__(self, net, diffusion, x0, cond, vocals, *, t, noise, to_vocals=None):
        """Loss of ``net`` on one batch -> (total: scalar, parts: {"diffusion", "vocal", "total"}).

        x0: (batch, channels, freq, frames) normalized instrumental spec; cond: the
        normalized mixture (same shape as the network's conditioning); vocals: the
        normalized vocal spec (mixture's statistics); t: LongTensor (batch,);
        noise: like x0. ``net(x_t, t, cond)`` returns a prediction of type
        ``diffusion.prediction``. ``to_vocals(x0_hat, cond) -> vocals_hat`` defaults
        to :func:`subtract_from_mixture`. Raises FloatingPointError on a
        non-finite total.
        """
        to_vocals = subtract_from_mixture if to_vocals is None else to_vocals
        x_t = diffusion.q_sample(x0, t, noise)
        pred = net(x_t, t, cond)
        # losses in float32 even under autocast: bf16 squares of small errors underflow
        pred = pred.float()
        diffusion_part = F.mse_loss(pred, diffusion.training_target(x0, noise, t, x_t).float())
        x0_hat = diffusion.to_x0(x_t.float(), t, pred)
        vocal_part = F.mse_loss(to_vocals(x0_hat, cond.float()).float(), vocals.float())
        total = diffusion_part + self.vocal_weight * vocal_part
        parts = {"diffusion": diffusion_part, "vocal": vocal_part, "total": total}
        if not bool(torch.isfinite(total)):
            values = ", ".join(f"{name}={value.detach().item():.4g}" for name, value in parts.items())
            raise FloatingPointError(f"non-finite loss ({values})")
        return total, parts
