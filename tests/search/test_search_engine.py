"""The search engine's reliability: per-evaluation time-outs (a hung evaluation neither stalls a
search nor idles the other workers), failing fast on an evaluate that is broken, the sliding
window's determinism and the group-committed store."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import wait_for_trials

from normlab.runtime import Store, make_executor
from normlab.runtime.toy import StallOn
from normlab.search import BitString, SearchError, evolution, load_search, onemax, random_search


def _keys(result):
    return [(e.key, e.status) for e in result.history]


@pytest.mark.slow
def test_a_hung_evaluation_times_out_in_a_pool_and_the_other_worker_keeps_working(tmp_path):
    kw = dict(budget=12, seed=4, batch=4)
    plan = [e.key for e in random_search(BitString(10), onemax, **kw).history]   # the same sequence
    hung, log, warm = plan[1], tmp_path / "log.txt", tmp_path / "warm.txt"
    with make_executor("process", workers=2) as ex:
        random_search(BitString(10), StallOn([], str(warm)), budget=2, batch=2, executor=ex)  # both up
        r = random_search(BitString(10), StallOn([hung], str(log)), executor=ex, timeout=3,
                          store=tmp_path / "s.sqlite", name="hang", **kw)
    assert [e.key for e in r.history] == plan                 # the window kept the contract
    [bad] = [e for e in r.history if not e.ok]
    assert bad.key == hung and bad.error == "timed out after 3 s"
    assert sum(e.ok for e in r.history) == 11
    with Store(tmp_path / "s.sqlite", readonly=True) as db:
        [stored] = load_search(db, "hang")
    assert [(e.key, e.status, e.error) for e in stored.history] == [(e.key, e.status, e.error) for e in r.history]
    # the rest of the window (steps 2-4) ran on the other worker before the stuck one was
    # killed and replaced (the replacement's pid is new)
    workers = {line.split()[1] for line in warm.read_text().splitlines()}
    assert len(workers) == 2
    lines = [line.split() for line in log.read_text().splitlines()]
    pid = dict(lines)
    replaced = next(i for i, (_, p) in enumerate(lines) if p not in workers)
    for key in plan[2:5]:
        assert pid[key] != pid[hung] and pid[key] in workers and lines.index([key, pid[key]]) < replaced


def test_serial_cannot_interrupt_but_records_the_time_out():
    slow = StallOn([])

    def evaluate(bits):
        if bits[0] == 1 and bits[1] == 1:
            import time
            time.sleep(1.0)
        return slow(bits)

    r = random_search(BitString(6), evaluate, budget=16, seed=1, timeout=0.5)
    late = [e for e in r.history if e.arch[0] == 1 and e.arch[1] == 1]
    assert late and all(e.error == "timed out after 0.5 s" for e in late)
    assert all(e.ok for e in r.history if e not in late)


@pytest.mark.parametrize("value", [0, -1, "3", float("nan"), True])
def test_a_bad_timeout_is_one_line(value):
    with pytest.raises(SearchError, match="timeout=") as info:
        random_search(BitString(4), onemax, budget=2, timeout=value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("evaluate,objectives,needle", [
    (lambda b: None, None, "evaluate returned NoneType"),
    (lambda b: "0.9", None, "evaluate returned str"),
    (lambda b: {"acc": 1.0}, {"loss": "min"}, "the objectives need loss"),
    (lambda b: 1 / 0, None, "ZeroDivisionError"),
])
def test_an_evaluate_that_always_fails_alike_stops_the_search_with_one_error(tmp_path, evaluate, objectives,
                                                                             needle):
    calls = []

    def counted(bits):
        calls.append(bits)
        return evaluate(bits)

    path = tmp_path / "s.sqlite"
    with pytest.raises(SearchError) as info:
        evolution(BitString(8), counted, budget=30, population=5, sample_size=2, objectives=objectives,
                  store=path, name="broken")
    msg = str(info.value)
    assert needle in msg and "first 3 evaluations" in msg and "\n" not in msg
    assert len(calls) == 3                                   # not the whole budget
    with Store(path, readonly=True) as db:                   # what was evaluated is kept
        assert len(db.rows()) == 3
    more = random_search(BitString(8), counted, budget=6, objectives=objectives, fail_fast=0)
    assert len(more.history) == 6 and not more.ok             # fail_fast=0: the budget is spent
    calls.clear()
    with pytest.raises(SearchError, match="first 5 evaluations"):
        random_search(BitString(8), counted, budget=12, objectives=objectives, fail_fast=5)
    assert len(calls) == 5


def test_failures_after_a_success_or_of_different_kinds_do_not_stop_the_search():
    def late(bits):
        if sum(bits) % 3:
            raise RuntimeError(f"bad {sum(bits) % 3}")
        return onemax(bits)

    r = random_search(BitString(10), late, budget=40, seed=0)
    assert len(r.history) == 40 and r.ok and not all(e.ok for e in r.history)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_the_window_gives_one_sequence_whatever_the_order_results_come_back(batch):
    kw = dict(budget=60, population=10, sample_size=3, seed=7, batch=batch)
    serial = evolution(BitString(14), onemax, **kw)
    assert len({e.key for e in serial.history}) == 60
    with make_executor("process", workers=3) as ex:
        pooled = evolution(BitString(14), onemax, executor=ex, **kw)
    assert _keys(pooled) == _keys(serial)


def test_in_memory_search_of_many_evaluations_is_stored_in_batches():
    store = Store.in_memory()
    r = evolution(BitString(40), onemax, budget=3000, population=50, sample_size=10, store=store, name="big")
    rows = store.rows()
    assert len(rows) == 3000 and all(row["status"] == "ok" for row in rows)
    assert [row["description"]["key"] for row in rows] == [e.key for e in r.history]
    again = evolution(BitString(40), onemax, budget=3000, population=50, sample_size=10, store=store, name="big")
    assert _keys(again) == _keys(r)
    store.close()


KILL_FAST = textwrap.dedent("""
    import sys
    from normlab.search import BitString, evolution

    def fast(bits):
        with open(sys.argv[2], "a") as f:
            f.write("".join(map(str, bits)) + "\\n")
        return {"score": float(sum(bits)) + 0.001 * bits[0]}

    if __name__ == "__main__":
        evolution(BitString(40), fast, budget=int(sys.argv[3]), population=20, sample_size=5, seed=3,
                  store=sys.argv[1], name="fast", progress=False)
