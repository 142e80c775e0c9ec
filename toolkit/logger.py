"""One small logging interface over several back ends (registered under ``loggers``).

A back end implements ``scalars(dict, step)``, ``audio(tag, (channels, samples), rate, step)``,
``image(tag, figure, step)``, ``text(tag, text, step)``, ``config(name, bindings, text)`` (once,
before training: the run's name, its flat gin bindings and operative config), ``hparams(bindings,
metrics)`` (once, at the end: the bindings with the run's final metrics) and ``close()``. :class:`MultiLogger` fans out to all of them;
only rank 0 gets real back ends.
"""
from __future__ import annotations


class NullLogger:
    def scalars(self, values: dict, step: int) -> None: ...

    def audio(self, tag: str, audio, rate: int, step: int) -> None: ...

    def image(self, tag: str, figure, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...

    def config(self, name: str, bindings: dict, text: str) -> None: ...

    def hparams(self, bindings: dict, metrics: dict) -> None: ...

    def close(self) -> None: ...


class MultiLogger(NullLogger):
    def __init__(self, backends):
        self.backends = list(backends)

    def scalars(self, values, step):
        for b in self.backends:
            b.scalars(values, step)

    def audio(self, tag, audio, rate, step):
        for b in self.backends:
            b.audio(tag, audio, rate, step)

    def image(self, tag, figure, step):
        for b in self.backends:
            b.image(tag, figure, step)

    def text(self, tag, text, step):
        for b in self.backends:
            b.text(tag, text, step)

    def config(self, name, bindings, text):
        for b in self.backends:
            b.config(name, bindings, text)

    def hparams(self, bindings, metrics):
        for b in self.backends:
            b.hparams(bindings, metrics)

    def close(self):
        for b in self.backends:
            b.close()
