"""Samplers: the contract (steps = network evaluations, callbacks, seeds, no grad), known
answers on Gaussian data, agreement with diffusers, and no precision lost between targets."""
import math

import pytest
import torch

from toolkit import registry
from toolkit.diffusion import GaussianDiffusion
from toolkit.errors import UserError
from toolkit.sampling import noise_levels

registry.load_builtin_plugins()
ddpm, ddim = registry.get("samplers", "ddpm"), registry.get("samplers", "ddim")
dpmpp_2m, heun, unipc = (registry.get("samplers", n) for n in ("dpmpp_2m", "heun", "unipc"))
euler_ancestral = registry.get("samplers", "euler_ancestral")
ALL = [ddpm, ddim, dpmpp_2m, heun, unipc, euler_ancestral]
SECOND_ORDER = [dpmpp_2m, heun, unipc]
STOCHASTIC_KW = {ddpm: {}, ddim: {"eta": 1.0}, euler_ancestral: {}}  # samplers that draw noise, as configured


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: on a shared CPU a second intra-op thread only adds waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(schedule="cosine", num=1000, prediction="eps"):
    return GaussianDiffusion(registry.get("schedules", schedule)(num), prediction=prediction)


def name(sampler):
    return registry.name_of("samplers", sampler)


def known_x0(shape=(2, 1, 8, 6), dtype=torch.float32):
    gen = torch.Generator().manual_seed(123)
    return (torch.rand(shape, generator=gen) * 2 - 1).to(dtype)


def oracle(diffusion, x0):
    """The perfect eps-model for a data distribution that is the single point x0."""
    return lambda x_t, t, cond: diffusion.predict_eps(x_t, t, x0)


def noise_like(x, seed):
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_oracle_recovers_x0(schedule):
    diffusion, x0 = make(schedule), known_x0()
    out = ddim(oracle(diffusion, x0), diffusion, noise_like(x0, 0), steps=50, eta=0.0)
    assert out.shape == x0.shape and out.dtype == x0.dtype
    assert (out - x0).abs().max() < 1e-3


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [None, 25])
def test_ddpm_oracle_recovers_x0(schedule, steps):
    diffusion, x0 = make(schedule), known_x0()
    gen = torch.Generator().manual_seed(0)
    out = ddpm(oracle(diffusion, x0), diffusion, noise_like(x0, 0), steps=steps, generator=gen)
    assert (out - x0).abs().max() < 1e-3


def gaussian_eps_model(diffusion, mu, std):
    """Exact E[eps | x_t] when every element of x0 ~ N(mu, std^2)."""

    def model_fn(x_t, t, cond):
        abar = diffusion.alphas_cumprod.to(x_t.dtype)[t][:, None, None, None]
        return (1 - abar).sqrt() * (x_t - abar.sqrt() * mu) / (abar * std**2 + 1 - abar)

    return model_fn


