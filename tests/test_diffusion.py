import pytest
import torch

from toolkit import registry
from toolkit.diffusion import PREDICTIONS, SPACINGS, GaussianDiffusion, check_num_timesteps
from toolkit.errors import UserError

registry.load_builtin_plugins()


def make(schedule="cosine", num=1000, prediction="eps"):
    return GaussianDiffusion(registry.get("schedules", schedule)(num), prediction=prediction)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_q_sample_statistics(schedule):
    diffusion = make(schedule)
    gen = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 100, 500, 999])
    x0 = torch.tensor([0.9, -0.5, 0.3, 1.0], dtype=torch.float64)[:, None, None, None].expand(4, 1, 100, 100)
    noise = torch.randn(4, 1, 100, 100, generator=gen, dtype=torch.float64)
    x_t = diffusion.q_sample(x0, t, noise)
    abar = diffusion.alphas_cumprod[t]
    mean, var = x_t.mean(dim=(1, 2, 3)), x_t.var(dim=(1, 2, 3))
    torch.testing.assert_close(mean, abar.sqrt() * x0[:, 0, 0, 0], atol=0.04, rtol=0)
    torch.testing.assert_close(var, 1 - abar, atol=0.03, rtol=0.05)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_targets_convert_back(prediction, schedule):
    diffusion = make(schedule, prediction=prediction)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 2, 4, 3, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.randn(5, 2, 4, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, 400, 900, 998])  # t=999 of cosine amplifies eps -> x0 by 2e4: float64 rounding
    x_t = diffusion.q_sample(x0, t, noise)
    target = diffusion.training_target(x0, noise, t, x_t)
    assert (diffusion.to_eps(x_t, t, target) - noise).abs().max() < 1e-5
    assert (diffusion.to_x0(x_t, t, target) - x0).abs().max() < 1e-5
    assert (diffusion.predict_x0(x_t, t, noise) - x0).abs().max() < 1e-5
    assert (diffusion.predict_eps(x_t, t, x0) - noise).abs().max() < 1e-5


def test_v_target_formula():
    diffusion = make(prediction="v")
    x0, noise, t = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0), torch.tensor([300])
    abar = diffusion.alphas_cumprod[300].item()
    expected = abar**0.5 * 2.0 - (1 - abar) ** 0.5 * 1.0
    assert diffusion.training_target(x0, noise, t).item() == pytest.approx(expected, rel=1e-6)


def test_extract_casts_to_input():
    diffusion = make()
    x = torch.zeros(3, 2, 5, 4, dtype=torch.float32)
    out = diffusion.q_sample(x, torch.tensor([1, 2, 3]), x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert diffusion.betas.dtype == torch.float64 and diffusion.alphas_cumprod.dtype == torch.float64


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_is_consistent_with_marginals(schedule):
    # Linear in x_t: plugging E[x_t | x0] into the posterior mean gives E[x_{t-1} | x0], and
    # the posterior variance + coef2^2 Var(x_t | x0) gives Var(x_{t-1} | x0) = 1 - abar_{t-1}.
    diffusion = make(schedule)
    t = torch.arange(1, 1000, 37)
    x0 = torch.linspace(-1, 1, len(t), dtype=torch.float64)[:, None, None, None]
    abar, abar_prev = diffusion.alphas_cumprod[t], diffusion.alphas_cumprod[t - 1]
    x_t_mean = abar.sqrt()[:, None, None, None] * x0
    mean, variance, log_variance = diffusion.posterior(x0, x_t_mean, t)
    torch.testing.assert_close(mean, abar_prev.sqrt()[:, None, None, None] * x0, atol=1e-10, rtol=0)
    coef2 = diffusion.posterior_mean_coef2[t]
    torch.testing.assert_close(variance.flatten() + coef2**2 * (1 - abar), 1 - abar_prev, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_variance.exp(), variance, atol=1e-12, rtol=1e-9)
    _, var0, logvar0 = diffusion.posterior(x0[:1], x0[:1], torch.tensor([0]))
    assert var0.item() == 0 and torch.isfinite(logvar0).all()


def test_bad_prediction_lists_choices():
    with pytest.raises(UserError, match="eps, x0, v"):
        make(prediction="epsilon")


def test_bad_betas():
    with pytest.raises(UserError, match=r"\(0, 1\)"):
        GaussianDiffusion([0.1, 1.0])


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 50, 999, 1000])
def test_respace(spacing, steps, schedule):
    timesteps = make(schedule).respace(steps, spacing)
    assert timesteps.dtype == torch.long and timesteps.shape == (steps,)
    assert timesteps[-1].item() == 999
    if steps > 1:
        assert timesteps[0].item() == 0
        assert bool((timesteps[1:] > timesteps[:-1]).all())


