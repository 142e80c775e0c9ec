"""Diff-MSST toolkit: diffusion-based counterfactual music source separation."""
__version__ = "0.1.0"


def __getattr__(name):  # keep `import toolkit` light; `from toolkit import Separator` still works
    if name == "Separator":
        from .api import Separator

        return Separator
    raise AttributeError(name)
