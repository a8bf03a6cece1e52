"""The engine under every study and search: store, executors, driver, faults (for real)."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from normlab.runtime import (SCHEMA_VERSION, Driver, ExecutorError, PoolExecutor, SerialExecutor,
                             Store, StoreError, TrialResult, make_executor, trial_id)
from normlab.runtime import toy

from conftest import v1_store as _v1_store


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- the general store -----------------------------------------------------------------------

def test_store_schema_is_general_and_versioned(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = {r[1] for r in store.db.execute("PRAGMA table_info(trials)")}
        assert {"experiment_id", "description", "status", "metrics", "history", "error", "attempts",
                "owner", "lease_expires", "started", "finished"} <= cols
        assert not {"model", "norm", "batch_size", "seed"} & cols          # no bench-only columns
        assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        exp = store.experiment("s1", "search", {"population": 8})
        assert (exp.name, exp.kind, exp.config) == ("s1", "search", {"population": 8})
        ids = store.add_trials(exp, [{"arch": [1, 0]}, {"arch": [0, 1]}])
        assert store.add_trials(exp, [{"arch": [1, 0]}]) == ids[:1]          # idempotent
        assert store.count() == 2
        assert len(store.rows(experiment="s1", status="pending")) == 2


def test_trial_identity_includes_the_experiment(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        a = store.experiment("a", "bench", {"lr": 0.1})
        b = store.experiment("b", "bench", {"lr": 0.1})          # a renamed study
        c = store.experiment("a", "bench", {"lr": 0.2})          # an edited config
        d = {"model": "resnet20", "norm": "bn"}
        ids = {store.add_trials(e, [d])[0] for e in (a, b, c)}
        assert len(ids) == 3 and trial_id(a.id, d) in ids
        assert store.experiment("a", "bench", {"lr": 0.1}).id == a.id  # same identity, same record
        assert len(store.experiments(name="a")) == 2


def test_claims_are_atomic_leases_expire_finished_is_final(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        exp = store.experiment("e", "test", {})
        t1, t2 = store.add_trials(exp, [{"x": 1}, {"x": 2}])
        assert store.claim(t1, "A", lease=0.3)
        assert not store.claim(t1, "B", lease=0.3)                # held by A
        time.sleep(0.4)
        assert store.claim(t1, "B", lease=30)                      # A's lease ran out
        assert store.renew("A", [t1]) == 0 and store.renew("B", [t1]) == 1
        assert store.finish(t1, TrialResult("ok", {"y": 1}))
        assert not store.claim(t1, "C", lease=30)                  # finished is never running again
        assert not store.finish(t1, TrialResult("failed", error="late"))   # the first result wins
        row = store.trial(t1)
        assert (row["status"], row["metrics"], row["attempts"], row["owner"]) == ("ok", {"y": 1}, 2, None)
        assert store.claim(t2, "A") and store.finish(t2, TrialResult("failed", error="boom"))
        assert store.requeue_failed([t1, t2]) == 1 and store.status_of([t2]) == {t2: "pending"}


def test_a_store_of_the_previous_schema_is_read_and_migrated(tmp_path):
    path = tmp_path / "v1.sqlite"
    _v1_store(path)
    before = _sha(path)
    with Store(path, readonly=True) as store:                     # read through a copy in memory
        rows = store.rows(experiment="quick")
        assert len(rows) == 3 and rows[0]["kind"] == "bench" and rows[0]["metrics"]["test_acc"] == 0.8
    assert _sha(path) == before                                    # readers never write
    with Store(path) as store:                                     # a writer migrates it for good
        assert len(store.rows(experiment="quick", status="ok")) == 3
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "new.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match=r"newer normlab \(schema 99; this version reads up to 2\)"):
        Store(path)


@pytest.mark.parametrize("content,problem", [
    (b"this is a text file, not a database\n" * 200, "not a normlab store"),
    (None, "corrupt"),
])
def test_a_bad_store_file_is_one_line_and_untouched(tmp_path, content, problem):
    path = tmp_path / "bad.sqlite"
    if content is None:                                            # a real store, truncated
        with Store(path) as store:
            exp = store.experiment("e", "test", {})
            store.add_trials(exp, [{"x": i, "pad": "y" * 500} for i in range(200)])
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + b"\0" * 3000 + data[len(data) // 2 + 3000:])
    else:
        path.write_bytes(content)
    before = _sha(path)
    with pytest.raises(StoreError) as info:
        with Store(path) as store:
            store.rows()
    assert problem in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    assert _sha(path) == before


def test_a_directory_is_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path, readonly=True)


def _mount_tmpfs(path, size="256k"):
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    return path


def test_read_only_folder_and_full_disk(tmp_path):
    folder = _mount_tmpfs(tmp_path / "mnt")
    try:
        path = folder / "s.sqlite"
        with Store(path) as store:
            exp = store.experiment("e", "test", {})
            (tid,) = store.add_trials(exp, [{"x": 1}])
            store.claim(tid, "A")
            store.finish(tid, TrialResult("ok", {"y": 1}))
            with pytest.raises(StoreError, match="disk is full") as info:       # fill the disk
                for i in range(2000):
                    store.add_trials(exp, [{"x": i, "pad": "z" * 4000}])
            assert str(path) in str(info.value)
            assert store.status_of([tid]) == {tid: "ok"}                    # nothing finished lost
        for _ in range(20):                  # the kernel may still hold the file busy a moment
            if subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)
        else:
            pytest.skip("cannot remount the tmpfs read-only here (busy)")
        with Store(path, readonly=True) as store:                              # read-only folder
            assert store.rows(status="ok")[0]["metrics"] == {"y": 1}
        with pytest.raises(StoreError, match="read-only"):
            with Store(path) as store:
                store.experiment("e2", "test", {})
    finally:
        subprocess.run(["umount", "-l", str(folder)])


# -- executors and the driver ---------------------------------------------------------------

def test_driver_runs_a_plan_and_resumes_in_memory():
    store = Store.in_memory()
    exp = store.experiment("e", "test", {})
    out = Driver(store, exp, toy.square).run([{"x": i, "fail": i == 3} for i in range(5)])
    assert (out.planned, out.ran, out.ok, out.failed) == (5, 5, 4, 1)
    assert "asked to fail" in store.rows(status="failed")[0]["error"]
    again = Driver(store, exp, toy.square).run([{"x": i, "fail": i == 3} for i in range(5)])
    assert (again.skipped, again.ran, again.failed) == (4, 1, 1)                # failed runs again
    assert store.rows(where={"x": 2})[0]["metrics"] == {"y": 4}


def test_trials_that_are_one_computation_run_once_and_resume(tmp_path):
    """``same``: trials with equal keys (here: equal x, different labels) run once; the others are
    stored with its result, naming it; a rerun (even with a new label) copies, never reruns."""
    marker = tmp_path / "ran"
    plan = [{"x": x, "label": lab, "marker": str(marker), "seconds": 0}
            for x in (1, 2) for lab in ("a", "b", "c")]
    key = lambda d: {k: v for k, v in d.items() if k != "label"}       # noqa: E731
    store = Store(tmp_path / "s.sqlite")
    exp = store.experiment("e", "test", {})
    seen = []
    out = Driver(store, exp, toy.sleepy).run(plan, same=key, on_result=seen.append,
                                              on_start=lambda n, todo: seen.append((n, todo)))
    assert seen[0] == (6, 6)
    assert (out.planned, out.ran, out.ok) == (6, 6, 6) and len(seen) == 7
    assert sorted(marker.read_text().split()[0::2]) == ["1", "2"]          # two trainings
    rows = store.rows()
    assert [r["metrics"]["y"] for r in rows] == [1, 1, 1, 4, 4, 4]
    sources = {r["metrics"].get("same_run_as") for r in rows} - {None}
    assert len(sources) == 2 and sources <= {r["id"] for r in rows}
    more = plan + [{**plan[0], "label": "d"}]                               # a new label, resumed
    again = Driver(store, exp, toy.sleepy).run(more, same=key)
    assert (again.skipped, again.ran) == (6, 1)
    assert len(marker.read_text().split()) == 4                             # still two trainings
    assert store.rows(where={"label": "d"})[0]["metrics"]["y"] == 1
    failing = [{"x": 9, "fail": True, "label": lab} for lab in "ab"]        # a failure is shared too
    bad = Driver(store, exp, toy.square).run(failing, same=key)
    assert (bad.ran, bad.failed) == (2, 2)


def test_executor_settings_fail_in_one_line():
    with pytest.raises(ExecutorError, match="workers=0"):
        make_executor("process", 0)
    with pytest.raises(ExecutorError, match="backend='gpu'"):
        make_executor("gpu")
    with pytest.raises(ExecutorError, match="--address .* needs --backend ray"):
        make_executor("process", 2, address="127.0.0.1:6379")


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_ray_and_mlflow_fail_fast():
    port = _free_port()
    start = time.time()
    with pytest.raises(ExecutorError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        make_executor("ray", 2, address=f"127.0.0.1:{port}", connect_timeout=5)
    pytest.importorskip("mlflow")
    from normlab.runtime.sinks import MLflowSink, SinkError

    with pytest.raises(SinkError, match=f"cannot reach the MLflow server at http://127.0.0.1:{port}"):
        MLflowSink(f"http://127.0.0.1:{port}", "x", timeout=5)
    assert time.time() - start < 30


@pytest.mark.slow
def test_pool_runs_only_what_is_in_flight_and_survives_a_dead_worker():
    store = Store.in_memory()
    exp = store.experiment("e", "test", {})
    seen_running = []

    def watch(done):
        seen_running.append(len(store.rows(status="running")))

    with PoolExecutor(2, threads=1) as ex:
        out = Driver(store, exp, toy.sleepy, ex).run(
            [{"x": i, "seconds": 0.3, "die": i == 1, "pid": True} for i in range(6)], on_result=watch)
    assert (out.ok, out.failed) == (5, 1)
    assert max(seen_running) <= 2                                  # running = really in flight
    bad = store.rows(status="failed")[0]
    assert bad["description"]["x"] == 1 and "worker process" in bad["error"]


_DRIVER = textwrap.dedent("""
    import json, sys
    from normlab.cli.common import interruptible
    from normlab.runtime import Driver, PoolExecutor, SerialExecutor, Store, toy

    if __name__ == "__main__":
        path, marker, n, seconds, workers, lease = sys.argv[1:]
        store = Store(path)
        exp = store.experiment("t", "test", {"v": 1})
        ex = PoolExecutor(int(workers), threads=1) if int(workers) > 1 else SerialExecutor()
        plan = [{"x": i, "seconds": float(seconds), "marker": marker} for i in range(int(n))]
        try:
            with interruptible():                     # SIGTERM is handled like Ctrl-C
                out = Driver(store, exp, toy.sleepy, ex, lease=float(lease)).run(plan, poll_every=0.2)
        except KeyboardInterrupt:
            sys.exit(130)
        finally:
            ex.close()
        print(json.dumps({"ran": out.ran, "elsewhere": out.elsewhere, "ok": out.ok}))
