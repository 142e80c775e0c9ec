import pytest
import torch

from toolkit import registry
from toolkit.diffusion import GaussianDiffusion
from toolkit.errors import UserError

registry.load_builtin_plugins()
ddpm, ddim = registry.get("samplers", "ddpm"), registry.get("samplers", "ddim")


def make(schedule="cosine", num=1000):
    return GaussianDiffusion(registry.get("schedules", schedule)(num))


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

    for sampler, kw in ((ddpm, {}), (ddim, {"eta": 1.0})):
        assert torch.equal(run(sampler, 1, **kw), run(sampler, 1, **kw))
        assert not torch.allclose(run(sampler, 1, **kw), run(sampler, 2, **kw))
    assert torch.equal(run(ddim, 1, eta=0.0), run(ddim, 2, eta=0.0)), "eta = 0 draws no noise"


@pytest.mark.parametrize("sampler,steps,expected", [(ddpm, None, 30), (ddpm, 7, 7), (ddim, None, 30), (ddim, 7, 7)])
def test_callback_and_timesteps(sampler, steps, expected):
    diffusion = make(num=30)  # fewer than ddim's default 50 steps: it uses all 30
    calls, seen_t = [], []

    def model_fn(x_t, t, cond):
        assert t.dtype == torch.long and t.shape == (x_t.shape[0],)
        assert cond == "mixture"
        seen_t.append(int(t[0]))
        return torch.zeros_like(x_t)

    x_T = torch.zeros(3, 1, 2, 2)
    sampler(model_fn, diffusion, x_T, cond="mixture", steps=steps, callback=lambda i, n, x: calls.append((i, n, x.shape)))
    assert calls == [(i, expected, x_T.shape) for i in range(expected)]
    assert seen_t == sorted(seen_t, reverse=True) and seen_t[0] == 29 and seen_t[-1] == 0


def test_bad_options():
    diffusion, x_T = make(num=10), torch.zeros(1, 1, 2, 2)
    zero = lambda x_t, t, cond: torch.zeros_like(x_t)  # noqa: E731
    with pytest.raises(UserError, match="sampling steps 11"):
        ddim(zero, diffusion, x_T, steps=11)
    with pytest.raises(UserError, match="sampling steps 0"):
        ddpm(zero, diffusion, x_T, steps=0)
    with pytest.raises(UserError, match="eta"):
        ddim(zero, diffusion, x_T, eta=-1.0)


def test_runs_without_grad():
    diffusion, x_T = make(num=10), torch.zeros(1, 1, 2, 2)
    weight = torch.ones((), requires_grad=True)

    def model_fn(x_t, t, cond):
        assert not torch.is_grad_enabled()
        return weight * x_t

    assert not ddim(model_fn, diffusion, x_T, steps=3).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sampler", [ddpm, ddim])
def test_cuda_matches_cpu_with_a_cpu_generator(sampler):
    diffusion, x0 = make(num=100), known_x0()
    kw = {"eta": 1.0} if sampler is ddim else {}
    outs = []
    for device in ("cpu", "cuda"):
        target = x0.to(device)
        outs.append(
            sampler(oracle(diffusion, target), diffusion, noise_like(x0, 0).to(device), steps=20,
                    generator=torch.Generator().manual_seed(3), clip_x0=False, callback=lambda i, n, x: None, **kw)
        )
    torch.testing.assert_close(outs[1].cpu(), outs[0], atol=1e-4, rtol=1e-4)
