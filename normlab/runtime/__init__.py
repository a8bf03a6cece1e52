"""The engine under every study and search: the store, the executors and the driver.

    store = Store("runs/normlab.sqlite")
    exp = store.experiment("my-study", kind="bench", config=cfg)
    driver = Driver(store, exp, run_trial, make_executor("process", workers=2))
    outcome = driver.run(descriptions)          # or driver.submit(d) / driver.wait() in a search
"""

from .driver import Completed, Driver, Outcome, Sink
from .executors import (BACKENDS, Executor, ExecutorError, PoolExecutor, RayExecutor, SerialExecutor,
                        check_executor, make_executor, threads_per_worker)
from .protocol import (FINISHED, STATUSES, RunContext, TrialResult, canonical_json, experiment_id,
                      trial_id)
from .store import SCHEMA_VERSION, ExperimentRecord, Store, StoreError, check_name, export

__all__ = ["BACKENDS", "Executor", "ExecutorError", "SerialExecutor", "PoolExecutor", "RayExecutor",
           "make_executor", "check_executor", "threads_per_worker", "Store", "StoreError", "ExperimentRecord",
           "check_name",
           "SCHEMA_VERSION", "export",
           "FINISHED", "STATUSES", "TrialResult", "RunContext", "canonical_json", "experiment_id",
           "trial_id", "Driver", "Completed", "Outcome", "Sink"]
