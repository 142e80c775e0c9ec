"""``toolkit data synth`` (write a synthetic MUSDB18-HQ tree), ``toolkit data info`` (describe a root) and
``toolkit data prepare`` (fill the decoded-audio cache)."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import UserError


def add_parser(subparsers, parent: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add ``data`` with ``synth``, ``info`` and ``prepare``; ``parent`` carries the CLI's common options (--plugin, --debug)."""
    parents = [parent] if parent is not None else []
    parser = subparsers.add_parser("data", help="make or inspect MUSDB18 roots",
                                   description="Make a synthetic MUSDB18-HQ root or describe an existing root.")
    parser.set_defaults(func=lambda args: _usage(parser))
    commands = parser.add_subparsers(dest="data_command", metavar="{synth,info,prepare}")

    p = commands.add_parser(
        "synth", parents=parents, help="write a synthetic MUSDB18-HQ tree (music-like stems that sum to the mixture)",
        description="Write DIR/train/<track>/{mixture,drums,bass,other,vocals}.wav and DIR/test/... "
                    "Deterministic: the same arguments give byte-identical files. Re-running with the same "
                    "arguments completes an interrupted tree; other arguments need another --out.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="new or empty folder (or an earlier tree made with the same arguments)")
    p.add_argument("--tracks", type=int, default=4, metavar="N", help="train tracks (default 4)")
    p.add_argument("--test-tracks", type=int, default=None, metavar="N", help="test tracks (default max(1, tracks // 2))")
    p.add_argument("--seconds", type=float, default=8.0, metavar="S", help="length of each track (default 8)")
    p.add_argument("--sample-rate", type=int, default=44100, metavar="SR", help="default 44100")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="default 0")
    p.add_argument("--style", default="default",
                   help="'varied' draws from more voices, instruments, kits, rooms and modes than 'default'; 'alt' "
                        "shares none of their voices or instruments, for evaluation on unseen material")
    p.add_argument("--subtype", default="FLOAT", help="WAV sample format: FLOAT (default), PCM_16 or PCM_24")
    p.set_defaults(func=run_synth)

    p = commands.add_parser("info", parents=parents, help="describe a MUSDB18 root: tracks, durations, rates, splits",
                            description="Describe a MUSDB18 / MUSDB18-HQ root (ROOT, else $MUSDB_PATH).")
    p.add_argument("root", nargs="?", default=None, metavar="ROOT")
    p.set_defaults(func=run_info)

    p = commands.add_parser(
        "prepare", parents=parents, help="decode a MUSDB18 root into the on-disk audio cache that training reads",
        description="Decode every track of ROOT (else $MUSDB_PATH) once into memory-mapped .npy files at the rate and "
                    "channels training reads (those of experiments/diffmsst_base.gin by default). A run with "
                    "datasets.musdb.disk_cache = True reads them, and builds missing ones on first use.")
    p.add_argument("root", nargs="?", default=None, metavar="ROOT")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="cache folder (default: $TOOLKIT_CACHE/audio, else ~/.cache/diffmsst-toolkit/audio); "
                        "set datasets.musdb.cache_dir to the same folder")
    p.add_argument("--sample-rate", type=int, default=44100, metavar="SR", help="rate training reads (default 44100)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 2), help="channels training reads (default 1)")
    p.add_argument("--subset", action="append", choices=("train", "test"), default=None,
                   help="subsets to prepare (default train: the training and validation songs); repeatable")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="decoding processes (default 2; 0 = this one)")
    p.set_defaults(func=run_prepare)
    return parser


def run(args) -> int:
    """Dispatch to the chosen ``data`` sub-command."""
    return args.func(args)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage()
    Console(stderr=True).print("choose a data command: synth, info or prepare")
    return 2


def run_synth(args) -> int:
    from .. import registry

    registry.load_builtin_plugins()
    synthesize = getattr(registry.get("datasets", "synthetic"), "synthesize", None)
    if synthesize is None:
        raise UserError("toolkit data synth: the registered 'synthetic' dataset has no synthesize(); "
                        "it is not the toolkit's built-in generator")
    out: Path = args.out
    before = _track_count(out)
    with Progress(TextColumn("[bold]synth[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(str(out), total=None)

        def advance(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=name)

        try:
            synthesize(out, tracks=args.tracks, seconds=args.seconds, sample_rate=args.sample_rate, seed=args.seed,
                             test_tracks=args.test_tracks, style=args.style, subtype=args.subtype, progress=advance)
        except (OSError, UserError) as exc:  # disk full, read-only, permissions: finished tracks stay
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if not isinstance(cause, OSError):
                raise  # the arguments were refused before anything was written
            raise UserError(f"synth: cannot write into {out} ({cause.strerror or cause}); free space or fix the folder, "
                            "then rerun the same command to complete the tree") from exc
    train, test = _track_count(out)
    written = train + test - sum(before)
    if written == 0:
        print(f"{out} already holds these {train} train + {test} test tracks; nothing to do")
    else:
        print(f"wrote {written} tracks to {out} ({train} train + {test} test, {args.seconds:g} s, "
              f"{args.sample_rate} Hz, style {args.style}); use it as a MUSDB18-HQ root: toolkit data info {out}")
    return 0


def _track_count(out: Path) -> tuple[int, int]:
    def count(split):
        folder = out / split
        return sum(1 for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else 0

    return count("train"), count("test")


def run_info(args) -> int:
    from ..data import describe_root

    Console().print(describe_root(args.root))
    return 0


def run_prepare(args) -> int:
    from ..data import default_cache_dir, open_db, prepare_cache, resolve_root
    from ..paths import check_writable_dir

    root = resolve_root(args.root)
    if args.workers < 0:
        raise UserError(f"--workers {args.workers} must be >= 0")
    cache = check_writable_dir(args.cache or default_cache_dir(), "--cache")
    tracks = [t for subset in (args.subset or ["train"]) for t in open_db(root, subset).tracks]
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]prepare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(str(root), total=len(tracks))

        def advance(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, description=name)

        failures = prepare_cache(tracks, args.sample_rate, args.channels, cache, args.workers, advance)
    for line in failures:  # on stdout: stderr keeps the one-line error
        Console().print(f"[red]{line}")
    if failures:
        raise UserError(f"{len(failures)} of {len(tracks)} tracks could not be decoded (listed above; first: "
                        f"{failures[0]}); the others are cached in {cache}")
    print(f"cached {len(tracks)} tracks of {root} at {args.sample_rate} Hz, {args.channels} ch in {cache}")
    return 0
