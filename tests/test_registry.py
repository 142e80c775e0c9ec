import gin
import pytest

from toolkit import config, registry
from toolkit.errors import UnknownNameError, UserError


@pytest.fixture(autouse=True)
def builtins():
    registry.load_builtin_plugins()
    yield
    gin.clear_config()


def test_kinds_and_builtin_names():
    assert {"transforms", "backbones", "schedules", "samplers", "losses"} <= set(registry.KINDS)
    assert "stft_normalizer" in registry.names("transforms")
    assert "attention_unet" in registry.names("backbones")
    assert {"linear", "cosine"} <= set(registry.names("schedules"))
    assert {"ddpm", "ddim"} <= set(registry.names("samplers"))
    assert "counterfactual" in registry.names("losses")
    assert registry.names("samplers") == sorted(registry.names("samplers"))


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as err:
        registry.get("samplers", "ddmi")
    msg = str(err.value)
    assert "did you mean 'ddim'" in msg and "ddpm" in msg
    assert isinstance(err.value, KeyError)


def test_unknown_kind():
    with pytest.raises(UserError, match="did you mean 'samplers'"):
        registry.get("samplerz", "ddim")


def test_duplicate_registration_names_both_modules():
    @registry.register("samplers", "test_dup_sampler")
    def first(model_fn, diffusion, x_T, **kw):
        return x_T

    with pytest.raises(ValueError) as err:
        @registry.register("samplers", "test_dup_sampler")
        def second(model_fn, diffusion, x_T, **kw):
            return x_T
    assert "registered twice" in str(err.value) and __name__ in str(err.value)


def test_registered_part_is_gin_configurable():
    @registry.register("samplers", "test_gin_sampler")
    def sampler(model_fn, diffusion, x_T, *, steps=3, **kw):
        return steps

    config.parse([], ["samplers.test_gin_sampler.steps = 7"])
    assert registry.get("samplers", "test_gin_sampler")(None, None, None) == 7


def test_gin_reference_resolves_to_registered_object():
    config.parse([], ["Experiment.sampler = @samplers.ddim"], ())
    from toolkit.experiment import Experiment  # noqa: F401  (registers the root)

    assert registry.name_of("samplers", registry.get("samplers", "ddim")) == "ddim"


def test_gin_typo_gets_suggestion():
    with pytest.raises(UserError, match="did you mean 'samplers.ddim'"):
        config.parse([], ["samplers.ddmi.steps = 10"])


def test_plugin_file_registers(tmp_path):
    plugin = tmp_path / "my_sampler_reg.py"
    plugin.write_text(
        "from toolkit import registry\n"
        "@registry.register('samplers', 'my_reg_sampler')\n"
        "def my_reg_sampler(model_fn, diffusion, x_T, *, cond=None, steps=None, generator=None, callback=None):\n"
        "    '''A test sampler.'''\n"
        "    return x_T\n")
    registry.load_plugin(str(plugin))
    assert "my_reg_sampler" in registry.names("samplers")
    registry.load_plugin(str(plugin))  # loading twice is a no-op, not a duplicate


def test_missing_plugin_file():
    with pytest.raises(UserError, match="no such file"):
        registry.load_plugin("/nonexistent/plugin.py")
