import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test on each device (CUDA when available, skipped otherwise), with that device as
    the default for every tensor and module the test creates (``with torch.device(...)``), so a
    reference test runs unchanged on the GPU."""
    with torch.device(request.param):
        yield request.param


SHAPES = [(4, 6, 10), (3, 8, 5, 4), (2, 4, 3, 4, 2)]  # 1-D, 2-D and 3-D spatial


def wait_for_trials(store, at_least: int, statuses=("ok",), timeout: float = 60.0, poll: float = 0.05) -> int:
    """Poll a store being written by another process every ``poll`` seconds until it holds
    ``at_least`` trials with one of ``statuses`` (or ``timeout`` passes); returns how many it
    holds. Used to SIGKILL a run in the middle of its work."""
    import sqlite3
    import time

    marks = ",".join("?" * len(statuses))
    deadline, done = time.time() + timeout, 0
    while time.time() < deadline:
        time.sleep(poll)
        try:
            with sqlite3.connect(store) as db:
                done = db.execute(f"SELECT COUNT(*) FROM trials WHERE status IN ({marks})", statuses).fetchone()[0]
        except sqlite3.Error:                       # not created yet, or its schema not written yet
            continue
        if done >= at_least:
            break
    return done


def v1_store(path):
    """A store of normlab's first schema (v1), for the migration tests."""
    import json
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript("""
    CREATE TABLE trials (id TEXT PRIMARY KEY, experiment TEXT NOT NULL, description TEXT NOT NULL,
        model TEXT, norm TEXT, dataset TEXT, batch_size INTEGER, seed INTEGER, status TEXT NOT NULL,
        metrics TEXT, history TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        created REAL, started REAL, finished REAL);
    CREATE INDEX trials_experiment ON trials (experiment);""")
    for i, (norm, b, acc) in enumerate([("bn", 2, 0.8), ("bn", 32, 0.9), ("gn:groups=4", 2, 0.85)]):
        desc = {"id": f"old{i}", "model": "resnet20", "norm": norm, "dataset": "mnist5k", "batch_size": b,
                "batch_mode": "both", "seed": 0, "lr": 0.1, "train": {"epochs": 1}}
        db.execute("INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (f"old{i}", "quick", json.dumps(desc), "resnet20", norm, "mnist5k", b, 0, "ok",
                    json.dumps({"test_acc": acc}), "[]", None, 1, 1.0, 2.0, 3.0))
    db.commit()
    db.close()


def assert_trains_like(eager, module, call, shape, *, steps=3, atol=1e-4, grad_atol=1e-3, buffer_atol=1e-5):
    """``call`` (e.g. ``module`` compiled) trains like ``eager`` (a copy of ``module``): ``steps``
    forward+backward steps with the outputs, the input and parameter gradients equal, then the
    running buffers, then an eval-mode forward."""
    for _ in range(steps):
        x = torch.randn(shape) * 2 + 1
        xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ye, yc = eager(xe), call(xc)
        torch.testing.assert_close(yc, ye, rtol=1e-4, atol=atol)
        ye.square().sum().backward()
        yc.square().sum().backward()
        torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-3, atol=grad_atol)
        for (name, pe), pc in zip(eager.named_parameters(), module.parameters()):
            torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-3, atol=grad_atol, msg=name)
    for (name, be), bc in zip(eager.named_buffers(), module.buffers()):
        torch.testing.assert_close(bc, be, rtol=1e-4, atol=buffer_atol, msg=name)
    eager.eval(), module.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(call(x), eager(x), rtol=1e-4, atol=atol)
