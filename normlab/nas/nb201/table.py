"""The NAS-Bench-201 table as ground truth: per cell, dataset and seed, the 200-epoch validation
and test accuracy; per cell and dataset, parameters (millions, the table's "MB"), FLOPs
(millions of multiply-adds), latency (s) and training time (s, 200 epochs).

Where the table comes from. No registry package ships it (checked 2026-12-06: nas-bench-201,
nats-bench, nasbenchapi, analog-nasbench, gymnastics, benchENAS carry the API or other data,
not the table), so normlab reads two files a user puts on disk, never downloading anything:

* the benchmark's own file ``NAS-Bench-201-v1_1-096897.pth`` (or v1_0), a ``torch.save``'d dict of
  plain Python data, read with ``torch.load(weights_only=True)`` (nothing is unpickled beyond
  plain containers, numbers, strings and numpy scalars);
* the compact ``.npz`` that ``normlab nas nb201 convert`` writes from it (numeric arrays and
  strings only, read with ``allow_pickle=False``): a few MB, loads in well under a second.

Where normlab looks: ``--table PATH``, else ``$NORMLAB_NB201_TABLE``, else
``~/.cache/normlab/nb201.npz``. ``standin`` names a synthetic table (``synthetic_table``) whose
shape, parameter and FLOP columns are real (from the construction) but whose accuracies and
times are made up from a simple formula: for tests and dry runs, never evidence.

Which accuracies: ``valid`` is the x-valid accuracy after the last of 200 epochs (the signal a
search may use); ``test`` is ori-test for cifar10-valid and x-test for cifar100 and
ImageNet16-120 (the numbers papers report). Both in percent, as the table stores them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...models.nb201 import NB201Error, arch_string
from .space import NUM_ARCHS, all_archs, analytic_flops, analytic_params, op_counts

__all__ = ["DATASETS", "NB201Table", "TableMissing", "load_table", "read_official", "read_compact",
           "write_compact", "synthetic_table", "default_table_path", "CLASSES", "IMAGE_SIZE",
           "inconsistent_params", "sampled_table"]

DATASETS = ("cifar10-valid", "cifar100", "ImageNet16-120")
CLASSES = {"cifar10-valid": 10, "cifar100": 100, "ImageNet16-120": 120}
IMAGE_SIZE = {"cifar10-valid": 32, "cifar100": 32, "ImageNet16-120": 16}
_TEST_SET = {"cifar10-valid": "ori-test", "cifar100": "x-test", "ImageNet16-120": "x-test"}
COLUMNS = ("params", "flops", "latency", "train_time", "eval_time")


class TableMissing(NB201Error):
    """The NB201 table is not where normlab looks: one line saying where to put it."""


def default_table_path() -> Path:
    env = os.environ.get("NORMLAB_NB201_TABLE")
    return Path(env) if env else Path.home() / ".cache" / "normlab" / "nb201.npz"


def _missing(where: str) -> TableMissing:
    return TableMissing(f"no NAS-Bench-201 table at {where}: put NAS-Bench-201-v1_1-096897.pth (or the .npz "
                        f"'normlab nas nb201 convert' writes from it) there, pass --table PATH or set "
                        f"NORMLAB_NB201_TABLE; '--table standin' runs on a synthetic stand-in (not evidence)")


@dataclass
class NB201Table:
    """The table in memory: ``archs`` in the table's index order, per dataset arrays."""

    archs: list[str]
    seeds: dict[str, list[int]]
    valid: dict[str, np.ndarray]            # (cells, seeds) percent, NaN where a seed is missing
    test: dict[str, np.ndarray]
    columns: dict[str, dict[str, np.ndarray]]   # dataset -> column -> (cells,)
    source: str = ""
    standin: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._row = {a: i for i, a in enumerate(self.archs)}

    @property
    def datasets(self) -> list[str]:
        return [d for d in DATASETS if d in self.valid] + [d for d in self.valid if d not in DATASETS]

    def __len__(self) -> int:
        return len(self.archs)

    def check_dataset(self, dataset: str) -> str:
        if dataset not in self.valid:
            raise NB201Error(f"unknown dataset {dataset!r}: this table has {', '.join(self.datasets)}")
        return dataset

    def row(self, arch: str) -> int:
        key = arch_string(arch)
        try:
            return self._row[key]
        except KeyError:
            raise NB201Error(f"architecture {key} is not in this table ({len(self)} cells)") from None

    def accuracy(self, arch: str, dataset: str, seed: int | None = None, split: str = "valid") -> float:
        """One seed's accuracy (``seed`` one of ``seeds[dataset]``) or, with ``seed=None``, the mean
        over the seeds the table has for this cell."""
        vals = self._split(dataset, split)[self.row(arch)]
        if seed is None:
            return float(np.nanmean(vals))
        seeds = self.seeds[dataset]
        if seed not in seeds:
            raise NB201Error(f"seed {seed} is invalid for {dataset}: the table's seeds are {seeds}")
        v = float(vals[seeds.index(seed)])
        if math.isnan(v):
            raise NB201Error(f"{arch} was not trained with seed {seed} on {dataset}")
        return v

    def mean_accuracy(self, dataset: str, split: str = "valid") -> np.ndarray:
        """Mean over seeds, every cell (cells, )."""
        import warnings

        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)        # a cell with no seed: NaN, as documented
            return np.nanmean(self._split(dataset, split), axis=1)

    def column(self, dataset: str, name: str) -> np.ndarray:
        self.check_dataset(dataset)
        if name not in COLUMNS:
            raise NB201Error(f"unknown column {name!r}: expected one of {', '.join(COLUMNS)}")
        return self.columns[dataset][name]

    def cell(self, arch: str, dataset: str) -> dict[str, Any]:
        """Everything the table says about one cell on one dataset."""
        i = self.row(arch)
        seeds = self.seeds[dataset]
        return {"arch": self.archs[i], "index": i, "dataset": dataset,
                "valid": {s: float(v) for s, v in zip(seeds, self._split(dataset, "valid")[i]) if not math.isnan(v)},
                "test": {s: float(v) for s, v in zip(seeds, self._split(dataset, "test")[i]) if not math.isnan(v)},
                "valid_mean": self.accuracy(self.archs[i], dataset), "test_mean": self.accuracy(self.archs[i], dataset, split="test"),
                **{k: float(self.columns[dataset][k][i]) for k in COLUMNS}}

    @property
    def sampled(self) -> bool:
        """Whether this table holds only some cells (:func:`sampled_table`), not all 15,625."""
        return bool(self.meta.get("sampled"))

    @property
    def label(self) -> str:
        """What the accuracies are, in words (for reports)."""
        return str(self.meta.get("label") or self.source)

    def optimum(self, dataset: str, split: str = "valid") -> tuple[str, float]:
        acc = self.mean_accuracy(dataset, split)
        i = int(np.nanargmax(acc))
        return self.archs[i], float(acc[i])

    def _split(self, dataset: str, split: str) -> np.ndarray:
        self.check_dataset(dataset)
        if split not in ("valid", "test"):
            raise NB201Error(f"split {split!r} is invalid: expected valid or test")
        return (self.valid if split == "valid" else self.test)[dataset]


