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


CLIP_CHOICES = {"true": True, "mixture": "mixture", "false": False}


def add_sampling_arguments(p) -> None:
    """``--clip-x0`` / ``--samples``, shared by ``separate`` and ``evaluate``."""
    p.add_argument("--clip-x0", choices=tuple(CLIP_CHOICES),
                   help="bound every x0 estimate: [-1, 1] (true), by the mixture (mixture) or not (false) "
                        "(default: the checkpoint's)")
    p.add_argument("--samples", type=int, default=1, metavar="K",
                   help="average the instrumental magnitude of K samples (default 1)")


def sampling_overrides(args) -> dict:
    """``from_checkpoint`` keywords for the options :func:`add_sampling_arguments` adds."""
    options = {} if args.clip_x0 is None else {"clip_x0": CLIP_CHOICES[args.clip_x0]}
    return {"sampler_options": options, "samples": args.samples}
