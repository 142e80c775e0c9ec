"""Sampling that starts part-way: from the noised mixture or a noised one-step estimate, for every sampler."""
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, assert_one_line_error, run_cli
from test_bad_inputs import invoke
from toolkit import registry
from toolkit.diffusion import GaussianDiffusion
from toolkit.errors import UserError
from toolkit.sampling_start import check_start, start_timestep, starting_point

registry.load_builtin_plugins()
SAMPLERS = sorted(registry.names("samplers"))


def make(prediction="x0", num=1000):
    return GaussianDiffusion(registry.get("schedules", "cosine")(num), prediction=prediction)


def test_truncated_keeps_the_tables_of_its_timesteps():
    d = make()
    cut = d.truncated(299)
    assert cut.num_timesteps == 300 and cut.prediction == "x0"
    for name in ("alphas_cumprod", "sigmas", "posterior_variance", "posterior_mean_coef1"):
        assert torch.allclose(getattr(cut, name), getattr(d, name)[:300], rtol=1e-12, atol=0), name
    with pytest.raises(UserError, match="outside"):
        d.truncated(1000)


def test_start_points():
    d = make()
    cond = torch.rand(2, 1, 8, 6) * 2 - 1
    noise = torch.randn(2, 1, 8, 6, generator=torch.Generator().manual_seed(0))
    calls = []

    def model_fn(x_t, t, c):
        calls.append(int(t[0]))
        return torch.full_like(x_t, 0.25)

    assert starting_point(d, model_fn, cond, noise, start="noise", start_t=1.0, steps=3, generator=None) == (d, noise, 3)
    # one step from an estimate is the estimate itself: no evaluation is left to refine it
    assert starting_point(d, model_fn, cond, noise, start="estimate", start_t=0.5, steps=1, generator=None) == (d, noise, 1)
    cut, x_T, steps = starting_point(d, model_fn, cond, noise, start="mixture", start_t=0.5, steps=3, generator=None)
    last = start_timestep(0.5, 1000)
    assert last == 500 and cut.num_timesteps == 501 and steps == 3 and not calls
    expected = d.alphas_cumprod[last].sqrt() * cond + (1 - d.alphas_cumprod[last]).sqrt() * noise
    assert torch.allclose(x_T, expected.float(), atol=1e-6)
    g = torch.Generator().manual_seed(1)
    cut, x_T, steps = starting_point(d, model_fn, cond, noise, start="estimate", start_t=0.3, steps=4, generator=g)
    assert calls == [999] and steps == 3 and cut.num_timesteps == start_timestep(0.3, 1000) + 1
    fresh = torch.randn(noise.shape, generator=torch.Generator().manual_seed(1))
    a = d.alphas_cumprod[cut.num_timesteps - 1]
    assert torch.allclose(x_T, (a.sqrt() * 0.25 + (1 - a).sqrt() * fresh).float(), atol=1e-6)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("start", ["mixture", "estimate"])
def test_every_sampler_starts_part_way_and_reaches_x0(sampler, start):
    """A perfect x0 model returns its x0 from any start; the network never sees a timestep above the start."""
    d = make()
    target = torch.rand(2, 1, 8, 6) * 1.6 - 0.8
    cond = target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(3))
    seen = []

    def model_fn(x_t, t, c):
        seen.append(int(t[0]))
        return target.clone()

    for steps in (1, 2, 4, 8):
        seen.clear()
        cut, x_T, left = starting_point(d, model_fn, cond, noise, start=start, start_t=0.4, steps=steps,
                                        generator=torch.Generator().manual_seed(4))
        out = registry.get("samplers", sampler)(model_fn, cut, x_T, cond=cond, steps=left,
                                                generator=torch.Generator().manual_seed(5))
        assert len(seen) == steps, (sampler, start, steps, seen)  # steps counts every network evaluation
        if steps > 1 or start == "mixture":
            assert max(seen[1:] if start == "estimate" else seen) <= start_timestep(0.4, 1000)
        assert torch.allclose(out, target, atol=2e-3), (sampler, start, steps)


@pytest.mark.parametrize("args, match", [
    (("middle", 1.0, 4), "unknown"), (("mixture", 0.0, 4), r"\(0, 1\]"), (("mixture", 1.5, 4), r"\(0, 1\]"),
    (("mixture", "x", 4), "number"), (("noise", 0.5, 4), "needs start"),
    (("mixture", 0.002, 4), "exceed"),
])
def test_bad_starts_are_refused(args, match):
    with pytest.raises(UserError, match=match):
        check_start(*args, num_timesteps=1000, where="SAMPLING_START")


def test_cli_and_gin_starts(tmp_path, capfd):
    tiny = REPO / "tests" / "tiny.gin"
    run = tmp_path / "run"
    run_cli("run", REPO / "experiments" / "quickstart.gin", tiny, "--gin_param", "SAMPLING_START='mixture'",
            "--gin_param", "SAMPLING_START_T=0.5", "--gin_param", "SAMPLING_STEPS=2", "--out", run, check=0)
    ckpt = run / "checkpoints" / "last.pt"
    meta = torch.load(ckpt, map_location="cpu", weights_only=False)["meta"]["parts"]["sampling"]
    assert (meta["start"], meta["start_t"]) == ("mixture", 0.5)
    song = tmp_path / "song.wav"
    sf.write(song, np.random.default_rng(0).uniform(-0.3, 0.3, (22050, 1)).astype(np.float32), 22050)
    for extra in ([], ["--start", "noise"], ["--start", "estimate", "--start-t", "0.3"]):  # in this process: faster
        invoke(["separate", song, "--checkpoint", ckpt, "--out", tmp_path / "o", *extra], capfd, check=0)
    assert_one_line_error(invoke(["separate", song, "--checkpoint", ckpt, "--out", tmp_path / "o2", "--start-t", "1.5"],
                                 capfd), 2, "start_t")
    assert_one_line_error(run_cli("run", REPO / "experiments" / "quickstart.gin", tiny, "--gin_param",
                                  "SAMPLING_START='middle'", "--out", tmp_path / "bad"), 2, "SAMPLING_START")


def test_a_run_cannot_start_from_a_given_estimate():
    from toolkit.experiment import Experiment

    with pytest.raises(UserError, match="--refine"):
        Experiment(dataset="synthetic", sampling_start="given", sampling_start_t=0.3, sampling_steps=2)
