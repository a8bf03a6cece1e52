"""One trial, run anywhere: a pure function of its description (module-level, picklable)."""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

_DATA_CACHE: dict[tuple, Any] = {}


def _data(spec: str, seed: int, root: str | None, download: bool):
    from ..data import load_dataset

    key = (spec, seed, root)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(spec, root=root, download=download, seed=seed)
    return _DATA_CACHE[key]


def run_trial(trial: dict[str, Any]) -> dict[str, Any]:
    """Train one trial; returns {status, metrics, history, error}. Never raises."""
    import torch

    threads = trial.get("_threads")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    start = time.time()
    try:
        return _run(trial, start)
    finally:
        if threads and previous != int(threads):
            torch.set_num_threads(previous)      # in-process (serial) runs leave no trace


def _run(trial: dict[str, Any], start: float) -> dict[str, Any]:
    import torch

    try:
        from ..models import create_model
        from ..train import TrainConfig, fit

        data = _data(trial["dataset"], trial.get("data_seed", 0), trial.get("_data_root"),
                     bool(trial.get("_download", False)))
        torch.manual_seed(trial["seed"])
        model = create_model(trial["model"], norm=trial["norm"], act=trial.get("act", "relu"),
                             in_channels=data.in_channels, num_classes=data.num_classes,
                             width=trial.get("width", 1.0))
        cfg = TrainConfig.from_dict({**trial["train"], "device": os.environ.get("NORMLAB_DEVICE", "auto")})
        result = fit(model, data, cfg)
        metrics = {**result.metrics, "wall_seconds": time.time() - start}
        return {"status": result.status, "metrics": metrics, "history": result.history,
                "error": result.message or None}
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded, the sweep goes on
        tb = traceback.format_exc(limit=3)
        return {"status": "failed", "metrics": {"wall_seconds": time.time() - start},
                "history": [], "error": f"{type(exc).__name__}: {exc}\n{tb}"}
