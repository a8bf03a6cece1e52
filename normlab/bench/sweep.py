"""The driver: plan -> store -> executor -> store. Only this process writes the store."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from ..runtime import FINISHED, Executor, SerialExecutor, Store
from .experiment import Experiment, plan
from .run import run_trial

__all__ = ["sweep", "estimate", "SweepOutcome"]


class SweepOutcome(dict):
    """Counts: planned, skipped (already finished), ran, ok, diverged, failed."""


def _mlflow_logger(uri: str, experiment: str) -> Callable[[dict, dict], None]:
    try:
        import mlflow
    except ImportError:
        raise ValueError("--mlflow needs MLflow: pip install mlflow (or mlflow-skinny)") from None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)

    def log(trial: dict, result: dict) -> None:
        params = {k: v for k, v in trial.items() if k != "train" and not k.startswith("_")}
        params.update({f"train.{k}": v for k, v in trial["train"].items()})
        with mlflow.start_run(run_name=f"{trial['model']}-{trial['norm']}-b{trial['batch_size']}-s{trial['seed']}"):
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.set_tag("status", result["status"])
            for h in result.get("history", []):
                step = int(h.get("step", 0))
                mlflow.log_metrics({k: float(v) for k, v in h.items() if k not in ("epoch", "step")}, step=step)
            mlflow.log_metrics({k: float(v) for k, v in result.get("metrics", {}).items()})

    return log


def sweep(exp: Experiment, store: Store, executor: Executor | None = None, *,
          on_result: Callable[[dict, dict], None] | None = None, mlflow_uri: str | None = None,
          on_start: Callable[[int, int], None] | None = None) -> SweepOutcome:
    """Run every planned trial not yet finished (ok or diverged) and store each result as it
    comes back. Trials found 'running' (a killed run) or 'failed' run again."""
    executor = executor or SerialExecutor()
    trials = plan(exp)
    store.add_planned(exp.name, trials)
    status = store.status_of(t["id"] for t in trials)
    todo = [t for t in trials if status.get(t["id"]) not in FINISHED]
    outcome = SweepOutcome(planned=len(trials), skipped=len(trials) - len(todo), ran=0, ok=0,
                           diverged=0, failed=0)
    if on_start:
        on_start(len(trials), len(todo))
    logger = _mlflow_logger(mlflow_uri, exp.name) if mlflow_uri else None
    extra = {"_data_root": exp.data_root, "_download": exp.download}

    def dispatch() -> Iterator[dict[str, Any]]:
        for t in todo:
            store.mark_running(t["id"])          # in flight from here until its result is stored
            yield {**t, **extra}

    for trial, result in executor.run(dispatch(), run_trial):
        store.finish(trial["id"], result["status"], result.get("metrics"), result.get("history"),
                     result.get("error"))
        outcome["ran"] += 1
        outcome[result["status"]] = outcome.get(result["status"], 0) + 1
        if logger is not None:
            logger(trial, result)
        if on_result:
            on_result(trial, result)
    return outcome


def estimate(exp: Experiment) -> dict[str, Any]:
    """The plan and a cost estimate from timing one micro-step of each model/norm/batch on this
    machine (a few seconds), extrapolated to every trial's steps."""
    import math

    import torch
    import torch.nn.functional as F

    from ..data import load_dataset
    from ..models import create_model, profile
    from ..train import TrainConfig

    trials = plan(exp)
    data = load_dataset(exp.dataset, root=exp.data_root, download=exp.download, seed=exp.data_seed)
    n_train = data.size("train")
    shape = (data.in_channels, *data.image_size)
    timings: dict[tuple, float] = {}
    flops: dict[str, int] = {}
    total_seconds, total_images, total_flops = 0.0, 0, 0.0
    for t in trials:
        cfg = t["train"]
        opt_batch = cfg["batch_size"]
        micro = cfg["norm_batch_size"] or opt_batch
        steps = TrainConfig.from_dict(cfg).total_steps(n_train // opt_batch)
        total_images += steps * opt_batch
        if t["model"] not in flops:
            m = create_model(t["model"], in_channels=shape[0], num_classes=data.num_classes, width=exp.width)
            flops[t["model"]] = profile(m, (1, *shape)).flops
        key = (t["model"], t["norm"], micro)
        if key not in timings:
            torch.manual_seed(0)
            m = create_model(t["model"], norm=t["norm"], in_channels=shape[0],
                             num_classes=data.num_classes, width=exp.width)
            x, y = torch.randn(micro, *shape), torch.randint(0, data.num_classes, (micro,))
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                F.cross_entropy(m(x), y).backward()
                runs.append(time.perf_counter() - start)
            timings[key] = min(runs[1:])
        total_flops += 3 * flops[t["model"]] * steps * opt_batch      # forward + backward
        total_seconds += steps * math.ceil(opt_batch / micro) * timings[key]
    return {"plan": trials, "trials": len(trials), "images": total_images,
            "gflops": total_flops / 1e9, "seconds": total_seconds, "n_train": n_train}
