"""The Gaussian diffusion process: forward noising, prediction conversions, posterior.

After improved-diffusion (Nichol & Dhariwal 2021): the process holds the betas and
their derived tables, computed once in float64 and cast to the input's dtype and
device at use; it never owns the network. Predictions come in three
parameterizations (``prediction``):

- ``"eps"``: the added noise (Ho et al. 2020);
- ``"x0"``: the clean sample;
- ``"v"``: ``v = sqrt(abar) * eps - sqrt(1 - abar) * x0`` (Salimans & Ho 2022).

Shapes: ``x0, x_t, noise: (batch, ...)`` (spectrograms are ``(batch, channels,
freq, frames)``), ``t: LongTensor (batch,)`` of training timesteps in
``0..num_timesteps-1``; ``t = 0`` is the least noisy step.
"""
from __future__ import annotations

import torch

from .errors import UserError

PREDICTIONS = ("eps", "x0", "v")
SPACINGS = ("uniform", "quadratic")


class GaussianDiffusion:
    """Tables of a discrete-time Gaussian diffusion with ``betas: (num_timesteps,)``."""

    def __init__(self, betas, prediction: str = "eps"):
        if prediction not in PREDICTIONS:
            raise UserError(
                f"unknown diffusion prediction '{prediction}'; choose one of: {', '.join(PREDICTIONS)}"
            )
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 1:
            raise UserError(f"diffusion betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise UserError("diffusion betas must all lie in (0, 1); check the schedule's arguments")
        self.prediction = prediction
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1.0).sqrt()
        # q(x_{t-1} | x_t, x_0) = N(coef1 * x0 + coef2 * x_t, posterior_variance)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # the variance is 0 at t = 0; like improved-diffusion, take its log from t = 1 there
        # (only ever used at t > 0, where noise is added)
        first = self.posterior_variance[1:2] if len(betas) > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.cat([first, self.posterior_variance[1:]]).log()
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * alphas.sqrt() / (1.0 - self.alphas_cumprod)
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}

    def __repr__(self):
        return f"GaussianDiffusion(num_timesteps={self.num_timesteps}, prediction='{self.prediction}')"

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    # -- tables -------------------------------------------------------------------
    def _extract(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``table[t]`` as x's dtype/device, shaped ``(batch, 1, ..., 1)`` to broadcast with x."""
        key = (name, x.device)
        table = self._on_device.get(key)
        if table is None:  # copied once per device, so sampling loops never copy host -> device
            table = getattr(self, name)
            if x.device.type == "mps":  # no float64 there
                table = table.float()
            table = self._on_device[key] = table.to(x.device)
        t = torch.as_tensor(t, device=x.device).long()
        values = table[t].to(x.dtype)
        return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))

    # -- forward process ------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise; all (batch, ...)."""
        return (
            self._extract("sqrt_alphas_cumprod", t, x0) * x0
            + self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 from x_t and the noise eps."""
        return (
            self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The noise eps from x_t and x0."""
        return (self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x0) / self._extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    # -- parameterizations ----------------------------------------------------------------
    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, x_t=None) -> torch.Tensor:
        """What the network should output for ``prediction``: noise, x0 or v; (batch, ...).

        ``x_t`` is accepted (and unused) so that callers need not know which
        parameterizations depend on it.
        """
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        return (
            self._extract("sqrt_alphas_cumprod", t, x0) * noise
            - self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * x0
        )

    def to_eps(self, x_t: torch.Tensor, t: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The noise implied by a prediction ``pred`` of the configured type."""
        if self.prediction == "eps":
            return pred
        if self.prediction == "x0":
            return self.predict_eps(x_t, t, pred)
        # eps = sqrt(1 - abar) * x_t + sqrt(abar) * v
        return (
            self._extract("sqrt_one_minus_alphas_cumprod", t, x_t) * x_t
            + self._extract("sqrt_alphas_cumprod", t, x_t) * pred
        )

    def to_x0(self, x_t: torch.Tensor, t: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The clean sample implied by a prediction ``pred`` of the configured type."""
        if self.prediction == "eps":
            return self.predict_x0(x_t, t, pred)
        if self.prediction == "x0":
            return pred
        # x0 = sqrt(abar) * x_t - sqrt(1 - abar) * v
        return (
            self._extract("sqrt_alphas_cumprod", t, x_t) * x_t
            - self._extract("sqrt_one_minus_alphas_cumprod", t, x_t) * pred
        )

    def eps_model(self, net):
        """Wrap ``net(x_t, t, cond) -> prediction of the configured type`` as the
        ``model_fn(x_t, t, cond) -> eps`` that samplers take."""

        def model_fn(x_t, t, cond):
            return self.to_eps(x_t, t, net(x_t, t, cond))

        return model_fn

    # -- reverse process -------------------------------------------------------------------
    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """q(x_{t-1} | x_t, x0) as ``(mean, variance, log_variance_clipped)``, each broadcastable to x_t."""
        mean = self._extract("posterior_mean_coef1", t, x_t) * x0 + self._extract("posterior_mean_coef2", t, x_t) * x_t
        variance = self._extract("posterior_variance", t, x_t)
        log_variance = self._extract("posterior_log_variance_clipped", t, x_t)
        return mean, variance, log_variance

    # -- respacing ---------------------------------------------------------------------------
    def respace(self, steps: int, spacing: str = "uniform") -> torch.Tensor:
        """The training timesteps a ``steps``-step sampler visits: LongTensor (steps,), ascending.

        Samplers walk it backwards. It always holds the last timestep
        ``num_timesteps - 1`` (pure noise) and, for ``steps > 1``, timestep 0.
        ``"uniform"``: evenly spaced; ``"quadratic"``: denser near t = 0 (Song et
        al. 2021, DDIM), nudged apart so that no timestep repeats.
        """
        num = self.num_timesteps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num:
            raise UserError(
                f"sampling steps {steps} must be in 1..num_timesteps ({num}); "
                f"pass fewer steps or train with more timesteps"
            )
        if spacing not in SPACINGS:
            raise UserError(f"unknown timestep spacing '{spacing}'; choose one of: {', '.join(SPACINGS)}")
        if steps == 1:
            return torch.tensor([num - 1], dtype=torch.long)
        fraction = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        if spacing == "quadratic":
            fraction = fraction**2
        timesteps = (fraction * (num - 1)).round().long().tolist()
        # uniform spacing is >= 1 apart already; the quadratic one crowds near 0
        for i in range(1, steps):
            timesteps[i] = max(timesteps[i], timesteps[i - 1] + 1)
        timesteps[-1] = num - 1
        for i in range(steps - 2, -1, -1):
            timesteps[i] = min(timesteps[i], timesteps[i + 1] - 1)
        return torch.tensor(timesteps, dtype=torch.long)

    def respaced(self, timesteps: torch.Tensor) -> "GaussianDiffusion":
        """The process over a subset of ``timesteps`` (ascending): betas recomputed from
        alphas_cumprod so that step i of the new process is timestep ``timesteps[i]``
        of this one (improved-diffusion's respacing)."""
        alphas_cumprod = self.alphas_cumprod[torch.as_tensor(timesteps, dtype=torch.long).cpu()]
        previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        return GaussianDiffusion(1.0 - alphas_cumprod / previous, prediction=self.prediction)