@pytest.mark.parametrize(
    "sample",
    [
        lambda m, d, x, g: ddpm(m, d, x, generator=g, clip_x0=False),
        lambda m, d, x, g: ddpm(m, d, x, steps=250, generator=g, clip_x0=False),
        lambda m, d, x, g: ddim(m, d, x, steps=200, eta=0.0, clip_x0=False),
        lambda m, d, x, g: ddim(m, d, x, steps=250, eta=1.0, generator=g, clip_x0=False),
    ],
    ids=["ddpm", "ddpm-250", "ddim-eta0", "ddim-eta1"],
)
def test_samplers_reach_the_data_distribution(sample):
    # With the exact score of a Gaussian, samples must have the data's mean and std.
    # (Coarse steps under-disperse: the posterior variance ignores Var(x0 | x_t); at
    # 50 steps the std is ~0.44, hence the step counts here.)
    diffusion, mu, std = make("linear"), 0.3, 0.5
    x_T = torch.randn(4000, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = sample(gaussian_eps_model(diffusion, mu, std), diffusion, x_T, torch.Generator().manual_seed(6))
    assert out.mean().item() == pytest.approx(mu, abs=0.03)
    assert out.std().item() == pytest.approx(std, abs=0.03)


def test_ddim_eta1_is_respaced_ddpm():
    diffusion, x0 = make(), known_x0(dtype=torch.float64)
    model_fn = oracle(diffusion, 0.5 * x0)
    x_T = noise_like(x0, 0)
    a = ddpm(model_fn, diffusion, x_T, steps=40, generator=torch.Generator().manual_seed(9))
    b = ddim(model_fn, diffusion, x_T, steps=40, eta=1.0, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


def test_seeds():
    diffusion, x0 = make(num=100), known_x0()
    model_fn = lambda x_t, t, cond: 0.5 * x_t  # noqa: E731 - a smooth stand-in network
    x_T = noise_like(x0, 0)

    def run(sampler, seed, **kw):
        return sampler(model_fn, diffusion, x_T, steps=20, generator=torch.Generator().manual_seed(seed), **kw)

    for sampler, kw in STOCHASTIC_KW.items():
        assert torch.equal(run(sampler, 1, **kw), run(sampler, 1, **kw)), name(sampler)
        assert not torch.allclose(run(sampler, 1, **kw), run(sampler, 2, **kw)), name(sampler)
    for sampler, kw in ((ddim, {"eta": 0.0}), (euler_ancestral, {"eta": 0.0}), (dpmpp_2m, {}), (heun, {}), (unipc, {})):
        assert torch.equal(run(sampler, 1, **kw), run(sampler, 2, **kw)), f"{name(sampler)} {kw} draws no noise"


def evaluations_and_steps(sampler, steps):
    """(network evaluations, sampler steps) for ``steps`` on a 30-timestep diffusion."""
    evaluations = steps or 30  # ddpm visits every timestep; the others default to min(50, 30)
    return evaluations, (evaluations // 2 + 1 if sampler is heun else evaluations)


@pytest.mark.parametrize("steps", [None, 7, 8, 1, 2])
@pytest.mark.parametrize("sampler", ALL, ids=name)
def test_callback_and_timesteps(sampler, steps):
    diffusion = make(num=30)  # fewer than the default 50 steps: every sampler uses 30 evaluations
    calls, seen_t = [], []

    def model_fn(x_t, t, cond):
        assert t.dtype == torch.long and t.shape == (x_t.shape[0],)
        assert cond == "mixture"
        seen_t.append(int(t[0]))
        return torch.zeros_like(x_t)

    x_T = torch.zeros(3, 1, 2, 2)
    out = sampler(model_fn, diffusion, x_T, cond="mixture", steps=steps,
                  callback=lambda i, n, x: calls.append((i, n, x.shape)))
    evaluations, total = evaluations_and_steps(sampler, steps)
    assert len(seen_t) == evaluations, "steps counts network evaluations"
    assert calls == [(i, total, x_T.shape) for i in range(total)]
    assert seen_t == sorted(seen_t, reverse=True) and seen_t[0] == 29
    assert seen_t[-1] == (0 if evaluations > 1 else 29)
    assert out.shape == x_T.shape and out.dtype == x_T.dtype


def test_bad_options():
    diffusion, x_T = make(num=10), torch.zeros(1, 1, 2, 2)
    zero = lambda x_t, t, cond: torch.zeros_like(x_t)  # noqa: E731
    with pytest.raises(UserError, match="sampling steps 11"):
        ddim(zero, diffusion, x_T, steps=11)
    with pytest.raises(UserError, match="sampling steps 0"):
        ddpm(zero, diffusion, x_T, steps=0)
    with pytest.raises(UserError, match="eta"):
        ddim(zero, diffusion, x_T, eta=-1.0)
    with pytest.raises(UserError, match="euler_ancestral: eta"):
        euler_ancestral(zero, diffusion, x_T, eta=-1.0)
    for sampler in SECOND_ORDER + [euler_ancestral]:
        for steps in (0, 11):
            with pytest.raises(UserError, match=f"sampling steps {steps} must be in 1..10 "):
                sampler(zero, diffusion, x_T, steps=steps)
        with pytest.raises(UserError, match="unknown timestep spacing 'linear'"):
            sampler(zero, diffusion, x_T, steps=3, spacing="linear")


@pytest.mark.parametrize("sampler", ALL, ids=name)
def test_the_caller_chooses_the_gradient_mode(sampler):
    """No sampler turns gradients off itself: separation samples under inference mode, and unrolled
    fine-tuning (TrainConfig.unroll_steps) backpropagates through the sampler into the network."""
    diffusion, x_T = make(num=10, prediction="x0"), noise_like(torch.zeros(1, 1, 2, 2), 0)
    weight = torch.ones((), requires_grad=True)

    def model_fn(x_t, t, cond):
        return weight * 0.5 * torch.tanh(x_t)  # inside [-1, 1]: no clamp cuts the gradient

    def run():
        return sampler(model_fn, diffusion, x_T, steps=3, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        assert not run().requires_grad
    run().square().sum().backward()
    assert weight.grad is not None and float(weight.grad.abs()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sampler", ALL, ids=name)
def test_cuda_matches_cpu_with_a_cpu_generator(sampler):
    diffusion, x0 = make(num=100), known_x0()
    kw = STOCHASTIC_KW.get(sampler, {})
    outs = []
    for device in ("cpu", "cuda"):
        target = x0.to(device)
        outs.append(
            sampler(oracle(diffusion, target), diffusion, noise_like(x0, 0).to(device), steps=20,
                    generator=torch.Generator().manual_seed(3), clip_x0=False, callback=lambda i, n, x: None, **kw)
        )
    torch.testing.assert_close(outs[1].cpu(), outs[0], atol=1e-4, rtol=1e-4)


# -- known answers on Gaussian data ------------------------------------------------------------
MU, STD = 0.3, 0.5


def gaussian_model(diffusion, mu=MU, std=STD):
    """The exact network for x0 ~ N(mu, std^2) elementwise, predicting ``diffusion.prediction``.

    Computed in float64 and returned in x_t's dtype, as a network would return it.
    """

    def model_fn(x_t, t, cond):
        x = x_t.double()
        abar = diffusion.alphas_cumprod[t.cpu()].to(x.device)[:, None, None, None]
        eps = (1 - abar).sqrt() * (x - abar.sqrt() * mu) / (abar * std**2 + 1 - abar)
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        pred = {"eps": eps, "x0": x0, "v": abar.sqrt() * eps - (1 - abar).sqrt() * x0}[diffusion.prediction]
        return pred.to(x_t.dtype)

    return model_fn


def flow_endpoint(diffusion, x_T, mu=MU, std=STD):
    """Where the probability-flow ODE takes x_T (at the last timestep) for Gaussian data."""
    abar = diffusion.alphas_cumprod[-1].item()
    return mu + std * (x_T - abar**0.5 * mu) / (abar * std**2 + 1 - abar) ** 0.5


def endpoint_error(sampler, diffusion, steps):
    x_T = torch.randn(2000, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = sampler(gaussian_model(diffusion), diffusion, x_T, steps=steps, clip_x0=False)
    return (out - flow_endpoint(diffusion, x_T)).abs().mean().item()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_converges_first_order(schedule):
    diffusion = make(schedule)
    ratio = endpoint_error(ddim, diffusion, 50) / endpoint_error(ddim, diffusion, 200)
    assert 3.0 < ratio < 5.0, f"4x the evaluations should cut DDIM's error ~4x, got {ratio:.1f}x"


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("sampler", SECOND_ORDER, ids=name)
def test_deterministic_samplers_converge_second_order(sampler, schedule):
    # Gaussian data has an exact network and an exact probability-flow endpoint: the error
    # of a second-order solver falls ~16x for 4x the evaluations (>= 6x asked), DDIM's ~4x.
    diffusion = make(schedule)
    error_50, error_200 = endpoint_error(sampler, diffusion, 50), endpoint_error(sampler, diffusion, 200)
    assert error_50 / error_200 >= 6.0, (error_50, error_200)
    assert error_200 <= 0.6 * endpoint_error(ddim, diffusion, 200)


def test_euler_ancestral_reaches_the_data_distribution():
    # (DDPM and DDIM with eta = 1 are held to this above, more loosely, at more steps.)
    diffusion = make("linear")
    x_T = torch.randn(40000, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def run(seed):
        return euler_ancestral(gaussian_model(diffusion), diffusion, x_T, steps=200, clip_x0=False,
                               generator=torch.Generator().manual_seed(seed))

    out = run(6)
    assert out.mean().item() == pytest.approx(MU, abs=0.01)
    assert out.std().item() == pytest.approx(STD, rel=0.05)
    assert torch.equal(out, run(6))


def ancestral_variance(diffusion, steps, std, x0_spread: bool) -> float:
    """Variance of euler_ancestral's output for x0 ~ N(mu, std^2) and an exact network, propagated step by step.

    A step maps y = x_t / sqrt(abar) (variance V) to ``r * y + (1 - r) * D(y) + sigma_up * z`` with
    ``r = sigma_down / sigma`` and the exact ``D(y) = mu + k (y - mu)``, ``k = std^2 / (std^2 + sigma^2)``:
    V' = (r + (1 - r) k)^2 V + sigma_up^2. The reverse step of the data itself also spreads x0 given y:
    ``x0_spread`` adds (1 - r)^2 Var[x0 | y] = (1 - r)^2 std^2 sigma^2 / (std^2 + sigma^2).
    """
    timesteps = diffusion.respace(steps, "karras").flip(0).tolist()
    abar, sigma = noise_levels(diffusion, timesteps)
    var = 1.0 / abar[0]  # x_T ~ N(0, 1)
    for i in range(len(timesteps)):
        big, s = sigma[i], sigma[i + 1]
        up = min(s, s * math.sqrt(max(1.0 - (s / big) ** 2, 0.0)))
        r = math.sqrt(s**2 - up**2) / big
        k = std**2 / (std**2 + big**2)
        var = (r + (1 - r) * k) ** 2 * var + up**2
        if x0_spread:
            var += (1 - r) ** 2 * std**2 * big**2 / (std**2 + big**2)
    return var


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_euler_ancestral_under_dispersion_is_the_spread_of_x0_it_does_not_draw(schedule):
    # x0 ~ N(0.3, 0.15^2), exact network: euler_ancestral's samples are ~6 % too narrow at 100 evaluations
    # (DDPM on uniform spacing ~9-15 %). The cause is the ancestral step itself, not a bug: it draws around
    # the mean of the x0 estimate and leaves out the spread of x0 given x_t, a term that shrinks with the
    # step. The propagated variance says so exactly: without the term it matches the samples; with it
    # the data's variance comes back; and 4x the evaluations close most of the gap.
    diffusion, std = make(schedule), 0.15
    x_T = torch.randn(40000, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    deficit = {}
    for steps in (100, 400):
        out = euler_ancestral(gaussian_model(diffusion, MU, std), diffusion, x_T, steps=steps, clip_x0=False,
                              generator=torch.Generator().manual_seed(6))
        predicted = math.sqrt(ancestral_variance(diffusion, steps, std, x0_spread=False))
        assert out.std().item() == pytest.approx(predicted, rel=0.015)  # 40000 samples: ~0.35 % sampling error
        assert math.sqrt(ancestral_variance(diffusion, steps, std, x0_spread=True)) == pytest.approx(std, rel=1e-6)
        deficit[steps] = 1.0 - predicted / std
    assert 0.03 < deficit[100] < 0.08, deficit
    assert deficit[400] < deficit[100] / 2.5, deficit


def test_euler_ancestral_on_uniform_spacing_is_ddpm():
    diffusion, x0 = make(), known_x0(dtype=torch.float64)
    model_fn, x_T = oracle(diffusion, 0.5 * x0), noise_like(x0, 0)
    a = ddpm(model_fn, diffusion, x_T, steps=40, generator=torch.Generator().manual_seed(9))
    b = euler_ancestral(model_fn, diffusion, x_T, steps=40, spacing="uniform", generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    c = euler_ancestral(model_fn, diffusion, x_T, steps=40, spacing="uniform", eta=0.0)
    torch.testing.assert_close(c, ddim(model_fn, diffusion, x_T, steps=40), atol=1e-9, rtol=0)


# -- the same numbers as diffusers -----------------------------------------------------------
class FixedTimesteps(GaussianDiffusion):
    """A diffusion whose samplers visit given timesteps (as diffusers' schedulers pick them)."""

    def __init__(self, betas, prediction, timesteps):
        super().__init__(betas, prediction=prediction)
        self.timesteps = sorted(timesteps)

    def respace(self, steps, spacing="uniform"):
        assert steps == len(self.timesteps)
        return torch.tensor(self.timesteps)


def diffusers_sample(scheduler, model_fn, x_T):
    x = x_T
    for t in scheduler.timesteps:
        x = scheduler.step(model_fn(x, t.repeat(x.shape[0]), None), t, x).prev_sample
    return x


PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def assert_matches(ours, theirs, reference, atol):
    """ours == theirs within ``atol``, and what differs is theirs' rounding: ours is as near the float64 run."""
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)
    ours_error, their_error = (ours.double() - reference).abs().max(), (theirs.double() - reference).abs().max()
    assert ours_error <= their_error + 1e-6, (ours_error, their_error)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("steps", [2, 10, 25])
def test_dpmpp_2m_matches_diffusers(prediction, steps):
    from diffusers import DPMSolverMultistepScheduler

    diffusion = make("linear", prediction=prediction)
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(), algorithm_type="dpmsolver++",
        solver_order=2, solver_type="midpoint", prediction_type=PREDICTION_TYPES[prediction],
        final_sigmas_type="zero", lower_order_final=True,
    )
    scheduler.set_timesteps(timesteps=diffusion.respace(steps, "uniform").flip(0).tolist())
    model_fn, x_T = gaussian_model(diffusion), noise_like(known_x0(), 0)
    ours = dpmpp_2m(model_fn, diffusion, x_T, steps=steps, clip_x0=False)
    theirs = diffusers_sample(scheduler, model_fn, x_T)
    # diffusers holds alphas_cumprod and sigmas in float32 and converts eps -> x0 in float32
    # (at the last timestep that multiplies rounding by 1 / sqrt(abar) ~ 160): a few 1e-5
    reference = dpmpp_2m(model_fn, diffusion, x_T.double(), steps=steps, clip_x0=False)
    assert_matches(ours, theirs, reference, atol=5e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
@pytest.mark.parametrize("steps", [2, 3, 10, 25])
def test_unipc_matches_diffusers(prediction, steps):
    from diffusers import UniPCMultistepScheduler

    betas = make("linear").betas
    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=1000, trained_betas=betas.numpy(), solver_order=2, solver_type="bh2", predict_x0=True,
        prediction_type=PREDICTION_TYPES[prediction], lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="linspace",
    )
    scheduler.set_timesteps(steps)  # diffusers' own grid (it takes no custom timesteps): visit the same one
    diffusion = FixedTimesteps(betas, prediction, scheduler.timesteps.tolist())
    model_fn, x_T = gaussian_model(diffusion), noise_like(known_x0(), 0)
    ours = unipc(model_fn, diffusion, x_T, steps=steps, clip_x0=False)
    theirs = diffusers_sample(scheduler, model_fn, x_T)
    reference = unipc(model_fn, diffusion, x_T.double(), steps=steps, clip_x0=False)
    assert_matches(ours, theirs, reference, atol=1e-5)


# -- no precision lost between targets ----------------------------------------------------------
def test_one_ddim_step_returns_the_x0_prediction():
    # At the last timestep of the cosine schedule, x0 -> eps -> x0 in float32 would multiply
    # rounding by sqrt(1 / abar - 1) ~ 2e4; the x0 must come back as predicted (and clamped).
    diffusion = make("cosine", prediction="x0")
    prediction = 1.5 * known_x0()  # partly outside [-1, 1]
    x_T = noise_like(prediction, 0)
    out = ddim(lambda x_t, t, cond: prediction, diffusion, x_T, steps=1)
    torch.testing.assert_close(out, prediction.clamp(-1, 1), rtol=1e-6, atol=0)
    for sampler in SECOND_ORDER + [euler_ancestral, ddpm]:
        out = sampler(lambda x_t, t, cond: prediction, diffusion, x_T, steps=1)
        torch.testing.assert_close(out, prediction.clamp(-1, 1), rtol=1e-6, atol=0, msg=name(sampler))


def float32_rounding(sampler, diffusion, model_fn, steps):
    """Largest |float32 run - float64 run| of one sampler: its rounding, not its discretization."""
    x_T = torch.randn(2000, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    out32 = sampler(model_fn, diffusion, x_T, steps=steps, clip_x0=False)
    out64 = sampler(model_fn, diffusion, x_T.double(), steps=steps, clip_x0=False)
    return (out32.double() - out64).abs().max().item()


@pytest.mark.parametrize("sampler", [ddim] + SECOND_ORDER, ids=name)
def test_an_x0_model_loses_no_precision(sampler):
    diffusion = make("cosine", prediction="x0")
    for steps in (2, 10):
        assert float32_rounding(sampler, diffusion, gaussian_model(diffusion), steps) < 5e-6
    # what the samplers avoid: the same x0 model seen through float32 epsilon
    eps_view = make("cosine", prediction="eps")
    x0_model = gaussian_model(diffusion)

    def float32_eps(x_t, t, cond):
        abar = eps_view.alphas_cumprod.float()[t][:, None, None, None]
        return (x_t / abar.sqrt() - x0_model(x_t, t, cond)) / (1 / abar - 1).sqrt()

    assert float32_rounding(sampler, eps_view, float32_eps, 2) > 1e-4


def test_ablation_sweep_compares_every_builtin_sampler_on_one_training(tmp_path):
    from conftest import REPO
    from toolkit import sweep

    spec = sweep.plan([REPO / "experiments" / "ablation_samplers.gin"], [], [], [], tmp_path)  # builds every cell
    builtin = {name for name in registry.names("samplers") if registry.describe("samplers", name)[1].startswith("diffmsst_plugins.")}
    assert {cell.bindings["SAMPLER"] for cell in spec.cells} == {repr(name) for name in builtin}
    assert {cell.bindings["SAMPLING_STEPS"] for cell in spec.cells} == {"1", "2", "4", "8", "16", "32"}
    assert len(spec.cells) == 36 and len({cell.train_key for cell in spec.cells}) == 1


# -- the mixture bound ---------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("sampler", ALL, ids=name)
def test_mixture_clip_bounds_every_x0_estimate_by_cond(sampler, steps):
    # a network whose x0 is 0.9 everywhere, under a mixture at 0.2 in half the bins: with clip_x0='mixture'
    # every step must see the bounded estimate, so the whole trajectory equals that of a network that
    # predicts min(0.9, cond) itself (a bound applied only at the end would leave the steps before apart)
    diffusion = make(prediction="x0")
    cond = torch.where(torch.arange(6) % 2 == 0, 0.2, 1.0).expand(2, 1, 8, 6).clone()

    def run(value, clip_x0):
        seen = []
        out = sampler(lambda x_t, t, c: torch.full_like(x_t, 0.0) + value, diffusion, noise_like(cond, 0), cond=cond,
                      steps=steps, clip_x0=clip_x0, generator=torch.Generator().manual_seed(1),
                      callback=lambda i, n, x: seen.append(x.clone()), **STOCHASTIC_KW.get(sampler, {}))
        return out, seen

    bounded, bounded_path = run(0.9, "mixture")
    reference, reference_path = run(torch.minimum(torch.tensor(0.9), cond), True)
    for a, b in zip(bounded_path + [bounded], reference_path + [reference]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(bounded, torch.minimum(torch.full_like(cond, 0.9), cond), atol=1e-5, rtol=0)
    plain, _ = run(0.9, True)
    assert (plain - bounded).abs().max() > 0.5  # the bound changed something


@pytest.mark.parametrize("sampler", ALL, ids=name)
def test_bad_clip_x0_is_a_user_error(sampler):
    diffusion, x0 = make(), known_x0()
    with pytest.raises(UserError, match="clip_x0 must be"):
        sampler(oracle(diffusion, x0), diffusion, noise_like(x0, 0), cond=x0, steps=2, clip_x0="mix")
    with pytest.raises(UserError, match="none was given"):
        sampler(oracle(diffusion, x0), diffusion, noise_like(x0, 0), steps=2, clip_x0="mixture")
    from toolkit.sampling import check_sampler_options  # the check a run and `separate` make before any work

    with pytest.raises(UserError, match="clip_x0 must be"):
        check_sampler_options(name(sampler), {"clip_x0": "mix"}, "Experiment.sampler_options")
    check_sampler_options(name(sampler), {"clip_x0": "mixture"}, "Experiment.sampler_options")
