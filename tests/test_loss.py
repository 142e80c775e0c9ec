import pytest
import torch

from toolkit import registry
from toolkit.contracts import Batch
from toolkit.diffusion import PREDICTIONS, GaussianDiffusion
from toolkit.errors import UserError

registry.load_builtin_plugins()
CounterfactualLoss = registry.get("losses", "counterfactual")


def normalized_loss(**kwargs):
    """The vocal term in the network's own space: needs no transform."""
    return CounterfactualLoss(vocal_space="normalized", **kwargs)


def batch(seed=0, shape=(2, 1, 8, 8)):
    gen = torch.Generator().manual_seed(seed)
    instrumental = torch.rand(shape, generator=gen) - 0.5
    vocals = torch.rand(shape, generator=gen) - 0.5
    mixture = instrumental + vocals
    noise = torch.randn(shape, generator=gen)
    t = torch.randint(0, 100, (shape[0],), generator=gen)
    return instrumental, mixture, vocals, noise, t


def make(x0, cond, vocals, t, noise, to_magnitude=lambda s: s, to_vocals=None):
    """A loss Batch; ``to_vocals`` defaults to the plain difference cond - x0_hat (specs that add up)."""
    to_vocals = to_vocals or (lambda x0_hat: cond - x0_hat)
    return Batch(x0=x0, cond=cond, vocals=vocals, t=t, noise=noise, to_magnitude=to_magnitude, to_vocals=to_vocals)


def diffusion(prediction="eps"):
    return GaussianDiffusion(registry.get("schedules", "linear")(100, beta_end=0.2), prediction=prediction)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_perfect_network_has_zero_loss(prediction):
    d = diffusion(prediction)
    x0, cond, vocals, noise, t = batch()
    net = lambda x_t, t_, c: d.training_target(x0, noise, t_, x_t)  # noqa: E731
    total, parts = normalized_loss()(net, d, make(x0, cond, vocals, t, noise))
    assert set(parts) == {"diffusion", "vocal", "total"}
    assert total.ndim == 0 and parts["total"] is total
    assert parts["diffusion"].item() < 1e-10
    assert parts["vocal"].item() < 1e-10  # cond - x0 is exactly the vocals here


def test_parts_and_weighting():
    d = diffusion("v")
    x0, cond, vocals, noise, t = batch()
    net = lambda x_t, t_, c: torch.zeros_like(x_t)  # noqa: E731
    total, parts = normalized_loss(vocal_weight=0.25)(net, d, make(x0, cond, vocals, t, noise))
    x_t = d.q_sample(x0, t, noise)
    target = d.training_target(x0, noise, t)
    torch.testing.assert_close(parts["diffusion"], target.square().mean())
    x0_hat = d.to_x0(x_t, t, torch.zeros_like(x_t))
    torch.testing.assert_close(parts["vocal"], (cond - x0_hat - vocals).square().mean())
    torch.testing.assert_close(total, parts["diffusion"] + 0.25 * parts["vocal"])


def test_custom_to_vocals():
    d = diffusion("x0")
    x0, cond, vocals, noise, t = batch()
    seen = []

    def to_vocals(x0_hat):
        seen.append(x0_hat.shape)
        return vocals + 1.0

    _, parts = normalized_loss()(lambda x_t, t_, c: x0, d, make(x0, cond, vocals, t, noise, to_vocals=to_vocals))
    assert seen == [x0.shape]
    assert parts["vocal"].item() == pytest.approx(1.0)


