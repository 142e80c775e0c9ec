"""The Gaussian diffusion process: forward noising, prediction conversions, posterior.

After improved-diffusion (Nichol & Dhariwal 2021): the process holds the betas and
their derived tables, computed once in float64 and cast to the input's dtype and
device at use; it never owns the network. Predictions come in three
parameterizations (``prediction``):

- ``"eps"``: the added noise (Ho et al. 2020);
- ``"x0"``: the clean sample;
- ``"v"``: ``v = sqrt(abar) * eps - sqrt(1 - abar) * x0`` (Salimans & Ho 2022).

Samplers receive the network's raw prediction and convert it here
(:meth:`GaussianDiffusion.to_x0`, :meth:`~GaussianDiffusion.to_eps`), in
float64: an x0 prediction never makes an x0 -> eps -> x0 round trip in float32,
which near pure noise would multiply its rounding by ``sqrt(1 / abar - 1)``.
The sampler-author contract is docs/samplers.md.

Shapes: ``x0, x_t, noise: (batch, ...)`` (spectrograms are ``(batch, channels,
freq, frames)``), ``t: LongTensor (batch,)`` of training timesteps in
``0..num_timesteps-1``; ``t = 0`` is the least noisy step.
"""
from __future__ import annotations

import math

import torch

from .errors import UserError

PREDICTIONS = ("eps", "x0", "v")
SPACINGS = ("uniform", "quadratic", "logsnr", "karras")
KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5
KARRAS_SIGMA_MAX = 80.0  # ibid., Table 1 ("ours")


def check_num_timesteps(num_timesteps, where: str) -> int:
    """``num_timesteps`` as an int >= 1, or a UserError naming ``where`` (a schedule's registered name)."""
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise UserError(
            f"{where}: num_timesteps must be an integer >= 1, got {num_timesteps!r}; set e.g. num_timesteps = 1000"
        )
    return num_timesteps


