"""A NAGO (optuna-driven) search killed with SIGKILL and run again reaches exactly the
uninterrupted search: the same proposals in the same order, finished evaluations never run
again."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("optuna")
pytest.importorskip("networkx")

from normlab.runtime import Store  # noqa: E402

SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests.nago.test_nago import small_cfg
from normlab.nago.search import run_search
from normlab.runtime import SerialExecutor
run_search(small_cfg(budget=7, startup=2, train={{"steps": 30, "batch_size": 32, "lr": 0.1}}),
           store=sys.argv[1], executor=SerialExecutor(threads=1))
"""


def _rows(path):
    with Store(path, readonly=True) as db:
        return [(r["description"]["key"], r["description"]["params"], r["status"], r["metrics"].get("accuracy"),
                 r["finished"]) for r in db.rows()]


@pytest.mark.slow
def test_a_nago_search_resumed_after_sigkill_is_the_uninterrupted_one(tmp_path):
    root = os.getcwd()
    code = SCRIPT.format(root=root)
    run = lambda path: subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=root,  # noqa: E731
                                        stderr=subprocess.PIPE, text=True)
    ref = run(tmp_path / "ref.sqlite")
    assert ref.wait(600) == 0, ref.stderr.read()
    victim = run(tmp_path / "k.sqlite")
    deadline = time.time() + 300
    while time.time() < deadline:                 # kill once the model-based proposals have begun
        time.sleep(0.2)
        try:
            statuses = [r[2] for r in _rows(tmp_path / "k.sqlite")]
        except Exception:                          # noqa: BLE001 - not created yet
            continue
        if statuses.count("ok") >= 3 and "running" in statuses:
            break
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    before = {key: finished for key, _, status, _, finished in _rows(tmp_path / "k.sqlite") if status == "ok"}
    assert len(before) >= 3
    resumed = run(tmp_path / "k.sqlite")
    assert resumed.wait(600) == 0, resumed.stderr.read()
    want, got = _rows(tmp_path / "ref.sqlite"), _rows(tmp_path / "k.sqlite")
    assert [r[:4] for r in got] == [r[:4] for r in want] and len(got) == 7
    assert all(finished == before[key] for key, _, _, _, finished in got if key in before)   # not run again
