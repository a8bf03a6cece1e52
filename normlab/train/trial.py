"""One training trial, run anywhere: a pure function of its description (model, norm, dataset,
seed, train settings) and the run context (module-level, picklable). The batch-size study's trials
(``normlab.bench.run.run_trial``, the same function) and nago's retraining run through it."""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from ..runtime.protocol import RunContext, TrialResult
from ..runtime.data import load_data

__all__ = ["run_trial"]


def run_trial(trial: dict[str, Any], context: RunContext | None = None) -> TrialResult:
    """Train one model x norm x batch size x seed; never raises (a failure is a result).

    Bit-reproducible for a given description on one machine: the seed fixes the initialisation
    and the data order, and the description's ``threads`` (when the experiment pins it) fixes
    torch's intra-op thread count, which changes how reductions are split and so the rounding
    (1 and 2 threads give different accuracies). Without ``threads`` the trial runs with the
    executor's share of the cores. The metrics record what it ran with: ``threads``,
    ``cpu_capability`` (the ATen kernel level: AVX2, AVX512, ...) and ``torch``, since a
    machine with another instruction set picks other kernels and rounds differently."""
    import torch

    start = time.time()
    previous = torch.get_num_threads()
    pinned = trial.get("threads")
    try:
        if pinned:
            torch.set_num_threads(int(pinned))
        from ..models import create_model
        from .config import TrainConfig
        from .loop import fit

        data = load_data(trial["dataset"], trial.get("data_seed", 0), context)
        torch.manual_seed(trial["seed"])
        model = create_model(trial["model"], norm=trial["norm"], act=trial.get("act", "relu"),
                             in_channels=data.in_channels, num_classes=data.num_classes,
                             width=trial.get("width", 1.0), **trial.get("model_options", {}))
        cfg = TrainConfig.from_dict({**trial["train"], "device": os.environ.get("NORMLAB_DEVICE", "auto")})
        tune = trial.get("tune")
        if tune:                # a validation trial of bgn:groups=tuned: fit on the training data less
            from ..data import holdout        # the held-out split, whose accuracy chooses G
            from .loop import evaluate

            fit_data, test_data = holdout(data, float(tune["val_fraction"]), trial.get("data_seed", 0))
            result = fit(model, fit_data, cfg)

            def val(d):                                     # fit's "test" split was the validation set
                return {k.replace("test", "val"): v for k, v in d.items()}
            metrics = val(result.metrics)
            result.history = [val(h) for h in result.history]
            if result.status == "ok":
                metrics.update(evaluate(model, test_data, "test", mode=cfg.eval_mode, batch_size=cfg.eval_batch_size,
                                        device=next(model.parameters()).device))
        else:
            result = fit(model, data, cfg)
            metrics = dict(result.metrics)
        metrics = {**metrics, "wall_seconds": time.time() - start, **_machine()}
        return TrialResult(result.status, metrics=metrics, history=result.history,
                           error=result.message or None, started=start, finished=time.time())
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded, the sweep goes on
        tb = traceback.format_exc(limit=3)
        return TrialResult("failed", metrics={"wall_seconds": time.time() - start},
                           error=f"{type(exc).__name__}: {exc}\n{tb}", started=start,
                           finished=time.time())
    finally:
        if pinned and torch.get_num_threads() != previous:
            torch.set_num_threads(previous)         # a serial run leaves no trace on the caller


def _machine() -> dict[str, Any]:
    """What the result depends on besides the description: threads, ATen kernel level, torch."""
    import torch

    pins = {k.lower(): os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
            if os.environ.get(k)}                 # kernel-level pins, when the user set them
    return {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, **pins}
