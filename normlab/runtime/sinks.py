"""Sinks hear about every stored result. MLflow is the one shipped: reachability is checked
before any training, so a wrong ``--mlflow`` URI fails in seconds, not after the study."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from .driver import Completed, Sink
from .store import ExperimentRecord

__all__ = ["MLflowSink", "SinkError"]


class SinkError(ValueError):
    """A sink that cannot work (missing package, unreachable server): one line."""


def _check_reachable(uri: str, timeout: float) -> None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    if not parsed.hostname:
        raise SinkError(f"--mlflow {uri!r} is invalid: expected a URI such as http://host:5000")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise SinkError(f"cannot reach the MLflow server at {uri} ({reason} after at most "
                        f"{timeout:g}s): start it or fix --mlflow") from None


class MLflowSink(Sink):
    """Logs every trial as an MLflow run: parameters (the description, flattened), a status tag,
    the history as stepped metrics and the final metrics."""

    def __init__(self, uri: str, experiment: str, timeout: float = 10.0) -> None:
        try:
            import mlflow
        except ImportError:
            raise SinkError("--mlflow needs MLflow: pip install 'normlab[mlflow]'") from None
        _check_reachable(uri, timeout)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout))))
        self.mlflow = mlflow
        try:
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment(experiment)
        except Exception as exc:  # noqa: BLE001 - any client error is one line
            raise SinkError(f"MLflow at {uri} refused experiment '{experiment}': "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None

    @staticmethod
    def _params(description: dict[str, Any], prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in description.items():
            if isinstance(v, dict):
                out.update(MLflowSink._params(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = str(v)
        return out

    def on_result(self, experiment: ExperimentRecord, done: Completed) -> None:
        mlflow = self.mlflow
        d = done.description
        name = "-".join(str(d[k]) for k in ("model", "norm", "batch_size", "seed") if k in d) or done.id
        with mlflow.start_run(run_name=name):
            mlflow.log_params(self._params(d))
            mlflow.set_tag("status", done.result.status)
            mlflow.set_tag("trial_id", done.id)
            for h in done.result.history:
                step = int(h.get("step", 0))
                mlflow.log_metrics({k: float(v) for k, v in h.items()
                                    if k not in ("epoch", "step") and isinstance(v, (int, float))}, step=step)
            mlflow.log_metrics({k: float(v) for k, v in done.result.metrics.items()
                                if isinstance(v, (int, float))})
