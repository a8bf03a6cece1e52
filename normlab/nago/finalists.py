"""The best generators' networks retrained longer, next to anchor models of similar size.

    rows = retrain(result, top=3, steps=600, anchors=("resnet20", "mobilenetv2"), store=db)

Every training is a trial of normlab's runtime with the trial function every study shares
(``normlab.train.trial.run_trial``: ``create_model(model, ..., **model_options)``), in an
experiment of kind ``nago-retrain`` named ``<search>-retrain``: a NAGO network is
``create_model("nago", generator=..., seed=...)``, an anchor is ``create_model(name, width=w)``
with the width multiplier whose parameter count is nearest (in log) to the median of the NAGO
networks'. Re-running resumes: finished trainings are never repeated.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Sequence

from ..runtime.driver import Driver
from ..runtime.executors import Executor, SerialExecutor
from ..runtime.store import Store
from ..search.history import SearchResult

__all__ = ["retrain", "match_width", "RETRAIN_KIND", "WIDTHS"]

RETRAIN_KIND = "nago-retrain"
WIDTHS = (0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0, 1.5, 2.0)


def _params(model: str, norm: str, cin: int, classes: int, width: float = 1.0, **options: Any) -> int:
    import torch

    from ..models import create_model

    with torch.device("meta"):
        net = create_model(model, norm=norm, in_channels=cin, num_classes=classes, width=width, **options)
    return sum(p.numel() for p in net.parameters())


def match_width(model: str, target: int, norm: str, cin: int, classes: int) -> tuple[float, int]:
    """The width multiplier of ``model`` (from :data:`WIDTHS`, those the norm accepts) whose
    parameter count is nearest to ``target`` in log; returns (width, params)."""
    best: tuple[float, float, int] | None = None
    for w in WIDTHS:
        try:
            n = _params(model, norm, cin, classes, w)
        except ValueError:                  # e.g. a group norm whose groups do not divide the width
            continue
        gap = abs(math.log(n / target))
        if best is None or gap < best[0]:
            best = (gap, w, n)
    if best is None:
        raise ValueError(f"no width of {model} accepts norm {norm!r}")
    return best[1], best[2]


def retrain(result: SearchResult, *, top: int = 3, seeds: int = 1, steps: int | None = None,
            epochs: float | None = None, anchors: Sequence[str] = ("resnet20", "mobilenetv2"),
            store: Store, executor: Executor | None = None, name: str | None = None,
            on_result: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
    """Retrain one network (seed 0, 1, ... ``seeds``) of each of the ``top`` best generators of
    ``result`` (by mean accuracy) and each anchor at a matched width, ``seeds`` times each, with
    the search's dataset, norm and training settings, longer (``steps`` or ``epochs``). Returns one
    row per training: kind, model, generator, width, params, seed, accuracy, status."""
    from ..train.trial import run_trial
    from ..data import check_dataset

    cfg = result.config
    if top < 1 or seeds < 1:
        raise ValueError(f"top={top}, seeds={seeds} are invalid: expected positive integers")
    train = {**cfg["train"], "progress": False}
    if steps is not None:
        train["steps"] = int(steps)
    elif epochs is not None:
        train.pop("steps", None)
        train["epochs"] = float(epochs)
    info = check_dataset(cfg["dataset"])
    best = sorted((e for e in result.ok if "accuracy" in e.scores and e.arch.get("top")),
                  key=lambda e: (-e.scores["accuracy"], e.scores.get("params", 0)))
    chosen, seen = [], set()
    for e in best:                                   # one entry per generator (several rungs, draws)
        gen = e.key.split(" @")[0]
        if gen not in seen:
            seen.add(gen)
            chosen.append(e)
        if len(chosen) == top:
            break
    if not chosen:
        raise ValueError(f"search '{result.name}' has no successful evaluation to retrain")
    base = {"norm": cfg["norm"], "act": "relu", "dataset": cfg["dataset"], "data_seed": cfg.get("data_seed", 0),
            "train": train}
    descs = []
    sizes = []
    for rank, e in enumerate(chosen):
        for s in range(seeds):
            n = _params("nago", cfg["norm"], info.in_channels, info.num_classes, generator=e.arch, seed=s)
            sizes.append(n)
            descs.append({**base, "key": f"nago #{rank + 1} {e.key} seed {s}", "kind": "nago", "rank": rank + 1,
                          "model": "nago", "model_options": {"generator": e.arch, "seed": s}, "width": 1.0,
                          "seed": s, "params": n, "search_accuracy": e.scores["accuracy"]})
    target = int(statistics.median(sizes))
    for model in anchors:
        w, n = match_width(model, target, cfg["norm"], info.in_channels, info.num_classes)
        for s in range(seeds):
            descs.append({**base, "key": f"{model} x{w:g} seed {s}", "kind": "anchor", "model": model,
                          "width": w, "seed": s, "params": n})
    db = store
    exp = db.experiment(name or f"{result.name}-retrain", RETRAIN_KIND,
                        {"search": result.name, "top": top, "seeds": seeds, "train": train,
                         "anchors": list(anchors)})
    ids, _ = db.insert_trials(exp, descs)
    status = db.status_of(ids)
    todo = [(tid, d) for tid, d in zip(ids, descs) if status.get(tid) not in ("ok", "diverged")]
    if todo:
        db.reap_dead_owners()
        db.requeue_failed([tid for tid, _ in todo])
        driver = Driver(db, exp, run_trial, executor or SerialExecutor(), context=None)
        driver.dispatch(todo, poll_every=0.5, on_result=on_result)
    stored = {r["id"]: r for r in db.rows(ids=ids)}
    out = []
    for tid in ids:
        r = stored[tid]
        d, m = r["description"], r["metrics"] or {}
        out.append({"kind": d["kind"], "model": d["model"] if d["kind"] == "anchor" else d["key"].split(" seed")[0],
                    "width": d["width"], "params": d["params"], "seed": d["seed"], "status": r["status"],
                    "accuracy": float(m.get("test_acc", float("nan"))),
                    "search_accuracy": d.get("search_accuracy"), "seconds": float(m.get("wall_seconds", 0.0))})
    return out
