"""The batch-size report: reads the store, never writes it.

Per configuration (trials whose settings differ other than along model/norm/batch size/seed are
never pooled: each distinct configuration gets its own tables, titled with the settings that
differ), per model: top-1 per norm x batch size as mean ± 95% interval with n, the best norm at
each batch size, each norm's drop from its largest to its smallest batch; a plot (PNG, SVG), an
HTML page and markdown.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report import ReportTable, Stat, describe, html_page, html_table, markdown_table, pyplot, save_figure
from ..report.stats import ALPHA, MARGIN, Comparison, Family, best_claim, best_text, paired

__all__ = ["Summary", "Cell", "summarize", "write_report", "markdown", "tables", "compare", "verdicts",
           "Decided", "MARGIN", "tuning_table", "auto_picks", "layer_shapes"]

PAPER_BN_DROP = "9.6 on ImageNet ResNet-50, batch 32 -> 2 (BGN paper)"

# Description fields that are the study's axes (or follow from them): never a configuration.
_AXES = {"model", "norm", "batch_size", "seed", "train.seed", "train.batch_size",
         "train.norm_batch_size", "train.lr", "tune.norm", "tune.val_fraction"}


@dataclass
class Cell:
    accs: list[float] = field(default_factory=list)
    diverged: int = 0
    failed: int = 0
    seeds: list[int] = field(default_factory=list)       # the seed of each accuracy, for pairing
    vals: list[float] = field(default_factory=list)      # validation accuracies (tuning trials)
    note: str = ""                                       # e.g. the G a tuned cell chose
    val_seeds: list[int] = field(default_factory=list)   # the seed of each validation accuracy

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.accs))

    def val_by_seed(self) -> dict[int, float]:
        return dict(zip(self.val_seeds, self.vals))

    @property
    def stat(self) -> Stat:
        return describe(self.accs)

    @property
    def mean(self) -> float:
        return self.stat.mean

    def text(self) -> str:
        if not self.accs:
            return "diverged" if self.diverged else ("failed" if self.failed else "-")
        extra = f" ({self.diverged} div.)" if self.diverged else ""
        return self.stat.text() + extra + (f" {self.note}" if self.note else "")


@dataclass
class Summary:
    """Top-1 accuracy (final test accuracy) per (model, norm, batch size), over seeds, for one
    configuration of one experiment."""

    experiment: str
    dataset: str
    batch_mode: str
    batch_sizes: list[int]
    groups: dict[str, dict[str, dict[int, Cell]]]      # model -> norm -> batch size -> cell
    pending: int = 0
    config: dict[str, Any] = field(default_factory=dict)   # settings that differ between configurations
    shared: set[str] = field(default_factory=set)       # norms trained once per seed (no batch statistics)
    tuning: dict[str, dict[str, dict[int, dict[str, Cell]]]] = field(default_factory=dict)
    # model -> tuned norm -> batch size -> grid norm -> cell (val accs in .vals, test accs in .accs)
    margin: float = MARGIN                              # points: smaller differences do not matter
    alpha: float = ALPHA
    descriptions: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # model -> batch size -> one trial's description (what the auto rule's picks are computed from)
    _shapes: dict = field(default_factory=dict, repr=False, compare=False)   # model -> BGN layer shapes
    _picks: dict = field(default_factory=dict, repr=False, compare=False)    # (model, rule) -> picks
    _decided: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

    def best(self, model: str) -> dict[int, str]:
        """The norm with the highest mean at each batch size (a description, not a verdict: the
        verdict, best or tied, is :meth:`decide`'s)."""
        out = {}
        for b in self.batch_sizes:
            cands = [(c.mean, n) for n, row in self.groups[model].items()
                     if (c := row.get(b)) is not None and c.accs]
            if cands:
                out[b] = max(cands)[1]
        return out

    def drop(self, model: str) -> dict[str, float]:
        """Accuracy at the largest batch size minus at the smallest, in points, per norm."""
        out = {}
        for norm, row in self.groups[model].items():
            sizes = [b for b in sorted(row) if row[b].accs]
            if len(sizes) >= 2:
                out[norm] = 100 * (row[sizes[-1]].mean - row[sizes[0]].mean)
        return out

    def decide(self, model: str) -> "Decided":
        """Every claim this report states about ``model``, decided as one family
        (:class:`normlab.report.stats.Family`, margin ``self.margin`` points)."""
        key = (model, self.margin, self.alpha)
        if key not in self._decided:
            self._decided[key] = _decide(self, model)
        return self._decided[key]

    def table(self, model: str) -> ReportTable:
        decided = self.decide(model)
        drop = self.drop(model)
        title = f"{self.experiment}: {model} on {self.dataset}"
        if self.config:
            title += f" [{self.label}]"
        out = ReportTable(title, ["norm", *[f"b={b}" for b in self.batch_sizes], "drop"],
                          note=f"top-1 %, mean ± 95% interval over seeds (n = seeds); batch = "
                               f"{self.batch_mode}; drop = largest batch minus smallest, points; "
                               f"best = the top norm when it beats the runner-up under the report's "
                               f"rule (see the verdicts), else the norms tied with it"
                               + (f"; {', '.join(sorted(self.shared))}: no batch statistics, so each "
                                  f"seed trained once and is shown at every batch size"
                                  if self.shared else ""))
        for norm, row in self.groups[model].items():
            cells = [row[b].text() if b in row else "-" for b in self.batch_sizes]
            d = drop.get(norm)
            out.add([norm, *cells, f"{d:+.1f}" if d is not None else "-"],
                    emphasise=[1 + i for i, b in enumerate(self.batch_sizes)
                               if norm in decided.leaders.get(b, ())])
        out.add(["best", *[decided.best.get(b, "-") for b in self.batch_sizes], ""])
        return out


def _names(text: str) -> list[str]:
    """'best: a' / 'tied: a, b' -> the names."""
    _, _, rest = text.partition(": ")
    return [n.strip() for n in rest.split(", ") if n.strip()] if rest else []


@dataclass
class Decided:
    """The report's family for one model: the verdict sentences, and best-or-tied per batch size."""

    family: Family
    lines: list[str]
    best: dict[int, str]
    leaders: dict[int, list[str]]
    tuned: dict[tuple[str, int], str] = field(default_factory=dict)   # (tuned norm, b) -> best/tied on validation


def compare(a: Cell, b: Cell, claim: str = "", *, direction: int = 1) -> Comparison:
    """``a`` minus ``b`` in points, paired over the seeds both cells have."""
    pa, pb = a.by_seed(), b.by_seed()
    shared = sorted(set(pa) & set(pb))
    return paired([pa[k] for k in shared], [pb[k] for k in shared], claim, direction=direction)


def _decide(summary: "Summary", model: str) -> Decided:
    rows = summary.groups[model]
    family = Family(alpha=summary.alpha, margin=summary.margin)
    claims: list[tuple[int, Any]] = []          # (index in family, how to write it)

    def add(comparison: Comparison, write: Any) -> None:
        claims.append((family.add(comparison), write))

    bn = rows.get("bn")
    sizes = sorted(b for b in summary.batch_sizes if bn and b in bn and bn[b].accs) if bn else []
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        add(compare(bn[large], bn[small], f"BN at b={large} above b={small}"),
            lambda v, s=small, l=large: (f"BN's drop from b={l} to b={s}: {v.comparison.diff:+.1f} points (the "
                                         f"table's drop column: positive = worse at b={s}; paper: "
                                         f"{PAPER_BN_DROP}); the claim that BN degrades at small batch "
                                         f"{v.text(predicate=True)}."))
        if large >= 128 and len(sizes) >= 3:
            mid = max(b for b in sizes if b < large)
            add(compare(bn[large], bn[mid], f"BN at b={large} below b={mid}", direction=-1),
                lambda v, m=mid, l=large: (f"BN at b={l} against b={m}: the claim that BN saturates "
                                           f"(is worse) at very large batch {v.text(predicate=True)}."))
    bgns = [n for n in rows if n.startswith("bgn")]
    if bn and sizes:
        small = sizes[0]
        for n in bgns:
            if small in rows[n] and rows[n][small].accs:
                add(compare(rows[n][small], bn[small], f"{n} above BN at b={small}"),
                    lambda v, n=n, s=small: f"{n} against BN at b={s}: the claim that BGN beats BN at "
                                            f"small batch {v.text(predicate=True)}.")
    best: dict[int, str] = {}
    leaders: dict[int, list[str]] = {}
    pending_best = []
    for b in summary.batch_sizes:
        values = {n: row[b].by_seed() for n, row in rows.items() if b in row and row[b].accs}
        order, c = best_claim(values, f"b={b}")
        if c is None:
            if order:
                best[b], leaders[b] = f"best: {order[0]} (alone)", order[:1]
            continue
        i = family.add(c)
        pending_best.append((b, i, order, values))
    sweep = [n for n in bgns if "groups=" in n and n.split("groups=")[1].split(",")[0].isdigit()]
    pending_sweep = []
    if len(sweep) >= 2:
        for b in summary.batch_sizes:
            values = {n: rows[n][b].by_seed() for n in sweep if b in rows[n] and rows[n][b].accs}
            order, c = best_claim(values, f"b={b} (BGN group count)")
            if c is None:
                continue
            same = next((i for bb, i, o, _ in pending_best if bb == b and o[:2] == order[:2]), None)
            pending_sweep.append((b, family.add(c) if same is None else same, order, values))
    pending_tune = []
    for tuned, by_size in summary.tuning.get(model, {}).items():
        for b in summary.batch_sizes:
            values = {n: c.val_by_seed() for n, c in by_size.get(b, {}).items() if c.vals}
            order, c = best_claim(values, f"b={b} ({tuned}, validation)")
            if c is not None:
                pending_tune.append((tuned, b, family.add(c), order, values))
    verdicts = family.decide()
    lines = [write(verdicts[i]) for i, write in claims]
    tuned_best: dict[tuple[str, int], str] = {}
    for b, i, order, values in pending_best:
        text = best_text(order, verdicts[i], values)
        best[b], leaders[b] = text, _names(text)
        cell = rows[order[0]][b]
        lost = (f" ({cell.diverged} of {cell.diverged + len(cell.accs)} seeds of {order[0]} diverged; its "
                f"mean is of the rest)" if cell.diverged else "")
        lines.append(f"b={b}: {text} ({order[0]} against the runner-up {order[1]}: "
                     f"{verdicts[i].text()}){lost}.")
    for b, i, order, values in pending_sweep:
        text = best_text(order, verdicts[i], values)
        spread = [100 * statistics.fmean(v.values()) for v in values.values()]
        lines.append(f"b={b}, BGN group count: {text} (top against runner-up: {verdicts[i].text()}); "
                     f"the G sweep's means span {max(spread) - min(spread):.1f} points (sensitivity to G).")
    for tuned, b, i, order, values in pending_tune:
        text = best_text(order, verdicts[i], values)
        tuned_best[(tuned, b)] = text
        lines.append(f"b={b}, {tuned}'s G on validation: {text} (top against runner-up: {verdicts[i].text()}); "
                     f"{_auto_against(summary, model, tuned, b, _names(text))}.")
    if family.size:
        lines.append(family.describe())
    return Decided(family, lines, best, leaders, tuned_best)


AUTO = "bgn:groups=auto"            # the auto rule at its defaults (today's rule)


def _g(entry: str) -> str:
    """'bgn:groups=4' -> '4', 'bgn:groups=auto,ref_batch=8' -> 'auto,ref_batch=8'."""
    return entry.partition("groups=")[2] or entry


def _rules(grid: Any) -> list[str]:
    """The auto rules to show picks for: the default rule, then every auto entry of the grid."""
    return [AUTO, *(n for n in grid if _g(n).startswith("auto") and n != AUTO)]


def layer_shapes(description: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(C, S, how many layers) of every BGN layer of a trial's network, S = prod(spatial dims) of
    its input, in the order the forward meets them: one shape-only forward on the meta device
    (nothing allocated, no data read: the dataset's facts only). ValueError when the dataset's
    facts are unknown without reading it (an image folder)."""
    import torch

    from ..data import check_dataset
    from ..data.downloads import FACTS, known_info
    from ..layers import BatchGroupNorm
    from ..models import create_model

    name = str(description.get("dataset", "")).partition(":")[0].lower()
    info = known_info(name) if name in FACTS else None
    if info is None:
        if name == "imagefolder":
            raise ValueError("an image folder's shapes need its images")
        info = check_dataset(description["dataset"])
    shapes: dict[tuple[int, int], int] = {}

    def hook(module, args):
        x = args[0]
        key = (int(x.shape[1]), int(x[0].numel() // x.shape[1]))
        shapes[key] = shapes.get(key, 0) + 1

    with torch.device("meta"):
        net = create_model(description["model"], norm="bgn:groups=1", act=description.get("act", "relu"),
                           in_channels=info.in_channels, num_classes=info.num_classes,
                           width=description.get("width", 1.0), **description.get("model_options", {}))
        for m in net.modules():
            if isinstance(m, BatchGroupNorm):
                m.register_forward_pre_hook(hook)
        net.train()
        net(torch.empty(2, info.in_channels, *info.image_size))
    return [(c, sp, k) for (c, sp), k in shapes.items()]


def auto_picks(summary: Summary, model: str, rule: str = AUTO) -> dict[tuple[int, int, int], dict[int, int]] | None:
    """What the auto ``rule`` (a bgn spec with groups=auto) picks at each batch size for every
    BGN layer shape (C, S, count) of ``model`` in this summary's trials; None when the shapes
    cannot be known (unknown model or data shape)."""
    from ..layers import create_norm

    if (model, rule) in summary._picks:
        return summary._picks[(model, rule)]
    by_size = summary.descriptions.get(model, {})
    out: dict[tuple[int, int, int], dict[int, int]] | None = None
    shapes = summary._shapes.get(model)
    if shapes is None and by_size:
        try:
            shapes = summary._shapes[model] = layer_shapes(next(iter(by_size.values())))
        except (ValueError, KeyError, TypeError, OSError, RuntimeError, NotImplementedError):
            shapes = summary._shapes[model] = []      # shapes unknown: no picks shown, the rest still is
    if shapes:
        out = {}
        for c, sp, k in shapes:
            layer = create_norm(rule, c)
            out[(c, sp, k)] = {b: layer.auto_groups(_norm_batch(d), sp) for b, d in sorted(by_size.items())}
    summary._picks[(model, rule)] = out
    return out


def _norm_batch(description: dict[str, Any]) -> int:
    train = description.get("train", {})
    return int(train.get("norm_batch_size") or train.get("batch_size") or description["batch_size"])


def _auto_against(summary: Summary, model: str, tuned: str, b: int, leaders: list[str]) -> str:
    """How the auto rule compares with the validated leaders at batch size ``b``: directly when
    the grid has the rule as an entry, else through the uniform G's it picks at some width."""
    grid = summary.tuning[model][tuned].get(b, {})
    picks = auto_picks(summary, model)
    per_width = ("auto picks G = " + ", ".join(str(p[b]) for p in picks.values()) + " at C = "
                 + ", ".join(str(c) for c, _, _ in picks) if picks else "auto's picks unknown (layer shapes unknown)")
    if AUTO in grid:
        where = "among the leaders" if AUTO in leaders else "behind the top"
        return f"{per_width} (the rule itself, entry 'auto', is {where})"
    if not picks:
        return per_width
    used = sorted({p[b] for p in picks.values()})
    parts = [f"G={g} " + ("among the leaders" if f"bgn:groups={g}" in leaders else
                          "behind the top" if f"bgn:groups={g}" in grid else "not in the grid") for g in used]
    return f"{per_width} (as one G for every layer: {'; '.join(parts)})"


def verdicts(summary: "Summary", model: str) -> list[str]:
    """Plain sentences, one per claim of the BGN paper measured on this data, each decided under
    the report's one family (:meth:`Summary.decide`), and what the family was."""
    return summary.decide(model).lines


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = repr(value) if isinstance(value, list) else value


def _chosen(grid: dict[str, Cell]) -> Cell:
    """A tuned norm's cell at one batch size: the grid entry with the best mean validation
    accuracy over its seeds (ties: the first in grid order), reported by its test accuracies."""
    done = {n: c for n, c in grid.items() if c.vals}
    if not done:
        failed = Cell(diverged=sum(c.diverged for c in grid.values()), failed=sum(c.failed for c in grid.values()))
        return failed
    best = max(done, key=lambda n: statistics.fmean(done[n].vals))
    c = done[best]
    return Cell(list(c.accs), c.diverged, c.failed, list(c.seeds), list(c.vals),
                note=f"[{best.partition(':')[2]}]")


def summarize(rows: list[dict[str, Any]], experiment: str | None = None, *,
              margin: float = MARGIN) -> list[Summary]:
    """One Summary per configuration found in ``rows`` (one when every trial shares its
    settings), in first-seen order; its verdicts use equivalence ``margin`` (points)."""
    flats = []
    for r in rows:
        f: dict[str, Any] = {}
        _flat("", r["description"], f)
        flats.append(f)
    keys = sorted({k for f in flats for k in f} - _AXES)
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    buckets: dict[tuple, list[dict[str, Any]]] = {}
    for r, f in zip(rows, flats):
        buckets.setdefault(tuple(repr(f.get(k)) for k in varying), []).append((r, f))
    out = []
    for members in buckets.values():
        config = {k: members[0][1].get(k) for k in varying}
        groups: dict[str, dict[str, dict[int, Cell]]] = {}
        sizes: set[int] = set()
        pending = 0
        shared: set[str] = set()
        dataset = mode = ""
        tuning: dict[str, dict[str, dict[int, dict[str, Cell]]]] = {}
        descriptions: dict[str, dict[int, dict[str, Any]]] = {}
        for r, _ in members:
            d = r["description"]
            dataset, mode = d.get("dataset", ""), d.get("batch_mode", "both")
            sizes.add(d["batch_size"])
            descriptions.setdefault(d["model"], {}).setdefault(d["batch_size"], d)
            if isinstance(d.get("tune"), dict):        # a validation trial of a tuned norm
                tuned = str(d["tune"].get("norm", "tuned"))
                groups.setdefault(d["model"], {}).setdefault(tuned, {})
                cell = (tuning.setdefault(d["model"], {}).setdefault(tuned, {}).setdefault(d["batch_size"], {})
                        .setdefault(d["norm"], Cell()))
                val = r["metrics"].get("val_acc")
                if r["status"] == "ok" and isinstance(val, (int, float)) and math.isfinite(val):
                    cell.vals.append(val)
                    cell.val_seeds.append(d.get("seed", len(cell.val_seeds)))
            else:
                cell = groups.setdefault(d["model"], {}).setdefault(d["norm"], {}).setdefault(d["batch_size"], Cell())
            acc = r["metrics"].get("test_acc")
            if "same_run_as" in r["metrics"]:
                shared.add(d["norm"])
            if r["status"] == "ok" and isinstance(acc, (int, float)) and math.isfinite(acc):
                cell.accs.append(acc)
                cell.seeds.append(d.get("seed", len(cell.seeds)))
            elif r["status"] == "diverged":
                cell.diverged += 1
            elif r["status"] == "failed":
                cell.failed += 1
            else:
                pending += 1
        for model, per in tuning.items():
            for tuned, by_size in per.items():
                for b, grid in by_size.items():
                    groups[model][tuned][b] = _chosen(grid)
        name = experiment or (members[0][0].get("experiment") or "-")
        out.append(Summary(name, dataset, mode, sorted(sizes), groups, pending, config, shared, tuning,
                           float(margin), descriptions=descriptions))
    return out


def _entry_order(name: str) -> tuple:
    """Grid order: the group counts by value, then the auto rules."""
    g = _g(name)
    return (0, int(g), "") if g.isdigit() else (1, 0, g)


def tuning_table(summary: Summary, model: str) -> ReportTable | None:
    """Validation accuracy of every grid entry of each tuned norm at each batch size (mean over
    seeds; the chosen entry emphasised), which entries win there (best or tied, decided in the
    report's family), and what the auto rule picks for each layer width at that batch: the
    evidence on which G suits which batch size, and how the auto rule stands against it."""
    per = summary.tuning.get(model)
    if not per:
        return None
    decided = summary.decide(model)
    out = None
    for tuned, by_size in per.items():
        entries = sorted({n for grid in by_size.values() for n in grid}, key=_entry_order)
        out = ReportTable(f"{tuned}: validation accuracy per group count ({model})",
                          ["grid", *[f"b={b}" for b in summary.batch_sizes]],
                          note="top-1 % on the held-out validation split, mean ± 95% interval over seeds; "
                               "bold: chosen (the test set never chooses); the table above shows the "
                               "chosen G's test accuracy. 'validated': best, or the entries tied with the "
                               "top, under the report's family (see the verdicts). A grid entry G is one "
                               "G for every layer; the auto rule picks per layer, so the evidence is per "
                               "batch size, and per layer width only through the rows 'picks' (C "
                               "channels, S = positions per channel of the layer's input)")
        for n in entries:
            cells, bold = [], []
            for i, b in enumerate(summary.batch_sizes):
                c = by_size.get(b, {}).get(n)
                cells.append(describe(c.vals).text() if c and c.vals else "-")
                chosen = summary.groups[model][tuned].get(b)
                if chosen is not None and chosen.note == f"[{n.partition(':')[2]}]":
                    bold.append(1 + i)
            out.add([n, *cells], emphasise=bold)
        won = [decided.tuned.get((tuned, b), "-") for b in summary.batch_sizes]
        out.add(["validated", *[w.partition(": ")[0] + ": " + ", ".join(_g(x) for x in _names(w))
                                if ": " in w else w for w in won]])
        for rule in _rules(entries):
            picks = auto_picks(summary, model, rule)
            for (c, sp, k), at in (picks or {}).items():
                out.add([f"{_g(rule)} picks, C={c} S={sp} ({k} layer{'s' if k > 1 else ''})",
                         *[f"G={at[b]}" if b in at else "-" for b in summary.batch_sizes]])
    return out


def tables(summaries: list[Summary]) -> list[ReportTable]:
    out = []
    for s in summaries:
        for model in s.groups:
            out.append(s.table(model))
            t = tuning_table(s, model)
            if t is not None:
                out.append(t)
    return out


def markdown(summaries: list[Summary]) -> str:
    parts = []
    if len(summaries) > 1:
        parts.append("Trials of different configurations are reported separately; they differ in: "
                     + ", ".join(summaries[0].config) + "\n")
    for s in summaries:
        for model in s.groups:
            parts.append(markdown_table(s.table(model)))
            parts += [f"- {v}" for v in verdicts(s, model)]
            t = tuning_table(s, model)
            if t is not None:
                parts += ["", markdown_table(t)]
            parts.append("")
    return "\n".join(parts)


def plot(summaries: list[Summary], stem: Path) -> list[Path]:
    """Accuracy against batch size (log2 axis), one line per norm with 95% interval bars; one
    panel per (configuration, model)."""
    plt = pyplot()
    panels = [(s, m) for s in summaries for m in s.groups]
    cols = min(3, max(1, len(panels)))
    rows = math.ceil(max(1, len(panels)) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.5 * rows), squeeze=False)
    for ax, (s, model) in zip(axes.flat, panels):
        for i, (norm, row) in enumerate(s.groups[model].items()):
            sizes = [b for b in sorted(row) if row[b].accs]
            if not sizes:
                continue
            err = [100 * row[b].stat.half_width if row[b].stat.n > 1 else 0.0 for b in sizes]
            ax.errorbar(sizes, [100 * row[b].mean for b in sizes], yerr=err, marker="o", capsize=3,
                        label=norm, color=f"C{i % 10}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(s.batch_sizes)
        ax.set_xticklabels([str(b) for b in s.batch_sizes])
        ax.set_xlabel(f"batch size ({s.batch_mode})")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{model} on {s.dataset}" + (f"\n{s.label}" if s.config else ""), fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return save_figure(fig, stem)


def write_report(summaries: list[Summary] | Summary, out_dir: str | Path) -> dict[str, Path]:
    """Writes accuracy.png, accuracy.svg, report.html and report.md into ``out_dir``."""
    if isinstance(summaries, Summary):
        summaries = [summaries]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, svg = plot(summaries, out / "accuracy")
    md = markdown(summaries)
    (out / "report.md").write_text(md)
    name = summaries[0].experiment if summaries else "-"
    intro = ("Top-1 test accuracy (%), mean ± 95% interval over seeds with n; the best norm per batch "
             "size highlighted when it beats the runner-up under the report's rule, else the norms tied "
             "for best; \"drop\" is the accuracy at the largest batch size minus at the smallest.")
    if len(summaries) > 1:
        intro += (" Trials of different configurations are reported separately; they differ in: "
                  + ", ".join(summaries[0].config) + ".")
    import html as _html

    sections = []
    for s in summaries:
        for model in s.groups:
            sections.append(html_table(s.table(model)))
            found = verdicts(s, model)
            if found:
                sections.append("<ul>" + "".join(f"<li>{_html.escape(v)}</li>" for v in found) + "</ul>")
            t = tuning_table(s, model)
            if t is not None:
                sections.append(html_table(t))
    page = html_page(f"normlab report: {name}", sections,
                     [("Accuracy against batch size", png)], intro=intro, markdown=md)
    (out / "report.html").write_text(page)
    return {"png": png, "svg": svg, "html": out / "report.html", "markdown": out / "report.md"}
