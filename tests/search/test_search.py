"""normlab.search on toy spaces with known optima: budget, dedup, determinism, constraints, the
Pareto front, resume after SIGKILL, parallel evaluation, and evolution against random search."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import wait_for_trials

from normlab.runtime import Store, make_executor
from normlab.search import (BitString, SearchError, SearchResult, evolution, load_search, onemax,
                            random_search, rank_correlation, topk_hits, topk_overlap)


def _keys(result):
    return [(e.key, e.scores.get("score")) for e in result.history]


@pytest.mark.parametrize("search", [random_search, evolution])
def test_budget_counts_distinct_architectures(search):
    kw = {"population": 5, "sample_size": 2} if search is evolution else {}
    r = search(BitString(6), onemax, budget=40, seed=1, **kw)
    keys = [e.key for e in r.history]
    assert len(keys) == 40 and len(set(keys)) == 40
    assert [e.step for e in r.history] == list(range(40))


def test_an_exhausted_space_stops_with_a_warning():
    with pytest.warns(UserWarning, match="stopped early"):
        r = random_search(BitString(3), onemax, budget=20, seed=0, max_tries=200)
    assert len(r.history) == 8 and r.stopped and r.best().scores["score"] == 3


def test_same_seed_same_sequence_other_seed_another():
    a = evolution(BitString(20), onemax, budget=120, population=10, sample_size=3, seed=5)
    b = evolution(BitString(20), onemax, budget=120, population=10, sample_size=3, seed=5)
    c = evolution(BitString(20), onemax, budget=120, population=10, sample_size=3, seed=6)
    assert _keys(a) == _keys(b) and _keys(a) != _keys(c)


def test_parallel_executor_gives_the_same_sequence_as_serial():
    kw = dict(budget=40, population=8, sample_size=3, seed=2, batch=4)
    serial = evolution(BitString(16), onemax, **kw)
    with make_executor("process", workers=2) as ex:
        parallel = evolution(BitString(16), onemax, executor=ex, **kw)
    assert _keys(serial) == _keys(parallel)


def test_evolution_beats_random_search_over_many_seeds():
    """Real et al.'s claim on OneMax-32 at equal budget: a one-sided Mann-Whitney U test over 12 seeds."""
    from scipy.stats import mannwhitneyu

    evo = [evolution(BitString(32), onemax, budget=300, population=30, sample_size=8, seed=s).best().scores["score"]
           for s in range(12)]
    rnd = [random_search(BitString(32), onemax, budget=300, seed=s).best().scores["score"] for s in range(12)]
    assert sum(evo) / 12 > sum(rnd) / 12 + 2
    assert mannwhitneyu(evo, rnd, alternative="greater").pvalue < 0.01


def test_constraint_is_never_violated():
    seen = []

    def evaluate(bits):
        seen.append(bits)
        return onemax(bits)

    def first_bit_off(bits):
        return bits[0] == 0

    r = evolution(BitString(10), evaluate, budget=60, population=10, sample_size=3, constraint=first_bit_off)
    assert len(seen) == 60 and all(b[0] == 0 for b in seen)
    assert all(e.arch[0] == 0 for e in r.history) and r.best().scores["score"] <= 9
    with pytest.raises(SearchError, match="no feasible architecture"):
        random_search(BitString(10), onemax, budget=5, constraint=lambda b: False, max_tries=50)


def _two(bits):
    return {"ones": float(sum(bits)), "cost": float(sum(b * (i + 1) ** 1.5 for i, b in enumerate(bits)))}


@pytest.mark.parametrize("selection", ["pareto", "mean"])
def test_pareto_front_is_exactly_the_non_dominated_points(selection):
    objectives = {"ones": "max", "cost": "min"}
    r = evolution(BitString(12), _two, budget=150, population=20, sample_size=5, selection=selection,
                  objectives=objectives, seed=3)
    pts = [(e.scores["ones"], e.scores["cost"]) for e in r.history]

    def dominated(p):
        return any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in pts)

    expected = {p for p in pts if not dominated(p)}
    front = {(e.scores["ones"], e.scores["cost"]) for e in r.pareto_front()}
    assert front == expected and len(front) > 3
    with pytest.raises(SearchError, match="name one"):
        r.best()
    assert r.best("cost").scores["cost"] == min(p[1] for p in pts)


