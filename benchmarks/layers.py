"""Layer speed as ratios, measured side by side in one run.

For every registered layer and three input shapes, prints the forward time and the
forward+backward time as a ratio to torch.nn.BatchNorm2d and to a plain tensor copy. Timings are
interleaved: each round times every layer once, a ratio is taken within the round (against the
BatchNorm2d and the copy timed in that same round), and the median of those paired ratios over
the rounds is reported, so a slow moment of a shared machine hits both sides of a ratio alike. Runs on CPU, and on CUDA when present.

    python benchmarks/layers.py                 # CPU (and CUDA if available)
    python benchmarks/layers.py --device cuda --rounds 30
    python benchmarks/layers.py --baseline 373a637   # also time the layers as they were at that commit
    python benchmarks/layers.py --clock cpu --threads 1   # CPU time: robust on a busy shared machine
    python benchmarks/layers.py --compile                 # also torch.compile'd rows (NAME[inductor])
    python benchmarks/layers.py --layers evolved --specs evolved:compile=true   # any spec as a row

``--baseline REV`` extracts normlab/layers at git revision REV into a temporary package and times
each chosen layer's old version beside the current one (rows ``NAME@REV``), so the before/after
ratios come from the same rounds. ``--clock cpu`` times with the process's CPU time instead of the
wall clock: on a machine shared with other jobs a descheduled moment then costs nothing, which
keeps ratios steady (with one thread it equals the wall time of a quiet machine; with several it
is the total work, not the latency).

``--compile`` adds a second table per shape: each row's module compiled (``torch.compile``, inductor,
fullgraph) and timed in the same rounds, as a ratio to compiled BatchNorm2d (``BN[ind]``), to its
own eager row (``/eager``: below 1, compiling that layer beats our eager path; see
``normlab.compile_norms``) and to eager BatchNorm2d.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

# time the normlab next to this file, not whichever one is installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from normlab.layers import NORMS, create_norm

SHAPES = {
    "small batch, large spatial": (2, 64, 112, 112),
    "medium": (16, 128, 28, 28),
    "large batch, small spatial": (256, 256, 7, 7),
}
SPECS = {"bgn": "bgn:groups=32", "sync_bgn": "sync_bgn:groups=32", "gn": "gn:groups=32",
         "evonorm_s0": "evonorm_s0:groups=32"}


class Copy(nn.Module):
    def forward(self, x):
        return x.clone()


CLOCK = time.perf_counter
IND = "[inductor]"


def load_baseline(rev: str):
    """normlab.layers as it was at git revision ``rev``, imported as a separate package."""
    root = Path(__file__).resolve().parent.parent
    tmp = Path(tempfile.mkdtemp(prefix="normlab-before-"))
    pkg = "normlab_before_" + "".join(ch for ch in rev if ch.isalnum())
    (tmp / pkg).mkdir()
    (tmp / pkg / "__init__.py").write_text("")
    tar = subprocess.run(["git", "-C", str(root), "archive", rev, "normlab/layers"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp / pkg), "--strip-components=1"], input=tar, check=True)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{pkg}.layers")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _runner(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, backward: bool, device: str):

    def run(iters: int) -> float:
        _sync(device)
        start = CLOCK()
        for _ in range(iters):
            if backward:
                xi = x.detach().requires_grad_(True)
                module(xi).backward(grad)
            else:
                with torch.no_grad():
                    module(x)
        _sync(device)
        return (CLOCK() - start) / iters

    return run


def bench_shape(shape, device: str, rounds: int, iters: int, dtype: torch.dtype, names,
                baseline=None, rev: str = "", specs=(), compiled: bool = False):
    """Per layer: (best time, median over rounds of time / BatchNorm2d's time in that round,
    median of time / copy's time in that round), forward and forward+backward."""
    x = torch.randn(shape, device=device, dtype=dtype)
    grad = torch.randn_like(x)       # one upstream gradient for all: the same memory for every layer
    layers = {"copy": Copy(), "BatchNorm2d": nn.BatchNorm2d(shape[1])}
    for name in names:
        layers[name] = create_norm(SPECS.get(name, name), shape[1])
        if baseline is not None and name in baseline.NORMS:
            layers[f"{name}@{rev}"] = baseline.create_norm(SPECS.get(name, name), shape[1])
    for spec in specs:
        layers[spec] = create_norm(spec, shape[1])
    if compiled:     # inductor, fullgraph: every eager row's module compiled beside it
        for name in [n for n in layers if n != "copy" and "@" not in n]:
            fresh = nn.BatchNorm2d(shape[1]) if name == "BatchNorm2d" else create_norm(SPECS.get(name, name), shape[1])
            layers[name + IND] = torch.compile(fresh.to(device=device), fullgraph=True)
    results = {}
    for backward in (False, True):
        runners = {}
        for name, mod in layers.items():
            mod = mod.to(device=device).train()
            runners[name] = _runner(mod, x, grad, backward, device)
            runners[name](2)  # warm up
        times = {name: [] for name in layers}
        order = random.Random(0)
        for _ in range(rounds):      # a fresh order each round: no layer always runs after the same one
            for name in order.sample(list(runners), len(runners)):
                times[name].append(runners[name](iters))
        def ratio(name: str, base: str, times: dict = times) -> float:
            return statistics.median(t / b for t, b in zip(times[name], times[base]))

        results[backward] = {name: (min(t), ratio(name, "BatchNorm2d"), ratio(name, "copy"))
                             for name, t in times.items()}
        if compiled:     # compiled rows: also against compiled BatchNorm2d and against their own eager row
            for name in [n for n in times if n.endswith(IND)]:
                results[backward][name] += (ratio(name, "BatchNorm2d" + IND), ratio(name, name[:-len(IND)]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--shapes", nargs="*", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--layers", nargs="*", choices=list(NORMS), default=list(NORMS),
                        help="which layers to time beside BatchNorm2d and the copy")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--baseline", default="", metavar="REV",
                        help="also time each layer as it was at this git revision (rows NAME@REV)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock, or this process's CPU time (steadier on a busy machine)")
    parser.add_argument("--specs", nargs="*", default=[], metavar="SPEC",
                        help="extra rows built from norm specs (e.g. evolved:compile=true)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each row torch.compile'd (fullgraph, inductor): rows NAME[inductor]")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    baseline = load_baseline(args.baseline) if args.baseline else None
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, dtype {args.dtype}, "
          f"{args.clock} clock, "
          f"median of paired ratios over {args.rounds} interleaved rounds x {args.iters} iterations")
    worst: dict = {}
    faster: dict = {}
    for device in devices:
        name_dev = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        for label in args.shapes:
            shape = SHAPES[label]
            res = bench_shape(shape, device, args.rounds, args.iters, dtype, args.layers, baseline,
                              args.baseline, args.specs, args.compile)
            fwd, both = res[False], res[True]
            print(f"\n[{name_dev}] {label} {shape}: BatchNorm2d fwd {fwd['BatchNorm2d'][0] * 1e3:.3f} ms, "
                  f"fwd+bwd {both['BatchNorm2d'][0] * 1e3:.3f} ms (best round)")
            print(f"{'layer':<24} {'fwd/BN':>8} {'fwd/copy':>9} {'f+b/BN':>8} {'f+b/copy':>9}")
            for name in [n for n in fwd if n != "copy" and not n.endswith(IND)]:
                r = (fwd[name][1], fwd[name][2], both[name][1], both[name][2])
                print(f"{name:<24} {r[0]:>8.2f} {r[1]:>9.2f} {r[2]:>8.2f} {r[3]:>9.2f}")
                key = (device, name)
                worst[key] = max(worst.get(key, 0.0), r[0], r[2])
            if args.compile:
                _print_compiled(fwd, both, device, faster)
    print("\nworst ratio to BatchNorm2d over shapes (forward or forward+backward):")
    for (device, name), r in sorted(worst.items(), key=lambda kv: -kv[1]):
        if name != "BatchNorm2d":
            print(f"  {device:<5} {name:<20} {r:5.2f}x")
    if args.compile:
        print("\ncompiled (inductor) / own eager, forward+backward, per shape (< 1: compiling the layer pays):")
        for (device, name), rs in faster.items():
            print(f"  {device:<5} {name:<20} " + "  ".join(f"{r:5.2f}" for r in rs))


def _print_compiled(fwd: dict, both: dict, device: str, faster: dict) -> None:
    """The [inductor] rows: time over compiled BatchNorm2d's (BN[ind]), over the same layer's eager
    time (/eager: below 1 the compiled layer beats our eager path), and over eager BatchNorm2d."""
    print(f"{'compiled (inductor)':<24} {'fwd/BN[ind]':>11} {'f+b/BN[ind]':>11} {'fwd/eager':>9} "
          f"{'f+b/eager':>9} {'fwd/BN':>8} {'f+b/BN':>8}")
    for name in [n for n in fwd if n.endswith(IND)]:
        f, b = fwd[name], both[name]
        print(f"{name[:-len(IND)]:<24} {f[3]:>11.2f} {b[3]:>11.2f} {f[4]:>9.2f} {b[4]:>9.2f} "
              f"{f[1]:>8.2f} {b[1]:>8.2f}")
        faster.setdefault((device, name[:-len(IND)]), []).append(b[4])


if __name__ == "__main__":
    main()