def test_tiny_unet_overfits():
    torch.manual_seed(0)  # parameter init only
    d = diffusion("v")
    x0, cond, vocals, noise, t = batch(shape=(2, 1, 8, 8))
    net = registry.get("backbones", "attention_unet")(
        in_channels=2, out_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_heads=2, groups=4
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss = normalized_loss()
    history = []
    for _ in range(40):
        total, _ = loss(net, d, make(x0, cond, vocals, t, noise))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert history[-1] < 0.5 * history[0], history


def test_nan_input_raises():
    d = diffusion()
    x0, cond, vocals, noise, t = batch()
    x0[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(diffusion=.*vocal=.*total=nan"):
        normalized_loss()(lambda x_t, t_, c: x_t, d, make(x0, cond, vocals, t, noise))


def test_bad_weight():
    with pytest.raises(UserError, match="vocal_weight"):
        CounterfactualLoss(vocal_weight=-1)


def test_bad_vocal_space_names_the_choices():
    with pytest.raises(UserError, match="vocal_space 'linear'.*'normalized', 'magnitude'"):
        CounterfactualLoss(vocal_space="linear")


def positive_batch(seed=0, shape=(2, 1, 8, 8)):
    """Linear magnitudes (instrumental, mixture, vocals) with mixture = instrumental + vocals >= 0."""
    gen = torch.Generator().manual_seed(seed)
    instrumental, vocals = torch.rand(shape, generator=gen) * 0.9, torch.rand(shape, generator=gen)
    return instrumental, instrumental + vocals, vocals


def test_magnitude_space_is_the_relative_magnitude_error():
    """vocal = mean(((|mix| - |x0_hat|)+ - |vocals|)^2) / mean(|mix|^2) per item, through to_magnitude."""
    d = diffusion("x0")
    x0, cond, vocals = positive_batch()
    t, noise = torch.tensor([0, 99]), torch.zeros_like(x0)
    to_magnitude = lambda spec: spec * 2.0  # noqa: E731  (a stand-in transform inverse)
    loss = CounterfactualLoss(vocal_weight=1.0)
    _, perfect = loss(lambda x_t, t_, c: x0, d, make(x0, cond, vocals, t, noise, to_magnitude=to_magnitude))
    assert perfect["vocal"].item() < 1e-12
    guess = x0 * 0.5  # a network that under-estimates the instrumental
    _, parts = loss(lambda x_t, t_, c: guess, d, make(x0, cond, vocals, t, noise, to_magnitude=to_magnitude))
    mix, est, true = 2 * cond, (2 * cond - 2 * guess).clamp_min(0), 2 * vocals
    scale = mix.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    torch.testing.assert_close(parts["vocal"], ((est - true) / scale).square().mean())
    # the error of a loud item and of the same item 100x quieter count alike
    loud = loss(lambda x_t, t_, c: guess, d, make(x0, cond, vocals, t, noise, to_magnitude=lambda s: s * 100.0))[1]
    torch.testing.assert_close(loud["vocal"], parts["vocal"])


def test_magnitude_space_gradient_reaches_the_network():
    d = diffusion("x0")
    x0, cond, vocals = positive_batch()
    w = torch.zeros(1, requires_grad=True)
    _, parts = CounterfactualLoss(vocal_weight=1.0)(lambda x_t, t_, c: x0 * 0.5 + w, d,
                                                    make(x0, cond, vocals, torch.tensor([0, 5]), torch.zeros_like(x0)))
    parts["vocal"].backward()
    assert w.grad is not None and w.grad.abs().item() > 0


def test_psa_targets_of_instrumental_and_vocals_add_up_to_the_mixture():
    from toolkit.settings import TrainConfig
    from toolkit.train import target_spec

    transform = registry.get("transforms", "stft_normalizer")(n_fft=256, hop_length=64)
    g = torch.Generator().manual_seed(0)
    vocals, instrumental = (0.1 * torch.randn(2, 1, 4000, generator=g) for _ in range(2))
    cond, state = transform.encode(vocals + instrumental)
    inst, voc = (target_spec(transform, a, state, "psa") for a in (instrumental, vocals))
    total = transform.magnitude(inst, state) + transform.magnitude(voc, state)
    torch.testing.assert_close(total, state.mag, rtol=1e-4, atol=1e-5)
    # the magnitude target is the transform's own encoding, and differs from psa where the phases disagree
    assert torch.equal(target_spec(transform, instrumental, state, "magnitude"), transform.encode_with(instrumental, state))
    assert (target_spec(transform, instrumental, state, "magnitude") - inst).abs().mean() > 0.01
    with pytest.raises(UserError, match="TrainConfig.target"):
        TrainConfig(target="phase").check()