def test_failed_evaluations_are_recorded_and_the_search_goes_on():
    def flaky(bits):
        if bits[0] == 1 and bits[1] == 1:
            raise RuntimeError("out of memory (simulated)")
        return onemax(bits)

    r = evolution(BitString(8), flaky, budget=50, population=8, sample_size=3, seed=0)
    failed = [e for e in r.history if not e.ok]
    assert len(r.history) == 50 and failed and all("out of memory" in e.error for e in failed)
    assert r.best().scores["score"] <= 7
    bad = random_search(BitString(8), lambda b: {"acc": 1.0}, budget=3, objectives={"loss": "min"})
    assert all(not e.ok and "objectives need loss" in e.error for e in bad.history)
    nan = random_search(BitString(8), lambda b: float("nan"), budget=2)
    assert all("non-finite" in e.error for e in nan.history)


def test_non_regularized_evolution_never_loses_its_best():
    r = evolution(BitString(24), onemax, budget=200, population=10, sample_size=3, regularized=False, seed=4)
    best = r.best_so_far()
    assert best == sorted(best) and best[-1] >= 20


@pytest.mark.parametrize("call,needle", [
    (lambda: random_search(BitString(4), onemax, budget=0), "budget=0"),
    (lambda: evolution(BitString(4), onemax, budget=5, population=4, sample_size=9), "sample_size=9"),
    (lambda: evolution(BitString(4), onemax, budget=5, selection="best"), "selection='best'"),
    (lambda: random_search(BitString(4), onemax, budget=5, objectives={"score": "up"}), "'max' or 'min'"),
    (lambda: random_search(object(), onemax, budget=5), "not a search space"),
    (lambda: random_search(BitString(4), 3, budget=5), "not callable"),
    (lambda: evolution(BitString(4), onemax, budget=5, crossover=2), "crossover=2"),
])
def test_bad_settings_are_one_line(call, needle):
    with pytest.raises(SearchError) as info:
        call()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_lambda_cannot_go_to_a_process_pool():
    with make_executor("process", workers=1) as ex, pytest.raises(SearchError, match="picklable"):
        random_search(BitString(4), lambda b: 1.0, budget=2, executor=ex)


def test_no_store_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evolution(BitString(8), onemax, budget=30, population=5, sample_size=2)
    assert list(tmp_path.iterdir()) == []


def test_store_round_trip_json_and_resume_without_evaluating_again(tmp_path):
    calls = []

    def counted(bits):
        calls.append(bits)
        return onemax(bits)

    path = tmp_path / "s.sqlite"
    kw = dict(budget=40, population=8, sample_size=3, seed=9, store=path, name="demo")
    first = evolution(BitString(12), counted, **kw)
    assert len(calls) == 40
    again = evolution(BitString(12), counted, **kw)          # finished: nothing evaluated again
    assert len(calls) == 40 and _keys(again) == _keys(first)
    more = evolution(BitString(12), counted, **{**kw, "budget": 60})   # a larger budget continues
    assert len(calls) == 60 and _keys(more)[:40] == _keys(first)
    with Store(path, readonly=True) as store:
        [stored] = load_search(store, "demo", decode=BitString(12).from_json)
    assert _keys(stored) == _keys(more) and stored.history[3].arch == more.history[3].arch
    back = SearchResult.from_json(more.to_json(BitString(12).to_json), BitString(12).from_json)
    assert _keys(back) == _keys(more) and back.best().arch == more.best().arch
    assert back.to_csv().splitlines()[0] == "step,key,status,score,error"


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from normlab.search import BitString, evolution

    def slow(bits):
        with open(sys.argv[2], "a") as f:
            f.write("".join(map(str, bits)) + "\\n")
        time.sleep(0.03)
        return {"score": float(sum(bits)) + 0.001 * bits[0]}

    if __name__ == "__main__":
        r = evolution(BitString(14), slow, budget=60, population=10, sample_size=3, seed=3,
                      store=sys.argv[1], name="killed", progress=False)
        print(r.best().scores["score"])