def check_sampling_steps(steps, num_timesteps: int, name: str = "sampling steps") -> None:
    """``steps`` must be a whole number in 1..num_timesteps; ``name`` is how the user set it (``SAMPLING_STEPS``, ``--steps``)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise UserError(f"{name} {steps} must be in 1..{num_timesteps} (the training timesteps, num_timesteps); "
                        "pass fewer steps or train with more timesteps (Experiment.num_timesteps)")


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
    @property
    def sigmas(self) -> torch.Tensor:
        """sigma_t = sqrt((1 - abar_t) / abar_t): (num_timesteps,) float64, ascending.

        The noise level of ``x_t / sqrt(abar_t)`` = x0 + sigma_t * eps, the variable
        of Karras et al. 2022; the half log-SNR of DPM-Solver is ``-log(sigma_t)``.
        """
        return self.sqrt_recipm1_alphas_cumprod

    def _extract(self, name: str, t: torch.Tensor, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``table[t]`` on x's device as ``dtype`` (default x's), shaped ``(batch, 1, ..., 1)`` to broadcast with x."""
        key = (name, x.device)
        table = self._on_device.get(key)
        if table is None:  # copied once per device, so sampling loops never copy host -> device
            table = getattr(self, name)
            if x.device.type == "mps":  # no float64 there
                table = table.float()
            table = self._on_device[key] = table.to(x.device)
        t = torch.as_tensor(t, device=x.device).long()
        values = table[t].to(dtype or x.dtype)
        return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))

    # -- forward process ------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise; all (batch, ...)."""
        return (
            self._extract("sqrt_alphas_cumprod", t, x0) * x0
            + self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def _float64(self, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor, a: str, b: str):
        """``(a[t], b[t], x, y)`` in float64 (float32 on mps, which has none), tables shaped to broadcast."""
        work = torch.float32 if x.device.type == "mps" else torch.float64
        return self._extract(a, t, x, work), self._extract(b, t, x, work), x.to(work), y.to(work)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - abar) * eps) / sqrt(abar) from x_t and the noise eps (float64 arithmetic)."""
        a, b, x, e = self._float64(t, x_t, eps, "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod")
        return (a * x - b * e).to(torch.promote_types(x_t.dtype, eps.dtype))

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar) * x0) / sqrt(1 - abar) from x_t and x0 (float64 arithmetic)."""
        a, b, x, x0_ = self._float64(t, x_t, x0, "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
        return ((x - a * x0_) / b).to(torch.promote_types(x_t.dtype, x0.dtype))

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
        """The noise implied by a prediction ``pred`` of the configured type (float64 arithmetic)."""
        if self.prediction == "eps":
            return pred
        if self.prediction == "x0":
            return self.predict_eps(x_t, t, pred)
        a, b, x, v = self._float64(t, x_t, pred, "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
        return (b * x + a * v).to(torch.promote_types(x_t.dtype, pred.dtype))  # sqrt(1 - abar) x_t + sqrt(abar) v

    def to_x0(self, x_t: torch.Tensor, t: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The clean sample implied by a prediction ``pred`` of the configured type (float64 arithmetic)."""
        if self.prediction == "eps":
            return self.predict_x0(x_t, t, pred)
        if self.prediction == "x0":
            return pred
        a, b, x, v = self._float64(t, x_t, pred, "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
        return (a * x - b * v).to(torch.promote_types(x_t.dtype, pred.dtype))  # sqrt(abar) x_t - sqrt(1 - abar) v

    # -- reverse process -------------------------------------------------------------------
    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """q(x_{t-1} | x_t, x0) as ``(mean, variance, log_variance_clipped)``, each broadcastable to x_t."""
        mean = self._extract("posterior_mean_coef1", t, x_t) * x0 + self._extract("posterior_mean_coef2", t, x_t) * x_t
        variance = self._extract("posterior_variance", t, x_t)
        log_variance = self._extract("posterior_log_variance_clipped", t, x_t)
        return mean, variance, log_variance

    # -- respacing ---------------------------------------------------------------------------
    def check_steps(self, steps) -> int:
        """``num_timesteps``, after checking that ``steps`` (network evaluations) is an int in 1..num_timesteps."""
        check_sampling_steps(steps, self.num_timesteps)
        return self.num_timesteps

    def respace(self, steps: int, spacing: str = "uniform") -> torch.Tensor:
        """The training timesteps a ``steps``-step sampler visits: LongTensor (steps,), ascending.

        Samplers walk it backwards. It always holds the last timestep
        ``num_timesteps - 1`` (pure noise) and, for ``steps > 1``, timestep 0.
        Spacings (``SPACINGS``):

        - ``"uniform"``: evenly spaced in t (DDPM, DDIM; DPM-Solver's "time uniform");
        - ``"quadratic"``: denser near t = 0 (Song et al. 2021, DDIM);
        - ``"logsnr"``: evenly spaced in the log-SNR ``-2 log(sigma_t)`` (Lu et al. 2022, DPM-Solver);
        - ``"karras"``: ``sigma_i^(1/rho)`` evenly spaced, rho = 7, from sigma at
          t = 0 up to ``min(80, sigma_max)`` (Karras et al. 2022, eq. 5 and Table 1),
          then the last timestep. Without the cap a schedule whose last sigma is
          huge (cosine's clipped last beta: sigma ~ 2e4) would spend half the steps
          above sigma = 80, where x_t holds next to no signal.

        The last two are placed in sigma and taken at the nearest training
        timestep (in log sigma). Where several land on one timestep they are
        nudged apart, so that no timestep repeats.
        """
        num = self.check_steps(steps)
        if spacing not in SPACINGS:
            raise UserError(f"unknown timestep spacing '{spacing}'; choose one of: {', '.join(SPACINGS)}")
        if steps == 1:
            return torch.tensor([num - 1], dtype=torch.long)
        if spacing in ("uniform", "quadratic"):
            fraction = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
            timesteps = ((fraction if spacing == "uniform" else fraction**2) * (num - 1)).round().long().tolist()
        else:
            timesteps = self._nearest_timesteps(self._spaced_log_sigmas(steps, spacing))
        # uniform spacing is >= 1 apart already; the others may crowd near either end
        for i in range(1, steps):
            timesteps[i] = max(timesteps[i], timesteps[i - 1] + 1)
        timesteps[-1] = num - 1
        for i in range(steps - 2, -1, -1):
            timesteps[i] = min(timesteps[i], timesteps[i + 1] - 1)
        return torch.tensor(timesteps, dtype=torch.long)

    def _spaced_log_sigmas(self, steps: int, spacing: str) -> torch.Tensor:
        """(steps,) ascending log sigmas from timestep 0's to the last timestep's, for "logsnr" or "karras"."""
        log_lo, log_hi = self.sigmas[0].log(), self.sigmas[-1].log()
        if spacing == "logsnr":
            return torch.linspace(log_lo, log_hi, steps, dtype=torch.float64)
        # Karras: sigma^(1/rho) evenly spaced up to EDM's sigma_max; above it, one step from the last timestep
        capped = bool(log_hi > math.log(KARRAS_SIGMA_MAX))
        log_top = math.log(KARRAS_SIGMA_MAX) if capped else float(log_hi)
        ramp = torch.linspace(0.0, 1.0, steps - 1 if capped else steps, dtype=torch.float64)
        lo, top = math.exp(log_lo / KARRAS_RHO), math.exp(log_top / KARRAS_RHO)
        log_sigmas = KARRAS_RHO * (lo + ramp * (top - lo)).log()
        return torch.cat([log_sigmas, log_hi.reshape(1)]) if capped else log_sigmas

    def _nearest_timesteps(self, log_sigmas: torch.Tensor) -> list[int]:
        """The training timestep whose log sigma is nearest to each of ``log_sigmas`` (sigma ascends with t)."""
        table = self.sigmas.log()
        if len(table) == 1:
            return [0] * len(log_sigmas)
        upper = torch.searchsorted(table, log_sigmas).clamp(1, len(table) - 1)
        lower = upper - 1
        nearer_lower = (log_sigmas - table[lower]).abs() <= (table[upper] - log_sigmas).abs()
        return torch.where(nearer_lower, lower, upper).tolist()

    def truncated(self, last: int) -> "GaussianDiffusion":
        """The process over timesteps ``0..last`` only: the same tables, cut.

        Timestep t means the same noise level in both, so a sampler run on it
        starts at ``last`` and the network still sees its training timesteps
        (SDEdit's partial reverse process, Meng et al. 2022).
        """
        if not 0 <= int(last) < self.num_timesteps:
            raise UserError(f"truncated: last timestep {last} is outside 0..{self.num_timesteps - 1}")
        return GaussianDiffusion(self.betas[: int(last) + 1], prediction=self.prediction)

    def respaced(self, timesteps: torch.Tensor) -> "GaussianDiffusion":
        """The process over a subset of ``timesteps`` (ascending): betas recomputed from
        alphas_cumprod so that step i of the new process is timestep ``timesteps[i]``
        of this one (improved-diffusion's respacing)."""
        alphas_cumprod = self.alphas_cumprod[torch.as_tensor(timesteps, dtype=torch.long).cpu()]
        previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        return GaussianDiffusion(1.0 - alphas_cumprod / previous, prediction=self.prediction)