""")


def _driver(tmp_path, *args):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _default_sigint():
    """A child of a shell's background job starts with SIGINT ignored (and Python then installs
    no KeyboardInterrupt handler): give it the default disposition, as a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _runs(marker):
    lines = Path(marker).read_text().split() if Path(marker).exists() else []
    return [int(x) for x in lines[0::2]], [int(p) for p in lines[1::2]]


def _wait_ok(path, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            db = sqlite3.connect(path, timeout=5)
            k = db.execute("SELECT COUNT(*) FROM trials WHERE status='ok'").fetchone()[0]
            db.close()
            if k >= n:
                return
        except sqlite3.OperationalError:
            pass
    raise AssertionError(f"fewer than {n} trials finished in {timeout}s")


@pytest.mark.slow
def test_two_drivers_on_one_store_never_run_a_trial_twice(tmp_path):
    path, marker = tmp_path / "s.sqlite", tmp_path / "marker"
    procs = [_driver(tmp_path, path, marker, 8, 0.3, 1, 30) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in results]
    outs = [json.loads(out) for out, _ in results]
    xs, _ = _runs(marker)
    assert sorted(xs) == list(range(8))                            # each trial trained once
    assert sum(o["ran"] for o in outs) == 8
    with Store(path, readonly=True) as store:
        assert [r["status"] for r in store.rows()] == ["ok"] * 8


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_kill_9_of_a_driver_with_a_pool_leaves_no_orphans_and_loses_nothing(tmp_path):
    path, marker = tmp_path / "s.sqlite", tmp_path / "marker"
    proc = _driver(tmp_path, path, marker, 10, 1.0, 2, 120)
    _wait_ok(path, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    _, pids = _runs(marker)
    workers = set(pids)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "worker processes outlived their driver"
    with Store(path, readonly=True) as store:
        finished = {r["description"]["x"]: r["finished"] for r in store.rows(status="ok")}
    again = _driver(tmp_path, path, marker, 10, 1.0, 2, 120)       # the dead owner's leases are reaped
    out = json.loads(again.communicate(timeout=60)[0])
    assert out["ok"] == 10 - len(finished)
    with Store(path, readonly=True) as store:
        rows = store.rows()
    assert [r["status"] for r in rows] == ["ok"] * 10
    for r in rows:                                                 # nothing finished was redone
        if r["description"]["x"] in finished:
            assert r["finished"] == finished[r["description"]["x"]] and r["attempts"] == 1


@pytest.mark.slow
def test_sigint_and_sigterm_stop_dispatching_and_keep_results(tmp_path):
    for sig in (signal.SIGINT, signal.SIGTERM):
        path, marker = tmp_path / f"{sig}.sqlite", tmp_path / f"{sig}.marker"
        proc = _driver(tmp_path, path, marker, 20, 0.5, 1, 120)
        _wait_ok(path, 1)
        proc.send_signal(sig)
        proc.wait(30)
        assert proc.returncode == 130
        with Store(path, readonly=True) as store:
            statuses = [r["status"] for r in store.rows()]
        assert "running" not in statuses and statuses.count("ok") >= 1
        assert statuses.count("pending") >= 10


def test_serial_executor_restores_threads():
    import torch

    before = torch.get_num_threads()
    ex = SerialExecutor(threads=1)
    ex.submit("k", toy.square, {"x": 2})
    [(key, result)] = ex.poll()
    assert (key, result.metrics) == ("k", {"y": 4}) and torch.get_num_threads() == before


def test_heartbeat_keeps_a_long_trial_claimed(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    exp = store.experiment("e", "test", {})
    driver = Driver(store, exp, toy.sleepy, SerialExecutor(), lease=0.4)
    tid = driver.submit({"x": 1, "seconds": 0.0})
    time.sleep(1.0)                          # three lease lengths: only renewals keep it claimed
    other = Store(path)
    assert not other.claim(tid, "intruder", lease=10)
    [done] = driver.wait()
    driver.close()
    assert done.result.status == "ok" and other.status_of([tid]) == {tid: "ok"}
    other.close()
    store.close()


_WAITER = textwrap.dedent("""
    import json, sys
    from normlab.runtime import Driver, SerialExecutor, Store, toy

    path, marker = sys.argv[1:]
    print("ready", flush=True)
    sys.stdin.readline()                  # imports done before the peer's trial starts: go
    store = Store(path)
    exp = store.experiment("t", "test", {"v": 1})
    plan = [{"x": 0, "seconds": 6.0, "marker": marker}]
    started = lambda total, todo: print("waiting", flush=True)     # after the reaping at start
    out = Driver(store, exp, toy.sleepy, SerialExecutor(), lease=600).run(plan, poll_every=0.2,
                                                                          on_start=started)
    print(json.dumps({"ran": out.ran, "elsewhere": out.elsewhere, "ok": out.ok}), flush=True)
""")


@pytest.mark.slow
def test_a_waiting_driver_takes_over_a_dead_local_peers_trial_without_waiting_out_its_lease(tmp_path):
    """Issue 28: dead local owners were reaped only at start, so a driver already waiting for a
    peer's trial sat out the peer's whole lease (here 10 minutes) after the peer was killed -9."""
    path, marker = tmp_path / "s.sqlite", tmp_path / "marker"
    (tmp_path / "waiter.py").write_text(_WAITER)
    second = subprocess.Popen([sys.executable, str(tmp_path / "waiter.py"), str(path), str(marker)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert second.stdout.readline().strip() == "ready"            # its imports are done (slow when loaded)
    first = _driver(tmp_path, path, marker, 1, 6.0, 1, 600)       # one 6 s trial, 10-minute lease
    deadline = time.time() + 60
    while not _runs(marker)[0] and time.time() < deadline:
        time.sleep(0.1)
    try:
        second.stdin.write("go\n")
        second.stdin.flush()
        assert second.stdout.readline().strip() == "waiting"      # past its start: waiting for the trial
        time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second.wait(timeout=120)                                  # not 600 s: taken over at once
        # read through the text wrappers: readline() above may already hold the JSON line in its
        # buffer, which communicate() (reading the raw pipes) would miss
        out, err = second.stdout.read(), second.stderr.read()
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert second.returncode == 0, err[-800:]
    assert json.loads(out) == {"ran": 1, "elsewhere": 0, "ok": 1}
    xs, pids = _runs(marker)
    assert xs == [0, 0] and pids[0] != pids[1]                   # started by each driver once
    with Store(path, readonly=True) as store:
        [row] = store.rows(experiment="t")
    assert row["status"] == "ok" and row["attempts"] == 2


def test_one_dataset_cache_for_every_study():
    """bench trials, evolve's proxy, nago's evaluations and nas's splits read one per-process
    cache (normlab.runtime.data): the same object, loaded once; no study keeps its own."""
    import normlab.evolve.search as evolve
    import normlab.nago.search as nago
    import normlab.nas.train as nas
    from normlab.runtime import data as cache

    cache.clear_data_cache()
    first = cache.load_data("digits")
    assert evolve._data("digits", 0) is first and nago._dataset("digits", None, 0) is first
    split = nas.load_split("digits")
    assert nas.load_split("digits") is split and len(cache._CACHE) == 2
    assert not any(hasattr(m, name) for m in (evolve, nago, nas) for name in ("_DATA", "_SPLITS"))
    cache.clear_data_cache()
    assert cache.load_data("digits") is not first
