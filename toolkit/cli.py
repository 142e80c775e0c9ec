"""``toolkit``: run | list | data | separate | evaluate | sweep.

User mistakes (:class:`UserError`) print one line and exit 2; ``--debug``
adds the traceback. Anything else is a bug: exit 1. SIGINT/SIGTERM exit
130/143 after the running command saved its state.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import traceback

from . import __version__
from .errors import Interrupted, UserError

# Core sub-commands (modules of this package, not plugins).
COMMANDS = ("run", "list", "data", "separate", "evaluate", "sweep")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit status 2."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}; see `{self.prog} --help`")

    def add_argument(self, *args, **kwargs):
        """Help shows each option's default, unless the text already says it or there is none to show."""
        action = super().add_argument(*args, **kwargs)
        text, default = action.help or "", action.default
        nothing = default is None or default is False or default == [] or default is argparse.SUPPRESS
        if action.option_strings and not nothing and action.help is not argparse.SUPPRESS and "default" not in text:
            action.help = f"{text} (default: %(default)s)".lstrip()
        return action


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--plugin", action="append", default=[], metavar="P",
                        help="import a plugin (module name or path/to/file.py) before anything else; repeatable")
    parent.add_argument("--debug", action="store_true", help="show tracebacks")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toolkit", description="Diff-MSST: diffusion-based counterfactual music source separation.")
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parent = common_options()
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"toolkit.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"toolkit.commands.{name}":
                continue  # not built yet
            raise
        if len(inspect.signature(module.add_parser).parameters) >= 2:
            module.add_parser(sub, parent)
        else:
            module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TOOLKIT_DEBUG") == "1"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        if getattr(args, "plugin", None):
            from . import config
            config.load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        # gin appends "In call to configurable ..." lines to errors raised inside configurables
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so, keep it to one line unless --debug
        if debug:
            traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0]  # gin appends "In call to configurable ..." lines
        print(f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
