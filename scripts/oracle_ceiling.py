"""The best vocal SDR that magnitude estimation with the mixture phase can reach on a MUSDB18 root.

Diff-MSST estimates the instrumental *magnitude* and borrows the mixture's
phase; even a perfect magnitude leaves the phase error. This scores the oracle
of a training target, clamped to the mixture's magnitude as in separation,
with the mixture phase (and an optional post-filter), at the model's sample
rate and STFT, vocals = mixture - instrumental: ``--target magnitude`` the
true instrumental magnitude |I|, ``--target psa`` the phase-sensitive
|I| cos(angle I - angle X), the magnitude nearest I given the mixture phase.
Same museval medians as ``toolkit evaluate``, so the two tables compare directly.

    .venv/bin/python scripts/oracle_ceiling.py --root ~/.cache/diffmsst-toolkit/synthetic-<hash>
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit import registry  # noqa: E402
from toolkit.audio import resample  # noqa: E402
from toolkit.signal import POST_FILTERS, instrumental_to_vocals, phase_sensitive_magnitude, post_filter  # noqa: E402

TARGETS = ("magnitude", "psa")


def oracle_estimates(track, sample_rate: int, n_fft: int, hop_length: int, kind: str,
                     target: str = "magnitude") -> dict[str, np.ndarray]:
    """{"vocals", "accompaniment"}: (samples, channels) at the track's rate, from the true instrumental's ``target``."""
    transform = registry.get("transforms", "stft_normalizer")(n_fft=n_fft, hop_length=hop_length)
    rate = int(track.rate)
    mixture = torch.tensor(track.audio.T, dtype=torch.float32)[None]  # (1, channels, samples)
    instrumental = torch.tensor(track.targets["accompaniment"].audio.T, dtype=torch.float32)[None]
    mix, inst = (resample(x, rate, sample_rate) for x in (mixture, instrumental))
    mix_stft, inst_stft = transform.stft(mix), transform.stft(inst)
    oracle = inst_stft.abs() if target == "magnitude" else phase_sensitive_magnitude(inst_stft, mix_stft)
    vocals_mag, inst_mag = instrumental_to_vocals(mix_stft.abs(), oracle)
    _, inst_stft = post_filter(mix_stft, vocals_mag, inst_mag, kind=kind)
    inst_hat = resample(transform.istft(inst_stft, mix.shape[-1]), sample_rate, rate)[0, :, : mixture.shape[-1]]
    inst_hat = inst_hat.numpy()
    return {"vocals": (track.audio.T - inst_hat).T, "accompaniment": inst_hat.T}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="MUSDB18(-HQ) root, e.g. a synthetic set from the toolkit cache")
    p.add_argument("--subset", default="test", choices=("train", "test"))
    p.add_argument("--sample-rate", type=int, default=22050, help="the model's rate (quickstart: 22050)")
    p.add_argument("--n-fft", type=int, default=1024)
    p.add_argument("--hop-length", type=int, default=256)
    p.add_argument("--post-filter", default="none", choices=POST_FILTERS)
    p.add_argument("--target", default="magnitude", choices=TARGETS,
                   help="the oracle instrumental: its magnitude |I|, or the phase-sensitive |I| cos(angle I - angle X)")
    args = p.parse_args(argv)
    import musdb

    from toolkit.evaluate import medians, score_track

    registry.load_builtin_plugins()
    if not Path(args.root).is_dir():
        print(f"error: --root {args.root} is not a folder; pass a MUSDB18 root", file=sys.stderr)
        return 2
    tracks = list(musdb.DB(root=args.root, subsets=[args.subset], is_wav=True))
    if not tracks:
        print(f"error: no {args.subset} tracks under {args.root}", file=sys.stderr)
        return 2
    oracle = medians(score_track(t, oracle_estimates(t, args.sample_rate, args.n_fft, args.hop_length, args.post_filter,
                                                      args.target))
                     for t in tracks)
    base = medians(score_track(t, {"vocals": t.audio, "accompaniment": t.audio}) for t in tracks)
    print(f"{len(tracks)} tracks, {args.sample_rate} Hz, n_fft {args.n_fft} / hop {args.hop_length}, "
          f"post-filter {args.post_filter}, target {args.target}")
    for target in ("vocals", "accompaniment"):
        print(f"  oracle {target:13s} SDR {oracle[target]['SDR']:+.2f} dB  (mixture as estimate {base[target]['SDR']:+.2f})")
    print(f"  oracle vocal cSDR gain over the mixture (median over frames, then tracks): {oracle['vocals']['SDR'] - base['vocals']['SDR']:+.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
