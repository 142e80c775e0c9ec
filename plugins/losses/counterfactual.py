"""Diff-MSST's loss: the diffusion objective plus a counterfactual vocal term.

The network generates the instrumental; the vocals are what the mixture has left
("counterfactual": had the instrumental been x0_hat, the vocals would be
mixture - x0_hat). Penalizing that estimate against the true vocals ties the
one-step instrumental estimate to the quantity that is scored.

Where the vocal term is computed (``vocal_space``):

- ``"normalized"``: in the network's space (compressed, min-max scaled), like
  the diffusion term; every time-frequency bin weighs alike, quiet or loud.
- ``"magnitude"``: in linear STFT magnitude, divided by each item's RMS mixture
  magnitude, so loud bins weigh as they do in the score; the per-item scale keeps
  quiet songs in the loss (the two spaces are compared in docs/results.md).

What it optimises: the diffusion term's minimiser is the x0 target, the vocal
term's is the instrumental ``|X| - vocal target``. With ``TrainConfig.target =
'magnitude'`` (|I|, |V|) those differ wherever the vocals do not have the
mixture's phase, and the two terms pull toward different values; with 'psa'
(``toolkit.train.target_spec``) both targets are phase-sensitive, add up to |X|,
and both terms share one minimiser, the magnitude nearest the instrumental given
the mixture phase, which is what minimises the waveform error of a mixture-phase
reconstruction (Erdogan et al., ICASSP 2015).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit import registry
from toolkit.contracts import Batch
from toolkit.errors import UserError


VOCAL_SPACES = ("normalized", "magnitude")


def relative_magnitudes(to_magnitude, x0_hat, cond, vocals):
    """(vocals_hat, vocals) as linear magnitudes over each item's RMS mixture magnitude.

    ``to_magnitude(spec) -> (batch, channels, freq, frames)`` linear magnitude of a
    normalized spec; vocals_hat = max(|mixture| - |x0_hat|, 0), the separation's rule.
    """
    with torch.no_grad():
        mixture = to_magnitude(cond.float())
        scale = mixture.square().mean(dim=tuple(range(1, mixture.ndim)), keepdim=True).sqrt().clamp_min(1e-8)
        target = to_magnitude(vocals.float()) / scale
    estimate = (mixture - to_magnitude(x0_hat.clamp(-1.0, 1.0))).clamp_min(0.0) / scale
    return estimate, target


@registry.register("losses", "counterfactual")
class CounterfactualLoss:
    """MSE(pred, diffusion target) + vocal_weight * MSE(vocals_hat, vocals) in ``vocal_space``."""

    def __init__(self, vocal_weight: float = 0.5, vocal_space: str = "magnitude"):
        if isinstance(vocal_weight, bool) or not isinstance(vocal_weight, (int, float)) or not vocal_weight >= 0.0:
            raise UserError(f"losses.counterfactual: vocal_weight must be a number >= 0, got {vocal_weight!r}")
        if vocal_space not in VOCAL_SPACES:
            raise UserError(f"losses.counterfactual: vocal_space {vocal_space!r} is not one of "
                            f"{', '.join(map(repr, VOCAL_SPACES))}")
        self.vocal_weight, self.vocal_space = vocal_weight, vocal_space

    def __repr__(self):
        return f"CounterfactualLoss(vocal_weight={self.vocal_weight}, vocal_space={self.vocal_space!r})"

    def __call__(self, net, diffusion, batch: Batch):
        """Loss of ``net`` on one :class:`~toolkit.contracts.Batch` -> (total: scalar, parts: {"diffusion", "vocal", "total"}).

        ``net(x_t, t, cond)`` returns a prediction of type ``diffusion.prediction``.
        With ``batch.x0_hat`` (a sampler's estimate) the first term is MSE(x0_hat, x0),
        the predictive loss of unrolled fine-tuning (Lay et al. 2023, arXiv:2309.09677).
        Raises FloatingPointError on a non-finite total.
        """
        x0, cond, vocals, t = batch.x0, batch.cond, batch.vocals, batch.t
        # losses in float32 even under autocast: bf16 squares of small errors underflow
        if batch.x0_hat is not None:  # a sampler's estimate (unrolled fine-tuning): the predictive loss
            x0_hat = batch.x0_hat.float()
            diffusion_part = F.mse_loss(x0_hat, x0.float())
        else:
            x_t = diffusion.q_sample(x0, t, batch.noise)
            pred = net(x_t, t, cond).float()
            diffusion_part = F.mse_loss(pred, diffusion.training_target(x0, batch.noise, t, x_t).float())
            x0_hat = diffusion.to_x0(x_t.float(), t, pred)
        if self.vocal_space == "magnitude":
            vocal_part = F.mse_loss(*relative_magnitudes(batch.to_magnitude, x0_hat, cond, vocals))
        else:
            vocal_part = F.mse_loss(batch.to_vocals(x0_hat).float(), vocals.float())
        total = diffusion_part + self.vocal_weight * vocal_part
        parts = {"diffusion": diffusion_part, "vocal": vocal_part, "total": total}
        if not bool(torch.isfinite(total)):
            values = ", ".join(f"{name}={value.detach().item():.4g}" for name, value in parts.items())
            raise FloatingPointError(f"non-finite loss ({values})")
        return total, parts
