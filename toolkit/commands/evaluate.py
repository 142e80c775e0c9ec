"""``toolkit evaluate``: score a checkpoint (or existing estimates) on a MUSDB18 root with museval."""
from __future__ import annotations

import json
from pathlib import Path

from . import add_sampling_arguments, add_start_arguments, sampling_overrides


def add_parser(sub, parent):
    p = sub.add_parser("evaluate", parents=[parent], help="separate and score a MUSDB18 root with museval")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint written by `toolkit run`")
    src.add_argument("--estimates", help="score existing estimates: what `toolkit separate --out DIR` wrote (DIR/<model>/<track>/), "
                          "or museval's DIR/<subset>/<track>/{vocals,accompaniment}.wav")
    p.add_argument("--root", help="MUSDB18 root (default: $MUSDB_PATH)")
    p.add_argument("--subset", default="test", choices=("train", "test"))
    p.add_argument("--tracks", nargs="+", metavar="NAME", help="only these tracks")
    p.add_argument("--out", help="output folder (default: evaluation/ or the estimates folder)")
    p.add_argument("--sampler")
    p.add_argument("--steps", type=int)
    p.add_argument("--post-filter", choices=("none", "soft", "wiener"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refine", metavar="DIR",
                   help="with --checkpoint: refine another separator's estimates in DIR (the layouts --estimates reads), "
                        "noised to --start-t and sampled from there")
    add_start_arguments(p)
    add_sampling_arguments(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-baseline", action="store_true", help="skip scoring the mixture-as-estimate baseline")
    p.set_defaults(func=main)


def main(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from ..data import open_db, resolve_root
    from ..errors import UserError
    from ..evaluate import evaluate_tracks, results_markdown, results_table, vocal_sdr_gain
    from ..io_utils import atomic_write_text
    from ..paths import check_writable_dir

    console = Console()
    root = resolve_root(args.root)
    db = open_db(root, args.subset)
    tracks = list(db.tracks)
    if args.tracks:
        known = {t.name: t for t in tracks}
        missing = [n for n in args.tracks if n not in known]
        if missing:
            from ..registry import suggest
            raise UserError(f"--tracks: no track '{missing[0]}' in {root}/{args.subset};{suggest(missing[0], known)} "
                            f"see `toolkit data info {root}`")
        tracks = [known[n] for n in args.tracks]
    out = Path(args.out or (args.estimates if args.estimates else "evaluation"))
    check_writable_dir(out)

    if args.estimates:
        from ..estimates import read_estimates

        est_root = Path(args.estimates)

        def separate(mixture, rate, track):
            return read_estimates(est_root, track.subset, track.name, rate, mixture.shape[1])

        save_estimates = False
    else:
        from ..api import Separator
        from ..separate import separate_array

        start = args.start
        if args.refine:
            from ..estimates import read_estimates, track_folder

            if args.start is not None or args.start_t is None:
                raise UserError("--refine DIR starts from DIR's estimates: give --start-t T (the fraction of the "
                                "timesteps to noise them to, e.g. 0.3) and no --start")
            for track in tracks:  # every estimate is there before any work
                track_folder(Path(args.refine), track.subset, track.name)
            start = "given"
        sep = Separator.from_checkpoint(args.checkpoint, sampler=args.sampler, steps=args.steps,
                                        post_filter=args.post_filter, seed=args.seed,
                                        start=start, start_t=args.start_t, device=args.device,
                                        **sampling_overrides(args))

        def separate(mixture, rate, track):
            given = None
            if args.refine:
                _, given = read_estimates(Path(args.refine), track.subset, track.name, rate, mixture.shape[1])
            return separate_array(sep.engine, mixture, rate, given=given)

        save_estimates = True
    with Progress(console=console) as bar:
        task = bar.add_task(f"evaluate {len(tracks)} tracks", total=len(tracks))
        result = evaluate_tracks(tracks, separate, out, baseline=not args.no_baseline, save_estimates=save_estimates,
                                 progress=lambda i, n, name: bar.update(task, completed=i, description=f"evaluate {name}"))
    result["vocal_sdr_gain"] = vocal_sdr_gain(result)
    console.print(results_table(result))
    atomic_write_text(out / "results.json", json.dumps(result, indent=2))
    atomic_write_text(out / "results.md", results_markdown(result))
    console.print(f"scores: {out / 'scores'} | summary: {out / 'results.md'}")
    return 0
