"""The batch-size study on the shared engine: plan -> normlab.runtime.Driver -> store."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..runtime import Completed, Driver, Executor, Outcome, RunContext, Sink, Store
from .experiment import Experiment, plan
from .run import run_trial

__all__ = ["sweep", "estimate", "KIND"]

KIND = "bench"


def sweep(exp: Experiment, store: Store, executor: Executor | None = None, *,
          on_result: Callable[[Completed], None] | None = None,
          on_start: Callable[[int, int], None] | None = None,
          sinks: Sequence[Sink] = (), lease: float = 120.0, same_run: bool = True) -> Outcome:
    """Run every planned trial not finished yet (ok or diverged), storing each result as it
    comes back. Failed trials and those a killed run left behind run again. In ``norm`` mode a
    batch-independent norm trains once per seed and its result is stored at every normalization
    batch (``Experiment.same_run``; ``same_run=False`` trains every trial)."""
    record = store.experiment(exp.name, KIND, exp.model_dump(), identity=exp.identity())
    driver = Driver(store, record, run_trial, executor,
                    context=RunContext(data_root=exp.data_root, download=exp.download),
                    lease=lease, sinks=sinks)
    return driver.run(plan(exp), on_start=on_start, on_result=on_result, same=exp.same_run() if same_run else None)


_TIME_LIMIT_FLOPS = 5e9       # a step bigger than this (forward FLOPs) is estimated, not timed


def estimate(exp: Experiment, workers: int = 1) -> dict[str, Any]:
    """The plan and a cost estimate (of the runs: trials that are one computation count once,
    see ``Experiment.same_run``), for ``workers`` trials at a time: one optimizer step of each
    model/norm/batch is timed on this machine with the torch threads each worker will have (a
    few seconds; ghost batches or micro-batches, as fit() will run it, and the optimizer's
    update), and one evaluation batch of each model/norm; both are extrapolated to every trial's
    steps and test-set evaluations. FLOPs are counted on the meta device (nothing allocated); a
    step too large to time cheaply is estimated from its FLOPs at the throughput measured on the
    small ones (or a nominal 10 GFLOP/s). Not included: loading the data in each trial and the
    workers slowing one another (about 10% with two workers on two cores)."""
    import math

    import torch

    from ..data import load_dataset
    from ..runtime import threads_per_worker
    from ..train import TrainConfig

    trials = plan(exp)
    distinct = _distinct_runs(exp, trials)
    data = load_dataset(exp.dataset, root=exp.data_root, download=exp.download, seed=exp.data_seed)
    n_train, n_test = data.size("train"), data.size("test")
    threads = exp.threads or (threads_per_worker(workers) if workers > 1 else torch.get_num_threads())
    timer = _Timer(exp, data)
    total_images, total_flops = 0, 0.0
    steps_of: list[tuple[str, tuple, tuple, int, int, int]] = []   # model, keys, steps, evals, batch
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for t in distinct:
            tc = TrainConfig.from_dict(t["train"])
            opt_batch = tc.batch_size
            micro = tc.norm_batch_size or opt_batch
            per_epoch = n_train // opt_batch
            steps = tc.total_steps(per_epoch)
            epochs = math.ceil(steps / per_epoch)
            evals = sum(1 for e in range(1, epochs + 1)
                        if (tc.eval_every and e % tc.eval_every == 0) or (e == epochs and tc.final_eval))
            total_images += steps * opt_batch
            flops = timer.model_flops(t["model"])
            key = timer.step(t, tc, micro)
            eval_key = (t["model"], t["norm"], micro, min(tc.eval_batch_size, n_test))
            if evals:
                timer.evaluation(t, eval_key, micro, opt_batch)
            total_flops += 3 * flops * steps * opt_batch + flops * n_test * evals
            steps_of.append((t["model"], key, eval_key, steps, evals, opt_batch))
    finally:
        torch.set_num_threads(previous_threads)
    return {"plan": trials, "trials": len(trials), "runs": len(distinct), "images": total_images,
            "gflops": total_flops / 1e9, "seconds": timer.seconds(steps_of), "n_train": n_train,
            "threads": threads, "timed": sum(v is not None for v in timer.timings.values()),
            "estimated": sum(v is None for v in timer.timings.values())}


def _distinct_runs(exp: Experiment, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One trial per computation (``Experiment.same_run``), in plan order."""
    from ..runtime.protocol import canonical_json

    same = exp.same_run()
    keys = [canonical_json(same(t)) for t in trials] if same else [str(i) for i in range(len(trials))]
    return [t for i, t in enumerate(trials) if keys[i] not in keys[:i]]


