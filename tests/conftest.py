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


def wait_for_trials(store, at_least: int, statuses=("ok",), timeout: float = 60.0) -> int:
    """Poll a store being written by another process until it holds ``at_least`` trials with one
    of ``statuses`` (or ``timeout`` passes); returns how many it holds. Used to SIGKILL a run
    in the middle of its work."""
    import sqlite3
    import time

    marks = ",".join("?" * len(statuses))
    deadline, done = time.time() + timeout, 0
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            with sqlite3.connect(store) as db:
                done = db.execute(f"SELECT COUNT(*) FROM trials WHERE status IN ({marks})", statuses).fetchone()[0]
        except sqlite3.Error:                       # not created yet, or its schema not written yet
            continue
        if done >= at_least:
            break
    return done
