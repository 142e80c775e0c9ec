"""Errors the user can fix: the CLI prints them as one line and exits 2.

Everything else is a bug and exits 1 (with the traceback under ``--debug``).
"""


class UserError(Exception):
    """A problem with the user's input: what, where, what to do.

    The message is printed as-is on one line, so it must name the file or
    value at fault and the way out.
    """

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A name that is not registered (also a ``KeyError`` for library users)."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0] if self.args else ""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; state was saved. ``code`` is 130 or 143."""

    def __init__(self, code: int, message: str = "interrupted"):
        super().__init__(message)
        self.code = code