def sampled_table(archs: Sequence[str], accuracy: Any, *, dataset: str, seeds: Sequence[int], label: str,
                  split: str = "test") -> NB201Table:
    """A table over sampled cells only, for ground truth measured outside NB201 (the CPU study's
    stand-alone trainings): ``accuracy`` is (cells, seeds) in percent, stored as ``split`` of
    ``dataset`` (the other split is NaN: nothing was measured there); ``label`` says what the
    numbers are. Everything that reads a table by its cells (``archs``, ``mean_accuracy``,
    ``optimum``, ``row``) then works on the sampled cells, e.g. ABS's drop
    (:func:`normlab.nas.nb201.oneshot.abs_drop`)."""
    if split not in ("valid", "test"):
        raise NB201Error(f"split {split!r} is invalid: expected valid or test")
    archs = [arch_string(a) for a in archs]
    acc = np.asarray(accuracy, dtype=float).reshape(len(archs), -1)
    if acc.shape[1] != len(seeds):
        raise NB201Error(f"accuracy has {acc.shape[1]} columns for {len(seeds)} seeds: expected one per seed")
    if len(set(archs)) != len(archs):
        raise NB201Error("the sampled cells repeat a cell: expected each cell once (its seeds as columns)")
    missing = np.full_like(acc, np.nan)
    splits = {"valid": missing, "test": acc} if split == "test" else {"valid": acc, "test": missing}
    nan = np.full(len(archs), np.nan)
    return NB201Table(archs, {dataset: [int(s) for s in seeds]}, {dataset: splits["valid"]}, {dataset: splits["test"]},
                      {dataset: {c: nan for c in COLUMNS}}, source=label,
                      meta={"sampled": True, "label": label, "split": split})


# -- readers -----------------------------------------------------------------------------------