def test_respace_spacings_differ():
    diffusion = make()
    uniform, quadratic = diffusion.respace(10, "uniform"), diffusion.respace(10, "quadratic")
    assert uniform.tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert quadratic[1] < uniform[1] and quadratic[-2] > uniform[-2] - 111


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_logsnr_spacing_is_even_in_log_sigma(schedule):
    diffusion = make(schedule)
    log_sigma = diffusion.sigmas[diffusion.respace(20, "logsnr")].log()
    step = (log_sigma[-1] - log_sigma[0]) / 19
    # each timestep is the nearest one to its target, except among the last few, which are so far
    # apart in sigma (cosine: 641 -> 2e4 in one step) that several targets crowd onto them
    targets = log_sigma[0] + step * torch.arange(20)
    table = diffusion.sigmas.log()
    checked = 0
    for value, target in zip(log_sigma.tolist(), targets.tolist()):
        if target < table[-5]:
            assert abs(value - target) == pytest.approx((table - target).abs().min().item(), abs=1e-12)
            checked += 1
    assert checked >= 12


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_karras_spacing(schedule):
    # sigma^(1/7) evenly spaced from sigma_0 up to 80 (both schedules' last sigma lies above it), then the last
    diffusion = make(schedule)
    assert diffusion.sigmas[-1] > 80
    timesteps = diffusion.respace(12, "karras")
    lo, hi = diffusion.sigmas[0].item() ** (1 / 7), 80 ** (1 / 7)
    targets = [(lo + i / 10 * (hi - lo)) ** 7 for i in range(11)]
    table = diffusion.sigmas.log()
    for t, target in zip(timesteps[:-1].tolist(), targets):
        assert t == int((table - torch.tensor(target).log()).abs().argmin())
    assert timesteps[-1] == 999
    small = GaussianDiffusion(torch.full((20,), 0.05))  # last sigma < 80: the ramp ends there
    sigmas = small.sigmas[small.respace(20, "karras")]
    assert small.respace(20, "karras").tolist() == list(range(20)) and sigmas[-1] < 80


def test_check_num_timesteps():
    assert check_num_timesteps(7, "schedules.x") == 7
    with pytest.raises(UserError, match=r"schedules\.x: num_timesteps must be an integer >= 1, got 0"):
        check_num_timesteps(0, "schedules.x")


@pytest.mark.parametrize("steps", [0, -1, 1001])
def test_respace_bad_steps(steps):
    with pytest.raises(UserError, match=r"sampling steps .* must be in 1\.\.1000 \(the training timesteps"):
        make().respace(steps)


def test_respace_bad_spacing():
    with pytest.raises(UserError, match="uniform, quadratic"):
        make().respace(10, "linear")


def test_respaced_keeps_alphas_cumprod():
    diffusion = make("linear")
    timesteps = diffusion.respace(20)
    sub = diffusion.respaced(timesteps)
    assert sub.num_timesteps == 20 and sub.prediction == diffusion.prediction
    torch.testing.assert_close(sub.alphas_cumprod, diffusion.alphas_cumprod[timesteps], rtol=1e-12, atol=0)
    full = diffusion.respaced(torch.arange(1000))
    torch.testing.assert_close(full.betas, diffusion.betas, rtol=1e-9, atol=0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_conversions_of_float32_predictions_round_once(prediction):
    # At the cosine schedule's last timestep x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) multiplies
    # float32 rounding by ~2e4; in float64 arithmetic the result is the float64 one, rounded once.
    diffusion = make("cosine", prediction=prediction)
    gen = torch.Generator().manual_seed(0)
    x_t, pred = torch.randn(2, 1, 16, 16, generator=gen), torch.randn(2, 1, 16, 16, generator=gen)
    t = torch.tensor([999, 998])
    for convert in (diffusion.to_x0, diffusion.to_eps, diffusion.predict_x0, diffusion.predict_eps):
        out = convert(x_t, t, pred)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, convert(x_t.double(), t, pred.double()).float(), rtol=1.2e-7, atol=0)
    if prediction == "x0":  # passed through untouched
        assert diffusion.to_x0(x_t, t, pred) is pred
    if prediction == "eps":
        assert diffusion.to_eps(x_t, t, pred) is pred


def test_conversions_keep_gradients():
    diffusion = make(prediction="v")
    x_t, pred = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3, requires_grad=True)
    diffusion.to_x0(x_t, torch.tensor([5, 500]), pred).sum().backward()
    assert pred.grad is not None and pred.grad.dtype == torch.float32


def test_sigmas():
    diffusion = make()
    abar = diffusion.alphas_cumprod
    torch.testing.assert_close(diffusion.sigmas, ((1 - abar) / abar).sqrt(), rtol=1e-12, atol=0)
    assert bool((diffusion.sigmas[1:] > diffusion.sigmas[:-1]).all())
