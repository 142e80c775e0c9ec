"""fp16 survives gradient overflow: the step is skipped through the GradScaler, whose scale backs off."""
import pytest
import torch

from conftest import REPO, run_cli

TINY = REPO / "tests" / "tiny.gin"

# Wraps the shipped loss; at the given calls its gradient becomes inf while the loss stays finite,
# as an fp16 overflow in the backward pass does.
OVERFLOW_LOSS = '''
from toolkit import registry

@registry.register("losses", "overflow_at")
class OverflowAt:
    """counterfactual, with non-finite gradients at the listed calls (tests the overflow path)."""
    def __init__(self, calls=(1, 3)):
        self.inner = registry.get("losses", "counterfactual")()
        self.calls, self.count = set(calls), 0
    def __call__(self, net, diffusion, batch):
        loss, parts = self.inner(net, diffusion, batch)
        if self.count in self.calls:
            loss.register_hook(lambda g: g * float("inf"))
        self.count += 1
        return loss, parts
'''


def train_with_overflow(tmp_path, precision, calls="(1, 3)", steps=6):
    plugin = tmp_path / "overflow_loss.py"
    plugin.write_text(OVERFLOW_LOSS)
    out = tmp_path / f"run-{precision}"
    p = run_cli("run", REPO / "experiments" / "quickstart.gin", TINY, "--plugin", plugin,
                "--gin_param", "Experiment.loss='overflow_at'", "--gin_param", f"losses.overflow_at.calls={calls}",
                "--gin_param", f"TrainConfig.precision='{precision}'", "--gin_param", f"TRAIN_STEPS={steps}",
                "--gin_param", "TrainConfig.max_nonfinite=2", "--out", out, check=0)
    return p, torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def test_fp16_overflow_backs_off_the_scale_and_training_goes_on(tmp_path):
    p, state = train_with_overflow(tmp_path, "fp16", calls="(1, 2, 3, 4)")
    # four overflows in a row would stop a run at max_nonfinite=2 if they counted as divergence
    assert state["step"] == 6
    assert state["meta"]["machine"]["precision"] == "fp16"
    assert state["scaler"]["scale"] <= 65536.0 / 2 ** 4, state["scaler"]
    assert len(state["history"]) == 2 and all(torch.isfinite(torch.tensor(state["history"]))), state["history"]
    assert "gradient overflow at loss scale 65536" in p.stdout, p.stdout[-2000:]
    assert "unscale_" not in p.stdout + p.stderr


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_without_a_scaler_a_nonfinite_gradient_is_a_counted_skip(tmp_path, precision):
    p, state = train_with_overflow(tmp_path, precision)
    assert state["step"] == 6
    assert len(state["history"]) == 4 and all(torch.isfinite(torch.tensor(state["history"])))
    assert not state["scaler"]  # a disabled GradScaler keeps no state
    assert "non-finite gradient norm" in p.stdout and "(1/2)" in p.stdout


def test_auto_never_picks_fp16_on_cpu_and_explicit_fp16_is_allowed():
    from toolkit.precision import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    assert resolve_precision("fp16", cpu) == "fp16"


def test_weight_decay_spares_norms_biases_and_embeddings():
    from torch import nn

    from toolkit.train import decay_groups

    net = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.GroupNorm(2, 4), nn.Conv1d(4, 4, 3))
    decay, keep = decay_groups(net, 0.01)
    assert decay["weight_decay"] == 0.01 and keep["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[1].weight), id(net[3].weight)}
    assert len(keep["params"]) == 5  # embedding table, two biases, the norm's scale and shift