def _torch_load_plain(path: Path) -> Any:
    """``torch.load(weights_only=True)``: plain containers, numbers, strings, tensors, and numpy
    scalars (numbers, no code); files pickled under numpy 1.x name the scalar constructor
    ``numpy.core.multiarray.scalar``, so it is allowed under that name too."""
    import torch

    try:
        from numpy._core.multiarray import scalar
    except ImportError:                   # pragma: no cover - numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType")
              if hasattr(np, "dtypes") and hasattr(np.dtypes, n)]
    safe: list[Any] = [scalar, np.dtype, *dtypes, (scalar, "numpy.core.multiarray.scalar")]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure: one line, never a full unpickle
        text = str(exc).strip()
        first = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln),
                     text.splitlines()[0] if text else type(exc).__name__)
        raise NB201Error(f"cannot read {path} as plain data (torch.load weights_only=True): {first}") from None


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise NB201Error(f"not a NAS-Bench-201 file: {where} has no {key!r}")
    return obj[key]


def _last(acc: Mapping[str, Any], name: str, epochs: int) -> float:
    v = acc.get(f"{name}@{epochs - 1}")
    return float("nan") if v is None else float(v)


def read_official(path: str | Path, hp: str = "full") -> NB201Table:
    """Read the benchmark's own ``.pth`` (``{'meta_archs', 'arch2infos', 'evaluated_indexes'}``;
    per cell ``arch2infos[i][hp]`` is an ArchResults state: ``dataset_seed`` {dataset: seeds},
    ``all_results`` {(dataset, seed): a ResultsCount's fields}). ``hp``: ``full`` (200 epochs) or
    ``less`` (12 epochs)."""
    path = Path(path)
    data = _torch_load_plain(path)
    archs = list(_get(data, "meta_archs", str(path)))
    infos = _get(data, "arch2infos", str(path))
    if len(archs) != NUM_ARCHS:
        raise NB201Error(f"{path} lists {len(archs)} architectures: expected {NUM_ARCHS}")
    expected = all_archs()
    bad = next((i for i, (x, y) in enumerate(zip(archs, expected)) if arch_string(x) != y), None)
    if bad is not None:                     # our index codec and the file must agree on every row
        raise NB201Error(f"{path}: row {bad} is {archs[bad]}, expected {expected[bad]} (not the NB201 order)")
    archs = expected
    missing = [i for i in range(len(archs)) if i not in infos]
    if missing:
        raise NB201Error(f"not a complete NAS-Bench-201 file: arch2infos has no row {missing[0]} "
                         f"({len(missing)} rows missing)")
    seeds: dict[str, list[int]] = {d: [] for d in DATASETS}
    for i in range(len(archs)):
        per = _get(_get(infos[i], hp, f"arch2infos[{i}]"), "dataset_seed", f"arch2infos[{i}][{hp!r}]")
        for d in DATASETS:
            seeds[d].extend(int(s) for s in per.get(d, []))
    seeds = {d: sorted(set(v)) for d, v in seeds.items()}
    valid = {d: np.full((len(archs), len(seeds[d])), np.nan) for d in DATASETS}
    test = {d: np.full((len(archs), len(seeds[d])), np.nan) for d in DATASETS}
    cols = {d: {c: np.full(len(archs), np.nan) for c in COLUMNS} for d in DATASETS}
    for i in range(len(archs)):
        res = infos[i][hp]
        results = _get(res, "all_results", f"arch2infos[{i}][{hp!r}]")
        for d in DATASETS:
            acc_cols: dict[str, list[float]] = {c: [] for c in COLUMNS}
            for s in res["dataset_seed"].get(d, []):
                rc = results[(d, s)]
                epochs = int(rc["epochs"])
                j = seeds[d].index(int(s))
                evals = rc.get("eval_acc1es") or {}
                valid[d][i, j] = _last(evals, "x-valid", epochs)
                test[d][i, j] = _last(evals, _TEST_SET[d], epochs)
                acc_cols["params"].append(float(rc["params"]))
                acc_cols["flops"].append(float(rc["flop"]))
                lat = rc.get("latency")
                if lat:
                    acc_cols["latency"].append(float(np.mean(lat)) if isinstance(lat, (list, tuple)) else float(lat))
                times = rc.get("train_times")
                if isinstance(times, Mapping) and times:
                    acc_cols["train_time"].append(float(sum(times.values())))
                etimes = rc.get("eval_times") or {}
                per = [v for k, v in etimes.items() if k.startswith("x-valid@")]
                if per:
                    acc_cols["eval_time"].append(float(np.mean(per)))
            for c, vals in acc_cols.items():
                if vals:
                    cols[d][c][i] = float(np.mean(vals))
    return NB201Table(archs, seeds, valid, test, cols, source=str(path), meta={"hp": hp, "file": path.name})


