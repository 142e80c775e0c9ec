"""``toolkit separate INPUT... --checkpoint CKPT [--out DIR] ...``"""
from __future__ import annotations

from pathlib import Path

from ..output_names import DEFAULT_TEMPLATE
from . import add_sampling_arguments, add_start_arguments, sampling_overrides


def add_parser(sub, parent):
    p = sub.add_parser("separate", parents=[parent], help="separate songs into vocals and instrumental")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `toolkit run` (RUN/checkpoints/last.pt)")
    p.add_argument("--out", default="separated", help="output folder")
    p.add_argument("--filename", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
                   help="where each input's stems go inside --out; fields: {model} (the checkpoint's run folder), "
                        "{track} (input name), {stem} (vocals|instrumental), {ext}, {parent} (input's folder); "
                        "same-named inputs are told apart (docs/usage.md)")
    p.add_argument("--sampler", help="registered sampler (default: the checkpoint's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--eta", type=float, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0)
    add_start_arguments(p)
    add_sampling_arguments(p)
    p.add_argument("--segment", type=float, help="segment length in seconds (default: the training length)")
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--post-filter", choices=("none", "soft", "wiener"))
    p.add_argument("--format", choices=("wav", "flac", "mp3"), default="wav",
                   help="wav and flac keep the input's bit depth (float for compressed inputs: wav; 24-bit: flac)")
    p.set_defaults(func=main)


def main(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..api import Separator
    from ..audio import list_audio_files
    from ..errors import Interrupted, UserError
    from ..output_names import model_name, output_paths
    from ..paths import check_writable_dir
    from ..separate_files import separate_file
    from ..stop import StopSignals

    # SIGINT/SIGTERM become a flag checked between chunks: the file being written is dropped (temp files
    # removed), finished files stay, exit 130/143. A second signal stops at once (still no partial file).
    with StopSignals() as stop:
        files = list_audio_files(args.inputs)
        out = Path(args.out)
        targets, notes = output_paths(files, out, args.filename, model_name(Path(args.checkpoint)), args.format)
        check_writable_dir(out)
        sep = Separator.from_checkpoint(args.checkpoint, sampler=args.sampler, steps=args.steps, eta=args.eta,
                                        post_filter=args.post_filter, seed=args.seed,
                                        start=args.start, start_t=args.start_t, segment=args.segment,
                                        overlap=args.overlap, batch_size=args.batch_size, device=args.device,
                                        **sampling_overrides(args))
        console = Console(stderr=True)
        for note in notes:
            console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        failed = []
        # transient: when stderr is not a terminal, an error stays the only line there
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            files_task = bar.add_task("files", total=len(files))
            for path, target in zip(files, targets):
                stop.check(f"stopped before {path}; finished files are kept")
                chunk_task = bar.add_task(f"  {path.name}", total=None)

                def on_chunk(k, n, task=chunk_task, path=path):
                    bar.update(task, completed=k, total=n)
                    stop.check(f"stopped in {path}; its outputs were not written, finished files are kept")

                try:
                    written = separate_file(sep.engine, path, target, args.format, on_chunk=on_chunk)
                except Interrupted:
                    raise
                except Exception as exc:  # one bad file does not stop the batch; reported here and at the end
                    if len(files) == 1:
                        raise
                    first = (str(exc).splitlines() or [type(exc).__name__])[0]
                    kind = "error" if isinstance(exc, UserError) else f"internal error: {type(exc).__name__}"
                    console.print(f"{kind}: {first}" if str(path) in first else f"{kind}: {path}: {first}",
                                  highlight=False, markup=False, soft_wrap=True)
                    failed.append(path)
                    continue
                finally:
                    bar.remove_task(chunk_task)
                    bar.advance(files_task)
                console.print(f"{path} -> {written[0].parent}", highlight=False, markup=False, soft_wrap=True)
    if failed:
        raise UserError(f"{len(failed)} of {len(files)} files failed ({', '.join(p.name for p in failed[:3])}"
                        f"{', ...' if len(failed) > 3 else ''}); the others were written to {out}")
    return 0