""")


@pytest.mark.slow
def test_group_commit_loses_at_most_the_last_moments_on_sigkill(tmp_path):
    """Fast evaluations are committed in groups: a kill -9 loses only what came back since the last
    commit; the resumed search is the uninterrupted one."""
    script = tmp_path / "fast.py"
    script.write_text(KILL_FAST)
    budget = "20000"
    run = lambda store, log: subprocess.Popen([sys.executable, str(script), str(store), str(log), budget],  # noqa: E731
                                              stderr=subprocess.PIPE, text=True)
    ref = run(tmp_path / "ref.sqlite", tmp_path / "ref.log")
    assert ref.wait(300) == 0, ref.stderr.read()
    victim = run(tmp_path / "k.sqlite", tmp_path / "k.log")
    wait_for_trials(tmp_path / "k.sqlite", 2000, timeout=120)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    with Store(tmp_path / "k.sqlite", readonly=True) as db:
        kept = sum(r["status"] == "ok" for r in db.rows())
    ran = len((tmp_path / "k.log").read_text().split())
    assert 2000 <= kept <= ran
    resumed = run(tmp_path / "k.sqlite", tmp_path / "k.log")
    assert resumed.wait(300) == 0, resumed.stderr.read()
    with Store(tmp_path / "ref.sqlite", readonly=True) as a, Store(tmp_path / "k.sqlite", readonly=True) as b:
        [want], [got] = load_search(a, "fast"), load_search(b, "fast")
    assert [e.key for e in got.history] == [e.key for e in want.history] and len(got.history) == 20000
    evaluated = (tmp_path / "k.log").read_text().split()
    assert len(evaluated) - 20000 == ran - kept          # only the uncommitted ones ran twice


def test_cli_timeout_reaches_the_search_and_bad_values_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from normlab.cli.app import app

    runner = CliRunner()
    store = str(tmp_path / "s.sqlite")
    args = ["evolve", "run", "--dataset", "digits", "--anchors", "resnet20@0.25", "--steps", "4",
            "--budget", "6", "--population", "2", "--sample-size", "2", "--store", store, "--name", "t"]
    res = runner.invoke(app, [*args, "--timeout", "0.001"])          # serial: recorded when it returns
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "first 3 evaluations" in lines[0] and "timed out after 0.001 s" in lines[0]
    with Store(store, readonly=True) as db:
        assert [r["error"] for r in db.rows()] == ["timed out after 0.001 s"] * 3
    for cmd in (["evolve", "run", "--timeout", "0"], ["nago", "run", "--timeout", "-2"],
                ["nas", "search", "x.pt", "--timeout", "0"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2 and "--timeout" in res.output and "positive" in res.output, res.output


@pytest.mark.slow
def test_ray_cancels_a_hung_evaluation_and_the_search_goes_on():
    pytest.importorskip("ray")
    kw = dict(budget=8, seed=4, batch=4)
    plan = [e.key for e in random_search(BitString(10), onemax, **kw).history]
    with make_executor("ray", workers=2) as ex:
        r = random_search(BitString(10), StallOn([plan[1]]), executor=ex, timeout=3, **kw)
    assert [e.key for e in r.history] == plan
    assert [(e.status, e.error) for e in r.history if not e.ok] == [("failed", "timed out after 3 s")]
