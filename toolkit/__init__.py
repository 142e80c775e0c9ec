"""Diff-MSST toolkit: diffusion-based counterfactual music source separation."""
__version__ = "0.1.0"


def __getattr__(name):  # `import toolkit` stays light (no torch) while `from toolkit import Separator` works
    if name == "Separator":
        from .api import Separator

        return Separator
    raise AttributeError(name)
