"""What the trackers are told about a run: its settings as flat bindings and its final metrics.

TensorBoard's hparams view and W&B's run table compare runs by these keys,
so a sweep's runs line up by the gin settings that made them.
"""
from __future__ import annotations

import ast
import math
import re

_BINDING = re.compile(r"^([A-Za-z_][\w./]*) = (.*)$")


def bindings(operative_config: str) -> dict[str, bool | int | float | str]:
    """``{'TrainConfig.lr': 0.0002, 'SEED': 0, ...}``: every binding of a gin config text.

    Macro references (``%SEED``) are replaced by the macro's value, so each
    binding shows the value in force. Numbers, booleans and strings are kept;
    anything else (lists, references such as ``@TrainConfig()``, None) becomes
    its gin text, which both trackers accept as a categorical value.
    """
    found: dict[str, str] = {}
    key = None
    for line in operative_config.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or line.startswith(("import ", "include ")):
            key = None if not line.strip() else key
            continue
        m = _BINDING.match(line)
        if m:
            key = m.group(1)
            found[key] = m.group(2)
        elif key is not None and line[:1].isspace():  # a value continued on the next lines
            found[key] += " " + line.strip()
    for _ in range(len(found)):  # macros may name macros (VALIDATION_STEPS = %SAMPLING_STEPS)
        resolved = {k: found.get(v[1:], v) if re.fullmatch(r"%\w+", v) else v for k, v in found.items()}
        if resolved == found:
            break
        found = resolved
    return {k: _scalar(v) for k, v in found.items()}


def _scalar(text: str):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, (bool, int, float, str)):
        return value
    return " ".join(text.split())


def final_metrics(summary: dict, best_valid_sdr: float) -> dict[str, float]:
    """The run's closing numbers: test scores per evaluation set (``test/vocals_SDR``, ...), the vocal SDR
    gain over the mixture, the best validation SDR and the last training loss; non-finite ones left out."""
    metrics = {"valid/best_vocals_SDR": best_valid_sdr,
               "train/final_loss": (summary.get("training", {}).get("last") or {}).get("total")}
    for label, res in (summary.get("evaluation") or {}).items():
        for source, scores in (res.get("model") or {}).items():
            for name, value in scores.items():
                metrics[f"{label}/{source}_{name}"] = value
        metrics[f"{label}/vocal_SDR_gain"] = res.get("vocal_sdr_gain")
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
