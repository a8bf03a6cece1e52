"""One training trial, run anywhere: a pure function of its description (model, norm, dataset,
seed, train settings) and the run context (module-level, picklable). The batch-size study's trials
(``normlab.bench.run.run_trial``, the same function) and nago's retraining run through it."""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from ..runtime.results import RunContext, TrialResult
from ..runtime.data import load_data

__all__ = ["run_trial"]


def run_trial(trial: dict[str, Any], context: RunContext | None = None) -> TrialResult:
    """Train one model x norm x batch size x seed; never raises (a failure is a result)."""
    import torch

    start = time.time()
    try:
        from ..models import create_model
        from .config import TrainConfig
        from .loop import fit

        data = load_data(trial["dataset"], trial.get("data_seed", 0), context)
        torch.manual_seed(trial["seed"])
        model = create_model(trial["model"], norm=trial["norm"], act=trial.get("act", "relu"),
                             in_channels=data.in_channels, num_classes=data.num_classes,
                             width=trial.get("width", 1.0), **trial.get("model_options", {}))
        cfg = TrainConfig.from_dict({**trial["train"], "device": os.environ.get("NORMLAB_DEVICE", "auto")})
        result = fit(model, data, cfg)
        metrics = {**result.metrics, "wall_seconds": time.time() - start}
        return TrialResult(result.status, metrics=metrics, history=result.history,
                           error=result.message or None, started=start, finished=time.time())
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded, the sweep goes on
        tb = traceback.format_exc(limit=3)
        return TrialResult("failed", metrics={"wall_seconds": time.time() - start},
                           error=f"{type(exc).__name__}: {exc}\n{tb}", started=start,
                           finished=time.time())
