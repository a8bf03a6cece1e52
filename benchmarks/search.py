"""Search-engine overhead: evaluations per second of normlab.search with a no-op evaluate, over a
sweep of budgets, for the user-defined space of the engine's issue (tuples of 12 values in 0..63,
a mutation changes one position, key = the joined values), regularized evolution with population
50 and tournament 10; in memory and with an on-disk store; and the bare strategy loop (the same
tournament, mutation, key and dedup with no store, driver or executor) for scale.

Each measurement runs in a fresh interpreter; with ``--baseline REV`` the package as it was at git
revision REV (extracted to a temporary folder) is measured in alternation with the working tree,
run for run, and the ratio is taken within each pair. Rates are budget / wall time; the CPU-time
rate (budget / process time) is printed beside it, as it moves less when other jobs share the
cores. Before timing, each interpreter runs one full garbage collection (importing torch leaves
one due, ~80 ms, that would otherwise land in the first evaluations). The goal: >= 10,000
evaluations/s in memory, flat from budget 1,000 to 100,000.

    python benchmarks/search.py                              # budgets 1,000 / 10,000 / 100,000
    python benchmarks/search.py --baseline 10e3520 --runs 3
    python benchmarks/search.py --budgets 1000,4000,16000 --disk-budget 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Tuples:
    """12 values in 0..63; a mutation redraws one position."""

    n: int = 12
    high: int = 63

    def sample(self, rng):
        return tuple(rng.randint(0, self.high) for _ in range(self.n))

    def mutate(self, arch, rng):
        child = list(arch)
        child[rng.randrange(self.n)] = rng.randint(0, self.high)
        return tuple(child)

    def key(self, arch):
        return "-".join(map(str, arch))


def noop(arch) -> float:
    return 0.0


def bare(budget: int, population: int = 50, sample_size: int = 10, seed: int = 0) -> None:
    """The strategy's own work, nothing else: aging evolution with dedup by key."""
    space, rng = Tuples(), random.Random(seed)
    pop: deque = deque()
    seen: set[str] = set()
    done = 0
    while done < budget:
        if done < population:
            arch = space.sample(rng)
        else:
            arch = space.mutate(max(rng.sample(pop, sample_size), key=lambda m: m[1])[0], rng)
        key = space.key(arch)
        if key in seen:
            continue
        seen.add(key)
        pop.append((arch, noop(arch)))
        if len(pop) > population:
            pop.popleft()
        done += 1


def worker(case: str, budget: int) -> dict[str, float]:
    from normlab.search import evolution

    tmp = tempfile.TemporaryDirectory()
    store = str(Path(tmp.name) / "s.sqlite") if case == "disk" else None
    gc.collect()        # the full collection importing torch left due is not the engine's cost
    t0, c0 = time.perf_counter(), time.process_time()
    if case == "bare":
        bare(budget)
    else:
        evolution(Tuples(), noop, budget=budget, population=50, sample_size=10, seed=0, store=store,
                  progress=False, log_every=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tmp.cleanup()
    return {"wall": budget / wall, "cpu": budget / cpu}


def measure(path: Path, case: str, budget: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, __file__, "--worker", case, str(budget)], env=env, cwd=path,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} at budget {budget} failed under {path}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract(rev: str, into: Path) -> Path:
    """normlab as it was at ``rev`` (git archive of the package folder)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "normlab"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {rev}: {archive.stderr.decode().strip() or 'not a revision'}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="1000,10000,100000", help="comma-separated budgets (in memory)")
    ap.add_argument("--disk-budget", type=int, default=20000, help="budget of the on-disk case (0: skip)")
    ap.add_argument("--runs", type=int, default=3, help="runs per case (the median is printed)")
    ap.add_argument("--baseline", default="", metavar="REV", help="also time normlab at this git revision")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "BUDGET"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]))))
        return
    budgets = [int(b) for b in a.budgets.split(",") if b]
    cases = [("memory", b) for b in budgets] + ([("disk", a.disk_budget)] if a.disk_budget else [])
    cases.append(("bare", max(budgets)))
    with tempfile.TemporaryDirectory() as tmp:
        base = extract(a.baseline, Path(tmp)) if a.baseline else None
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"evolution, population 50, tournament 10, user space (12 values in 0..63), no-op evaluate, "
              f"serial; {os.cpu_count()} cores, load average {load:.2f} at the start; median of {a.runs} runs "
              f"(evaluations/s by wall time, by CPU time in brackets)")
        head = f"{'case':<8} {'budget':>8} {'this tree':>22}"
        if base:
            head += f" {'at ' + a.baseline:>22} {'speed-up':>9}"
        print(head)
        for case, budget in cases:
            new, old = [], []
            for _ in range(a.runs):
                new.append(measure(ROOT, case, budget))
                if base and case != "bare":
                    old.append(measure(base, case, budget))
            line = f"{case:<8} {budget:>8,} {_fmt(new):>22}"
            if old:
                ratio = statistics.median(n["wall"] / o["wall"] for n, o in zip(new, old))
                line += f" {_fmt(old):>22} {ratio:>8.1f}x"
            print(line, flush=True)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average {load:.2f} at the end")


def _fmt(runs: list[dict[str, float]]) -> str:
    wall = statistics.median(r["wall"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    return f"{wall:,.0f} ({cpu:,.0f})"


if __name__ == "__main__":
    main()