class _Timer:
    """What :func:`estimate` measures: one optimizer step per (model, norm, norm batch, optimizer
    batch) and one test-set evaluation per (model, norm, norm batch, eval batch), each timed once
    (None when too large to time: extrapolated from the FLOPs at the throughput measured)."""

    def __init__(self, exp: Experiment, data: Any) -> None:
        self.exp, self.data = exp, data
        self.shape = (data.in_channels, *data.image_size)
        self.n_test = data.size("test")
        self.timings: dict[tuple, float | None] = {}
        self.eval_timings: dict[tuple, float | None] = {}     # one evaluation of the test set
        self.flops: dict[str, int] = {}
        self.measured: list[tuple[float, float]] = []   # (flops, seconds) of timed steps and evaluations

    def model_flops(self, model: str) -> int:
        """Forward FLOPs of one sample, counted on the meta device."""
        import torch

        from ..models import create_model, profile

        if model not in self.flops:
            with torch.device("meta"):
                m = create_model(model, in_channels=self.shape[0], num_classes=self.data.num_classes,
                                 width=self.exp.width)
                self.flops[model] = profile(m, (1, *self.shape)).flops
        return self.flops[model]

    def _model(self, t: dict[str, Any]) -> Any:
        import torch

        from ..models import create_model

        torch.manual_seed(0)
        return create_model(t["model"], norm=t["norm"], in_channels=self.shape[0],
                            num_classes=self.data.num_classes, width=self.exp.width)

    def step(self, t: dict[str, Any], tc: Any, micro: int) -> tuple:
        """Time one optimizer step of trial ``t`` (once per key); its key."""
        import math

        import torch
        import torch.nn.functional as F

        from ..layers.ghost import interleave, set_norm_batch
        from ..train import make_optimizer, timed_calls

        opt_batch = tc.batch_size
        key = (t["model"], t["norm"], micro, opt_batch)
        if key in self.timings:
            return key
        self.timings[key] = None
        if self.flops[t["model"]] * opt_batch > _TIME_LIMIT_FLOPS:
            return key
        m = self._model(t)
        opt = make_optimizer(m, tc)
        # what fit() will run: one forward with ghost batches where every layer can,
        # else sequential micro-batches, then the optimizer's update
        ghost = micro < opt_batch and not set_norm_batch(m, micro, interleaved=True)
        size = opt_batch if ghost or micro >= opt_batch else micro
        repeats = 1 if size == opt_batch else math.ceil(opt_batch / micro)
        x, y = torch.randn(size, *self.shape), torch.randint(0, self.data.num_classes, (size,))
        runs = timed_calls(lambda: F.cross_entropy(m(interleave(x, micro) if ghost else x), y)
                           .backward(), rounds=2)
        update = timed_calls(lambda: (opt.step(), opt.zero_grad(set_to_none=False)), rounds=2)
        self.timings[key] = min(runs) * repeats + min(update)
        self.measured.append((3 * self.flops[t["model"]] * size * repeats, min(runs) * repeats))
        return key

    def evaluation(self, t: dict[str, Any], eval_key: tuple, micro: int, opt_batch: int) -> None:
        """Time one evaluation batch of trial ``t``'s model (once per key), scaled to the test set."""
        import math

        import torch

        from ..train import timed_calls

        if eval_key in self.eval_timings:
            return
        self.eval_timings[eval_key] = None
        size = eval_key[3]
        if self.flops[t["model"]] * size > _TIME_LIMIT_FLOPS:
            return
        m = self._model(t)
        with torch.no_grad():      # one training forward first (groups=auto chooses G)
            m(torch.randn(max(2, min(micro, opt_batch)), *self.shape))
            m.eval()
            x = torch.randn(size, *self.shape)
            runs = timed_calls(lambda: m(x), rounds=2)
        self.eval_timings[eval_key] = min(runs) * math.ceil(self.n_test / size)
        self.measured.append((self.flops[t["model"]] * size, min(runs)))

    def seconds(self, steps_of: list[tuple[str, tuple, tuple, int, int, int]]) -> float:
        """Every run's steps and evaluations, timed or extrapolated from its FLOPs."""
        measured = self.measured
        rate = (sum(f for f, _ in measured) / sum(s for _, s in measured)) if measured else 10e9
        total = 0.0
        for model, key, eval_key, steps, evals, opt_batch in steps_of:
            step = self.timings[key]
            if step is None:
                step = 3 * self.flops[model] * opt_batch / rate
            total += steps * step
            if evals:
                one = self.eval_timings[eval_key]
                total += evals * (one if one is not None else self.flops[model] * self.n_test / rate)
        return total
