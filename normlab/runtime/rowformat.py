"""Trial rows (``Store.rows``) as CSV or JSON, for ``normlab runs export``."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Mapping

__all__ = ["export"]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value if not isinstance(value, list) else json.dumps(value)


def export(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as CSV (flat: id, experiment, status, every description field, final metrics) or
    JSON (everything)."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt != "csv":
        raise ValueError(f"format={fmt!r} is invalid: expected csv or json")
    flat = []
    for r in rows:
        desc: dict[str, Any] = {}
        _flatten("", r["description"], desc)
        flat.append(desc)
    desc_keys = list(dict.fromkeys(k for d in flat for k in d))
    metric_keys = sorted({k for r in rows for k in r["metrics"]})
    head = ["id", "experiment", "status", "attempts", "error"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(head + desc_keys + metric_keys)
    for r, d in zip(rows, flat):
        writer.writerow([r.get(k) for k in head] + [d.get(k) for k in desc_keys]
                        + [r["metrics"].get(k) for k in metric_keys])
    return buf.getvalue()
