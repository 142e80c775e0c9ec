"""Validation during training: separate fixed valid segments with the EMA model, score with museval.

Logs the median vocal SDR, audio (mixture, true and estimated vocals) and a
spectrogram figure (mixture, target, estimate) of the first segment.
"""
from __future__ import annotations

import museval
import numpy as np
import torch


def make_validate_fn(built, valid_set, device, precision, cfg):
    """``validate(ema_model, step, logger) -> median vocal SDR`` over the first ``cfg.validation_segments`` items."""
    n = min(len(valid_set), max(1, cfg.validation_segments))
    items = [valid_set[i] for i in range(n)]
    seed = int(built.sampling["seed"])

    def validate(ema_model, step, logger) -> float:
        engine = built.engine(ema_model, device=device, precision=precision)
        mix = torch.stack([it["mixture"] for it in items])
        inst = engine.instrumental(mix, [seed * 1000 + i for i in range(n)]).cpu()
        voc = mix - inst
        sdrs = []
        for i, it in enumerate(items):
            refs = np.stack([it["vocals"].T.numpy(), it["instrumental"].T.numpy()])
            if np.abs(refs[0]).max() < 1e-6:
                continue  # bss_eval is undefined for silent references
            ests = np.stack([voc[i].T.numpy(), inst[i].T.numpy()])
            win = refs.shape[1]
            sdr, _, _, _ = museval.evaluate(refs, ests, win=win, hop=win)
            sdrs.append(float(np.nanmedian(sdr[0])))
        sdr = float(np.median(sdrs)) if sdrs else float("nan")
        rate = built.sample_rate
        logger.audio("valid/mixture", items[0]["mixture"], rate, step)
        logger.audio("valid/vocals_true", items[0]["vocals"], rate, step)
        logger.audio("valid/vocals_estimate", voc[0], rate, step)
        logger.image("valid/spectrograms", spectrogram_figure(items[0]["mixture"], items[0]["vocals"], voc[0], built.transform), step)
        return sdr

    return validate


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
