"""CLI sub-commands: one module each, with ``add_parser(subparsers, parent)`` and ``main(args) -> int``.

Each ``main`` imports the implementation it runs inside the function: building
the parser (``toolkit --help``) then imports argparse alone, not torch or museval.
"""


def add_start_arguments(p) -> None:
    """``--start`` / ``--start-t``, shared by ``separate`` and ``evaluate`` (toolkit.sampling_start.STARTS)."""
    p.add_argument("--start", choices=("noise", "mixture", "estimate"),
                   help="where sampling starts: pure noise, or part-way from the noised mixture or one-step estimate "
                        "(default: the checkpoint's)")
    p.add_argument("--start-t", type=float, metavar="T",
                   help="with --start mixture|estimate: the fraction of the timesteps to start at, in (0, 1]")
