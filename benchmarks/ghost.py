"""Small normalization batches at full speed: one SGD step of a model at normalization batch b
(ghost batches, one forward) against sequential micro-batches and against the whole batch,
measured side by side in alternating rounds.

    python benchmarks/ghost.py [--model resnet20] [--width 0.25] [--batch 32] [--norm-batch 2] [--rounds 7]
    python benchmarks/ghost.py --clock cpu --threads 1     # CPU time: steadier on a busy shared machine
    python benchmarks/ghost.py --device cuda               # on a GPU (synchronised around each step)

Prints, per norm, the median time of a step and its ratio to the whole-batch step (goal for
ghost batches: <= 1.3x at normalization batch 2 for BN and BGN on the CPU), for the layers'
own regrouping (``ghost``) and for what fit() runs (``interleaved``: the batch reordered once by
``normlab.layers.ghost.interleave``, so the layers regroup by a view).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# time the normlab next to this file, not whichever one is installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from normlab.layers.ghost import interleave_order, set_norm_batch  # noqa: E402
from normlab.models import create_model  # noqa: E402


CLOCK = time.perf_counter
SYNC = lambda: None  # noqa: E731 - torch.cuda.synchronize on a GPU


def step_time(model, opt, x, y, mode: str, b: int) -> float:
    set_norm_batch(model, b if mode in ("ghost", "interleaved") else None,
                   interleaved=mode == "interleaved")
    SYNC()
    start = CLOCK()
    opt.zero_grad(set_to_none=True)
    if mode == "interleaved":          # what fit() runs: the batch reordered once, no regrouping copies
        order = interleave_order(len(y), b, y.device)
        F.cross_entropy(model(x[order]), y[order]).backward()
    elif mode == "micro":
        for xc, yc in zip(x.split(b), y.split(b)):
            (F.cross_entropy(model(xc), yc) * (len(yc) / len(y))).backward()
    else:
        F.cross_entropy(model(x), y).backward()
    opt.step()
    SYNC()
    return CLOCK() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--norm-batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="steps timed per mode per round (averaged)")
    ap.add_argument("--norms", default="bn,bgn:groups=16,bgn:groups=4,bgn:groups=auto,brn,evonorm_b0")
    ap.add_argument("--skip-micro", action="store_true", help="time whole and ghost only")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall clock, or this process's CPU time (steadier on a busy machine)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = ap.parse_args()
    global CLOCK, SYNC
    if a.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but no CUDA device is available")
        if a.clock == "cpu":
            sys.exit("error: --clock cpu does not time GPU work: use the wall clock on CUDA")
        SYNC = torch.cuda.synchronize
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 1, a.size, a.size, device=a.device)
    y = torch.randint(0, 10, (a.batch,), device=a.device)
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{a.model} width {a.width}, {a.size}x{a.size}, optimizer batch {a.batch}, normalization batch "
          f"{a.norm_batch}, {where}, {a.clock} clock; median of {a.rounds} rounds")
    modes = ("whole", "ghost", "interleaved") if a.skip_micro else ("whole", "micro", "ghost", "interleaved")
    print("ghost: the layers regroup consecutive samples (a copy each way); interleaved: what fit() "
          "runs, the batch reordered once so regrouping is a view (same groups, same result)")
    print(f"times are the mean of {a.steps} steps per round; ratios: median over rounds of the paired "
          f"ratio to the whole-batch step of the same round")
    head = "".join(f"{m + ' (ms)':>18}" for m in modes) + "".join(f"{m + '/whole':>18}" for m in modes[1:])
    print(f"{'norm':<22}{head}")
    for norm in a.norms.split(","):
        model = create_model(a.model, norm=norm, width=a.width, in_channels=1, num_classes=10).to(a.device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for mode in modes:                                  # warm-up (and groups=auto chooses here)
            step_time(model, opt, x, y, mode, a.norm_batch)
        times = {m: [] for m in modes}
        for _ in range(a.rounds):
            for mode in modes:
                step_time(model, opt, x, y, mode, a.norm_batch)       # the allocator settles
                times[mode].append(statistics.fmean(step_time(model, opt, x, y, mode, a.norm_batch)
                                                    for _ in range(a.steps)))
        med = {m: statistics.median(t) * 1e3 for m, t in times.items()}
        paired = {m: statistics.median(t / w for t, w in zip(times[m], times["whole"])) for m in modes}
        print(f"{norm:<22}" + "".join(f"{med[m]:>18.1f}" for m in modes)
              + "".join(f"{paired[m]:>17.2f}x" for m in modes[1:]))

if __name__ == "__main__":
    main()
