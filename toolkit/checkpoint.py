"""Checkpoints: atomic save, safe load (``weights_only=True``), rotation.

Layout: ``RUN/checkpoints/step_<N>.pt`` and ``RUN/checkpoints/last.pt`` (a
real file, the newest), ``best.pt`` (best validation SDR). A checkpoint is a
dict with at least ``model, ema, optimizer, scheduler, step, rng, config,
version``; everything else is plain Python types or tensors so that loading
cannot run code.
"""
from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import torch

from .errors import UserError
from .io_utils import atomic_path

REQUIRED_KEYS = ("model", "ema", "optimizer", "scheduler", "step", "rng", "config", "version")
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def plain(value):
    """``value`` in plain Python types (lists, dicts, bool/int/float/str/None), as checkpoints keep it."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or type(value) in (bool, int, float, str):
        return value
    for kind in (bool, int, float, str):  # subclasses (TorchVersion, numpy scalars) -> plain types
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return str(value)


def save(state: dict, ckpt_dir: Path, step: int, keep_last: int = 3) -> Path:
    """Write ``step_<N>.pt`` and ``last.pt`` atomically, then drop old step files."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # a run killed mid-save (SIGKILL, power loss) leaves its temp file behind: the one writer of this folder sweeps it
    for stale in ckpt_dir.glob(".*.tmp-*.pt"):
        stale.unlink(missing_ok=True)
    path = ckpt_dir / f"step_{step}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    with atomic_path(ckpt_dir / "last.pt") as tmp:
        shutil.copyfile(path, tmp)
    if keep_last > 0:
        for old in step_files(ckpt_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def save_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def step_files(ckpt_dir: Path) -> list[Path]:
    """``step_<N>.pt`` files sorted by N."""
    found = []
    for p in Path(ckpt_dir).glob("step_*.pt"):
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def load(path: str | Path, *, map_location) -> dict:
    """Load a checkpoint safely; bad files raise one-line :class:`UserError`.

    ``map_location`` is required: a checkpoint written on a GPU names that GPU,
    and every caller knows the device it works on (a CPU node, ``cuda:N``).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint; pass a .pt file written by `toolkit run` (RUN/checkpoints/last.pt)")
    if path.is_dir():
        cand = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
        if cand.is_file():
            path = cand
        else:
            raise UserError(f"{path}: is a directory without checkpoints/last.pt; pass the checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable toolkit checkpoint ({_load_failure(path, exc)}); "
                        "use a checkpoint written by `toolkit run`") from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise UserError(f"{path}: not a toolkit checkpoint (missing keys: {', '.join(missing)}); use RUN/checkpoints/last.pt from `toolkit run`")
    return state


def _load_failure(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` failed, in a few words (torch's own messages run to paragraphs)."""
    text = str(exc)
    code = re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", text)
    if code:
        return f"it refers to Python code ({(code.group(1) or code.group(2)).rstrip('.,')}), refused by weights_only loading"
    # torch.save writes a zip archive; anything else is cut short, damaged or another kind of file
    if not zipfile.is_zipfile(path):
        return "not a PyTorch zip archive: cut short, damaged, or another kind of file"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:160]


def latest_valid(ckpt_dir: Path, map_location="cpu"):
    """(path, state) of the newest checkpoint in ``ckpt_dir`` that loads, or (None, None).

    Tries ``last.pt`` and every ``step_<N>.pt``, newest step first, so a file
    cut short by a kill is skipped instead of ending the resume.
    """
    ckpt_dir = Path(ckpt_dir)
    candidates = [p for p in [ckpt_dir / "last.pt", *reversed(step_files(ckpt_dir))] if p.exists()]
    best = (None, None)
    for p in candidates:
        try:
            state = load(p, map_location=map_location)
        except UserError:
            continue
        if best[1] is None or int(state["step"]) > int(best[1]["step"]):
            best = (p, state)
    return best


def has_checkpoints(ckpt_dir: Path) -> bool:
    ckpt_dir = Path(ckpt_dir)
    # dot-files are temp files of a save that was killed: they are not checkpoints
    return ckpt_dir.is_dir() and any(not p.name.startswith(".") for p in ckpt_dir.glob("*.pt"))
