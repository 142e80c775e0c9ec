"""SIGINT/SIGTERM as a flag checked between units of work (a training step, a separated file)."""
from __future__ import annotations

import signal

from .errors import Interrupted


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked between steps (state is saved, then exit 130/143)."""

    def __init__(self):
        self.code = None
        self._old = {}

    def __enter__(self):
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            try:
                self._old[sig] = signal.signal(sig, self._handler(code))
            except ValueError:  # not in the main thread
                pass
        return self

    def _handler(self, code):
        def handle(signum, frame):
            if self.code is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self.code = code

        return handle

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    def check(self, what: str):
        if self.code is not None:
            raise Interrupted(self.code, what)