""")


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_uninterrupted_result(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(KILL_SCRIPT)
    run = lambda store, log: subprocess.Popen([sys.executable, str(script), str(store), str(log)],  # noqa: E731
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ref = run(tmp_path / "ref.sqlite", tmp_path / "ref.log")
    assert ref.wait(120) == 0, ref.stderr.read()
    victim = run(tmp_path / "k.sqlite", tmp_path / "k.log")
    wait_for_trials(tmp_path / "k.sqlite", 25)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    resumed = run(tmp_path / "k.sqlite", tmp_path / "k.log")
    assert resumed.wait(120) == 0, resumed.stderr.read()
    with Store(tmp_path / "ref.sqlite", readonly=True) as a, Store(tmp_path / "k.sqlite", readonly=True) as b:
        [want], [got] = load_search(a, "killed"), load_search(b, "killed")
    assert _keys(got) == _keys(want) and len(got.history) == 60
    evaluated = (tmp_path / "k.log").read_text().split()
    assert len(evaluated) <= 61          # only the evaluation in flight at the kill ran twice


def test_rank_correlation_matches_scipy_and_has_intervals():
    import numpy as np
    from scipy import stats

    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    proxy = truth + rng.normal(scale=0.7, size=40)
    proxy[:4] = proxy[4]                                       # ties
    rc = rank_correlation(proxy, truth, bootstrap=300)
    assert rc.kendall == pytest.approx(stats.kendalltau(proxy, truth)[0])
    assert rc.spearman == pytest.approx(stats.spearmanr(proxy, truth)[0])
    assert rc.kendall_ci[0] < rc.kendall < rc.kendall_ci[1] and rc.spearman_ci[0] < rc.spearman < rc.spearman_ci[1]
    assert 0.3 < rc.kendall < 0.9 and "Kendall" in str(rc)
    assert rank_correlation(truth, -truth, bootstrap=50).kendall == pytest.approx(-1)
    assert topk_overlap(truth, truth, 5) == 1.0 and topk_overlap(truth, -truth, 5) == 0.0
    assert topk_hits(truth, truth, k=3) and not topk_hits(-truth, truth, k=3)
    with pytest.raises(ValueError, match="equal length"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation([1, 2, float("nan")], [1, 2, 3])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "normlab.cli", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"})


def test_cli_runs_show_export_plot(tmp_path):
    store = tmp_path / "s.sqlite"
    for seed in (0, 1):
        evolution(BitString(10), onemax, budget=30, population=6, sample_size=2, seed=seed, store=store, name="evo")
    evolution(BitString(10), _two, budget=30, population=6, sample_size=2, selection="pareto",
              objectives={"ones": "max", "cost": "min"}, store=store, name="two")
    res = _cli("search", "runs", "--store", store)
    assert res.returncode == 0 and res.stdout.count("│ evo ") == 2 and "│ two " in res.stdout, res.stderr
    res = _cli("search", "show", "evo", "--seed", "1", "--store", store, "--top", "3")
    assert res.returncode == 0 and "best 3 by score" in res.stdout
    assert "Pareto front" in _cli("search", "show", "two", "--store", store).stdout
    res = _cli("search", "export", "two", "--front", "--store", store)
    data = json.loads(res.stdout)
    assert res.returncode == 0 and data["history"] and data["objectives"] == {"cost": "min", "ones": "max"}
    res = _cli("search", "export", "evo", "--format", "csv", "--store", store, "--output", tmp_path / "e.csv")
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert res.returncode == 0 and lines[0].startswith("step,key") and len(lines) == 61
    res = _cli("search", "plot", "evo", "two", "--store", store, "--out", tmp_path / "plots")
    assert res.returncode == 0, res.stderr
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"progress.png", "pareto-two-seed0.png"}
    for args, needle in ((("show", "nope"), "no search named 'nope'"),
                         (("export", "evo", "--format", "xml"), "--format 'xml'"),
                         (("show", "evo", "--top", "0"), "--top 0")):
        res = _cli("search", *args, "--store", store)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr
    res = _cli("search", "runs", "--store", tmp_path / "missing.sqlite")
    assert res.returncode == 2 and "no store" in res.stderr


def test_infeasible_candidates_are_counted_and_kept_in_the_store(tmp_path):
    # onemax over 8 bits, constraint: an even number of ones; the count is what the constraint said no to
    calls = []

    def even(bits):
        ok = sum(bits) % 2 == 0
        calls.append(ok)
        return ok

    store = tmp_path / "s.sqlite"
    r = random_search(BitString(8), onemax, budget=20, seed=3, constraint=even, store=store, name="even")
    assert r.infeasible == calls.count(False) > 0
    with Store(store, readonly=True) as db:
        [stored] = load_search(db, "even")
    assert stored.infeasible == r.infeasible
    calls.clear()                                  # a rerun replays the same proposals: same count
    again = random_search(BitString(8), onemax, budget=20, seed=3, constraint=even, store=store, name="even")
    assert again.infeasible == r.infeasible == calls.count(False)


def test_progress_bar_shows_failed_and_infeasible_counts(capsys):
    def score(bits):                       # odd-first strings fail (non-finite score)
        return float("nan") if bits[0] else float(sum(bits))

    r = random_search(BitString(6), score, budget=20, seed=1, constraint=lambda b: sum(b) % 2 == 0,
                      progress=True)
    failed = sum(not e.ok for e in r.history)
    err = capsys.readouterr().err
    assert failed > 0 and r.infeasible > 0
    assert f"({failed} failed, {r.infeasible} infeasible)" in err
