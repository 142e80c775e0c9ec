"""CLI sub-commands: one module each, with ``add_parser(subparsers, parent)`` and ``main(args) -> int``.

Each ``main`` imports the implementation it runs inside the function: building
the parser (``toolkit --help``) then imports argparse alone, not torch or museval.
"""