def write_compact(table: NB201Table, path: str | Path) -> Path:
    """The table as one ``.npz`` of numeric arrays and strings (no pickle)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"archs": np.array(table.archs)}
    for d in table.datasets:
        arrays[f"{d}/seeds"] = np.array(table.seeds[d], dtype=np.int64)
        arrays[f"{d}/valid"] = table.valid[d]
        arrays[f"{d}/test"] = table.test[d]
        for c in COLUMNS:
            arrays[f"{d}/{c}"] = table.columns[d][c]
    meta = {**table.meta, "source": table.source, "standin": table.standin, "format": "normlab-nb201-v1"}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def read_compact(path: str | Path) -> NB201Table:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise NB201Error(f"cannot read {path} as a normlab NB201 table (.npz): {exc}") from None
    if "archs" not in data or "meta" not in data:
        raise NB201Error(f"{path} is not a normlab NB201 table: no 'archs'/'meta' arrays")
    meta = json.loads(str(data["meta"]))
    archs = [str(a) for a in data["archs"]]
    ds = [d for d in DATASETS if f"{d}/valid" in data]
    return NB201Table(archs, {d: [int(s) for s in data[f"{d}/seeds"]] for d in ds},
                      {d: data[f"{d}/valid"] for d in ds}, {d: data[f"{d}/test"] for d in ds},
                      {d: {c: data[f"{d}/{c}"] for c in COLUMNS} for d in ds},
                      source=meta.get("source", str(path)), standin=bool(meta.get("standin")), meta=meta)


@lru_cache(maxsize=4)
def _load_cached(source: str, mtime: float) -> NB201Table:
    if source.startswith("standin"):
        _, _, seed = source.partition(":")
        return synthetic_table(int(seed) if seed.isdigit() else 0)
    path = Path(source)
    return read_official(path) if path.suffix == ".pth" else read_compact(path)


def load_table(source: str | Path | None = None) -> NB201Table:
    """The table from ``source``: a ``.pth`` (the benchmark's file), a ``.npz`` (ours), ``standin``
    (``standin:SEED``) for the synthetic stand-in, or None for the default place. Cached."""
    if source is None:
        source = default_table_path()
    s = str(source)
    if s.startswith("standin"):
        return _load_cached(s, 0.0)
    p = Path(s).expanduser()
    if not p.is_file():
        raise _missing(str(p))
    return _load_cached(str(p.resolve()), p.stat().st_mtime)


# -- the synthetic stand-in --------------------------------------------------------------------

def _paths_ops(ops: tuple[str, ...]) -> tuple[bool, int, int]:
    """Whether node 3 is reachable from node 0 through non-none edges, and the most 3x3 and 1x1
    convs on one such path."""
    from ...models.nb201 import EDGES

    best: dict[int, tuple[int, int] | None] = {0: (0, 0), 1: None, 2: None, 3: None}
    for (to, src), op in zip(EDGES, ops):
        if op == "none" or best[src] is None:
            continue
        k3, k1 = best[src]
        cand = (k3 + (op == "nor_conv_3x3"), k1 + (op == "nor_conv_1x1"))
        if best[to] is None or cand > best[to]:
            best[to] = cand
    return best[3] is not None, *(best[3] or (0, 0))


def synthetic_table(seed: int = 0, n_inconsistent: int = 150) -> NB201Table:
    """A deterministic STAND-IN with the real table's shape: params and FLOPs from the
    construction (the table's units), accuracies from a made-up formula (disconnected cells at
    chance; more convolutions on the input-output path and in the cell help, with noise per cell
    and per seed), training time proportional to FLOPs. ``n_inconsistent`` cells get their
    params shifted by exactly one conv's parameters (as the issue reports for the real table),
    so the inconsistency finder has something to find. Not evidence of anything."""
    from ...models.nb201 import parse_arch

    rng = np.random.default_rng(seed)
    archs = all_archs()
    feats = np.array([(*_paths_ops(parse_arch(a)), *op_counts(a), parse_arch(a).count("skip_connect"))
                      for a in archs], dtype=float)
    connected, p3, p1, n1, n3, nskip = feats.T
    base = 60 + 5.0 * p3 + 2.0 * p1 + 1.2 * n3 + 0.5 * n1 + 1.0 * (nskip > 0) + rng.normal(0, 1.2, len(archs))
    seeds = [777, 888, 999]
    valid, test, cols = {}, {}, {}
    for d, (chance, scale) in {"cifar10-valid": (10.0, 1.0), "cifar100": (1.0, 0.75),
                               "ImageNet16-120": (0.83, 0.5)}.items():
        ceiling = 100 - 100 * (1 - scale) * 0.6
        mean = np.where(connected > 0, np.minimum(base * scale + (ceiling - 95 * scale) * 0.3, ceiling - 1), chance)
        noise_v = rng.normal(0, 0.35, (len(archs), 3))
        noise_t = rng.normal(0, 0.35, (len(archs), 3))
        v, t = mean[:, None] + noise_v, mean[:, None] - 0.5 + noise_t
        missing = rng.random((len(archs), 3)) < np.array([0.0, 0.3, 0.5])   # some cells have 1-2 seeds
        v[missing], t[missing] = np.nan, np.nan
        valid[d], test[d] = np.clip(v, 0, 100), np.clip(t, 0, 100)
        classes, size = CLASSES[d], {"cifar10-valid": 32, "cifar100": 32, "ImageNet16-120": 16}[d]
        # both counts depend on the cell only through its numbers of 1x1 and 3x3 convs
        counts = [op_counts(a) for a in archs]
        p_of = {k: analytic_params(("nor_conv_1x1",) * k[0] + ("nor_conv_3x3",) * k[1] + ("none",) * (6 - sum(k)),
                                   num_classes=classes) for k in set(counts)}
        f_of = {k: analytic_flops(("nor_conv_1x1",) * k[0] + ("nor_conv_3x3",) * k[1] + ("none",) * (6 - sum(k)),
                                  num_classes=classes, image_size=size) for k in set(counts)}
        params = np.array([p_of[k] for k in counts], dtype=float) / 1e6
        flops = np.array([f_of[k] for k in counts], dtype=float) / 2e6
        cols[d] = {"params": params, "flops": flops, "latency": 0.004 + flops * 2e-5 + rng.normal(0, 5e-4, len(archs)),
                   "train_time": 200 * (8 + flops * 0.08) * (1 + rng.normal(0, 0.02, len(archs))),
                   "eval_time": 1.0 + flops * 0.005}
    # the real table's ~1% of cells whose params differ from the construction by one conv
    picked = rng.choice(len(archs), n_inconsistent, replace=False)
    for k, i in enumerate(picked):
        c = [16, 32, 64][k % 3]
        shift = (9 * c * c + 2 * c) if k % 2 == 0 else (c * c + 2 * c)
        sign = 1 if k % 4 < 2 else -1
        for d in cols:
            cols[d]["params"][i] += sign * shift / 1e6
    return NB201Table(archs, {d: seeds for d in valid}, valid, test, cols, source="standin:%d" % seed,
                      standin=True, meta={"standin": True, "seed": seed, "inconsistent_rows": sorted(int(i) for i in picked)})


# -- the table against the construction --------------------------------------------------------

def _one_conv_reasons(C: int = 16) -> dict[int, str]:
    """Parameter counts of one conv (with and without its bn) anywhere in the network, named."""
    out: dict[int, str] = {}
    for c in (C, 2 * C, 4 * C):
        for k, name in ((3, "nor_conv_3x3"), (1, "nor_conv_1x1")):
            out.setdefault(k * k * c * c + 2 * c, f"one {name} edge at {c} channels (conv {k * k * c * c} + bn {2 * c})")
            out.setdefault(k * k * c * c, f"one {k}x{k} conv at {c} channels without its bn ({k * k * c * c})")
    return out


def inconsistent_params(table: NB201Table, dataset: str = "cifar10-valid", C: int = 16, N: int = 5) -> list[dict[str, Any]]:
    """Cells whose table parameter count differs from ``analytic_params`` (the construction),
    each with the difference and, where it is exactly one conv's parameters, that reason."""
    table.check_dataset(dataset)
    reasons = _one_conv_reasons(C)
    params = table.column(dataset, "params")
    out = []
    for i, a in enumerate(table.archs):
        want = analytic_params(a, C=C, N=N, num_classes=CLASSES[dataset])
        got = int(round(params[i] * 1e6))
        if got != want:
            diff = got - want
            why = reasons.get(abs(diff))
            out.append({"index": i, "arch": a, "table": got, "construction": want, "difference": diff,
                        "reason": (f"the table counts {'one more' if diff > 0 else 'one fewer'}: {why}" if why
                                   else "unexplained (not one conv's parameters)")})
    return out
