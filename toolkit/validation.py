"""Validation and previews during training, with the EMA model.

Validation separates segments drawn from every validation song at full
sampling quality (``TrainConfig.validation_sampler`` / ``validation_steps``)
and scores them with museval: median vocal SDR, SIR and SAR (``best.pt`` is
chosen on the SDR). Previews are cheap (``preview_steps``): one segment's
audio (mixture, true and estimated vocals) and a spectrogram figure, logged
every ``preview_every`` steps.
"""
from __future__ import annotations

import museval
import numpy as np
import torch

METRICS = ("SDR", "SIR", "SAR")


def validation_indices(valid_set, per_song: int) -> list[int]:
    """Item indices of ``per_song`` segments from every song, spread evenly over each one.

    Each pick is the middle of one of ``per_song`` equal stretches of the
    song's segments, so neither the intro nor the padded last segment stands
    for the song. A dataset without per-song ``items`` counts as one song.
    """
    songs: dict = {}
    for index, (track, _) in enumerate(getattr(valid_set, "items", None) or [(0, 0)] * len(valid_set)):
        songs.setdefault(track, []).append(index)
    picks = []
    for indices in songs.values():
        n = min(per_song, len(indices))
        picks += sorted({indices[int((k + 0.5) * len(indices) / n)] for k in range(n)})
    return picks


def vocal_scores(item: dict, instrumental_estimate: torch.Tensor) -> dict | None:
    """Median-over-frames vocal SDR, SIR and SAR of one segment (``item``'s and the estimate's audio:
    (channels, samples)); None if its vocals are silent."""
    refs = np.stack([item["vocals"].T.numpy(), item["instrumental"].T.numpy()])
    if np.abs(refs[0]).max() < 1e-6:
        return None  # bss_eval is undefined for silent references
    ests = np.stack([(item["mixture"] - instrumental_estimate).T.numpy(), instrumental_estimate.T.numpy()])
    win = refs.shape[1]
    sdr, _, sir, sar = museval.evaluate(refs, ests, win=win, hop=win)
    return {"SDR": float(np.nanmedian(sdr[0])), "SIR": float(np.nanmedian(sir[0])), "SAR": float(np.nanmedian(sar[0]))}


def make_validate_fn(built, valid_set, device, precision, cfg):
    """``validate(ema_model, step, logger) -> {'SDR', 'SIR', 'SAR', 'segments'}``: medians over the segments of
    :func:`validation_indices` (SDR NaN when every vocal reference is silent)."""
    indices = validation_indices(valid_set, max(1, int(cfg.validation_segments_per_song)))
    settings = built.settings(sampler=cfg.validation_sampler, steps=cfg.validation_steps)
    seed = int(built.sampling["seed"])

    def validate(ema_model, step, logger) -> dict:
        engine = built.engine(ema_model, device=device, precision=precision, settings=settings)
        scores = []
        for start in range(0, len(indices), cfg.batch_size):
            chunk = indices[start:start + cfg.batch_size]
            items = [valid_set[i] for i in chunk]
            mix = torch.stack([it["mixture"] for it in items])
            inst = engine.instrumental(mix, [seed * 1000 + start + j for j in range(len(chunk))]).float().cpu()
            scores += [vocal_scores(it, inst[j]) for j, it in enumerate(items)]
        scores = [s for s in scores if s is not None]
        result = {m: float(np.median([s[m] for s in scores])) if scores else float("nan") for m in METRICS}
        return {**result, "segments": len(scores)}

    return validate


def make_preview_fn(built, valid_set, device, precision, cfg):
    """``preview(ema_model, step, logger)``: audio and spectrograms of one validation segment, sampled in
    ``cfg.preview_steps`` steps of the experiment's sampler (None for an empty set)."""
    indices = validation_indices(valid_set, 1)
    if not indices:
        return None
    index = indices[0]
    settings = built.settings(steps=cfg.preview_steps)
    seed = int(built.sampling["seed"])

    def preview(ema_model, step, logger) -> None:
        item = valid_set[index]
        engine = built.engine(ema_model, device=device, precision=precision, settings=settings)
        inst = engine.instrumental(item["mixture"][None], [seed * 1000])[0].float().cpu()
        voc = item["mixture"] - inst
        rate = built.sample_rate
        logger.audio("preview/mixture", item["mixture"], rate, step)
        logger.audio("preview/vocals_true", item["vocals"], rate, step)
        logger.audio("preview/vocals_estimate", voc, rate, step)
        logger.image("preview/spectrograms", spectrogram_figure(item["mixture"], item["vocals"], voc, built.transform), step)

    return preview


def spectrogram_figure(mixture, target, estimate, transform):
    """Three log-magnitude spectrograms side by side: mixture, true vocals, estimated vocals."""
    import matplotlib  # optional heavy dependency: imported when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    for ax, (title, audio) in zip(axes, (("mixture", mixture), ("vocals (target)", target), ("vocals (estimate)", estimate))):
        spec = transform.stft(audio.mean(0, keepdim=True)[None].float()).abs()[0, 0]
        ax.imshow(torch.log1p(spec).numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(title)
        ax.set_xlabel("frame")
    axes[0].set_ylabel("frequency bin")
    fig.tight_layout()
    return fig
