"""Executors (serial, process pool, Ray) and the SQLite results store."""

from .executors import BACKENDS, Executor, PoolExecutor, RayExecutor, SerialExecutor, make_executor
from .store import FINISHED, STATUSES, Store, export

__all__ = ["BACKENDS", "Executor", "SerialExecutor", "PoolExecutor", "RayExecutor", "make_executor", "Store",
           "export", "FINISHED", "STATUSES"]
