"""The batch-size report: reads the store, never writes it.

Per configuration (trials whose settings differ other than along model/norm/batch size/seed are
never pooled: each distinct configuration gets its own tables, titled with the settings that
differ), per model: top-1 per norm x batch size as mean ± 95% interval with n, the best norm at
each batch size, each norm's drop from its largest to its smallest batch; a plot (PNG, SVG), an
HTML page and markdown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report import ReportTable, Stat, describe, html_page, html_table, markdown_table, pyplot, save_figure

__all__ = ["Summary", "Cell", "summarize", "write_report", "markdown", "tables", "compare", "verdicts",
           "Comparison"]

ALPHA = 0.05
PAPER_BN_DROP = "9.6 on ImageNet ResNet-50, batch 32 -> 2 (BGN paper)"

# Description fields that are the study's axes (or follow from them): never a configuration.
_AXES = {"model", "norm", "batch_size", "seed", "train.seed", "train.batch_size",
         "train.norm_batch_size", "train.lr"}


@dataclass
class Cell:
    accs: list[float] = field(default_factory=list)
    diverged: int = 0
    failed: int = 0
    seeds: list[int] = field(default_factory=list)       # the seed of each accuracy, for pairing

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.accs))

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
        return self.stat.text() + extra


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

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

    def best(self, model: str) -> dict[int, str]:
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

    def table(self, model: str) -> ReportTable:
        best = self.best(model)
        drop = self.drop(model)
        title = f"{self.experiment}: {model} on {self.dataset}"
        if self.config:
            title += f" [{self.label}]"
        out = ReportTable(title, ["norm", *[f"b={b}" for b in self.batch_sizes], "drop"],
                          note=f"top-1 %, mean ± 95% interval over seeds (n = seeds); * = differs from "
                               f"BN at that batch size (paired t-test over seeds, p < {ALPHA}); batch = "
                               f"{self.batch_mode}; drop = largest batch minus smallest, points"
                               + (f"; {', '.join(sorted(self.shared))}: no batch statistics, so each "
                                  f"seed trained once and is shown at every batch size"
                                  if self.shared else ""))
        bn = self.groups[model].get("bn")
        for norm, row in self.groups[model].items():
            cells = []
            for b in self.batch_sizes:
                text = row[b].text() if b in row else "-"
                if norm != "bn" and bn and b in bn and b in row:
                    c = compare(row[b], bn[b])
                    if c is not None and c.significant:
                        text += " *"
                cells.append(text)
            d = drop.get(norm)
            out.add([norm, *cells, f"{d:+.1f}" if d is not None else "-"],
                    emphasise=[1 + i for i, b in enumerate(self.batch_sizes) if best.get(b) == norm])
        out.add(["best", *[best.get(b, "-") for b in self.batch_sizes], ""])
        return out


@dataclass(frozen=True)
class Comparison:
    """a - b in points, paired by seed, with a two-sided paired t-test (None when fewer than
    two shared seeds: no test is possible)."""

    diff: float
    n: int
    p: float | None

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA

    def text(self) -> str:
        if self.p is None:
            return f"{self.diff:+.1f} points (n={self.n}: too few seeds to test)"
        verdict = "significant" if self.significant else "within noise"
        return f"{self.diff:+.1f} points ({verdict}, paired t-test p={self.p:.3f}, n={self.n})"


def compare(a: Cell, b: Cell) -> Comparison | None:
    """Paired comparison of two cells over the seeds both have (a minus b, in points)."""
    pa, pb = a.by_seed(), b.by_seed()
    shared = sorted(set(pa) & set(pb))
    if not shared:
        return None
    xs, ys = [pa[k] for k in shared], [pb[k] for k in shared]
    diff = 100 * sum(x - y for x, y in zip(xs, ys)) / len(shared)
    p = None
    if len(shared) >= 2:
        deltas = [x - y for x, y in zip(xs, ys)]
        if max(deltas) == min(deltas):              # identical differences: no variance to test
            p = 0.0 if deltas[0] != 0 else 1.0
        else:
            from scipy.stats import ttest_rel

            p = float(ttest_rel(xs, ys).pvalue)
    return Comparison(diff, len(shared), p)


def verdicts(summary: "Summary", model: str) -> list[str]:
    """Plain sentences, one per claim of the BGN paper, measured on this data."""
    rows = summary.groups[model]
    out = []
    bn = rows.get("bn")
    sizes = sorted(b for b in summary.batch_sizes if bn and b in bn and bn[b].accs) if bn else []
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        c = compare(bn[large], bn[small])
        if c is not None:
            holds = "holds" if c.significant and c.diff > 0 else "does not hold"
            out.append(f"BN drops {c.diff:.1f} points from b={large} to b={small} "
                       f"(paper: {PAPER_BN_DROP}); {c.text()}: the claim that BN degrades at small "
                       f"batch {holds} here.")
        if large >= 128 and len(sizes) >= 3:
            mid = max(b for b in sizes if b < large)
            c = compare(bn[large], bn[mid])
            if c is not None:
                holds = "holds" if c.significant and c.diff < 0 else "does not hold"
                out.append(f"BN at b={large} against b={mid}: {c.text()}: the claim that BN "
                           f"saturates at very large batch {holds} here.")
    bgns = [n for n in rows if n.startswith("bgn")]
    if bn and bgns and sizes:
        small = sizes[0]
        cands = [(rows[n][small].mean, n) for n in bgns if small in rows[n] and rows[n][small].accs]
        if cands:
            best_bgn = max(cands)[1]
            c = compare(rows[best_bgn][small], bn[small])
            if c is not None:
                if c.significant:
                    word = "is better than" if c.diff > 0 else "is worse than"
                else:
                    word = "is not significantly different from"
                out.append(f"BGN ({best_bgn}) at b={small} {word} BN at b={small}: {c.text()}.")
    for b in summary.batch_sizes:
        best = summary.best(model).get(b)
        if best and bn and b in bn and best != "bn" and bn[b].accs:
            cell = rows[best][b]
            c = compare(cell, bn[b])
            if c is not None:
                lost = (f" ({cell.diverged} of {cell.diverged + len(cell.accs)} seeds diverged; the "
                        f"mean is of the rest)" if cell.diverged else "")
                out.append(f"b={b}: best is {best}, {c.text()} over BN{lost}.")
    sweep = [n for n in bgns if "groups=" in n]
    if len(sweep) >= 2:
        for b in summary.batch_sizes:
            vals = [(rows[n][b].mean, n) for n in sweep if b in rows[n] and rows[n][b].accs]
            if len(vals) >= 2:
                out.append(f"b={b}: best BGN group count {max(vals)[1]}; accuracy over the G sweep spans "
                           f"{100 * (max(vals)[0] - min(vals)[0]):.1f} points (sensitivity to G).")
    return out


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = repr(value) if isinstance(value, list) else value


def summarize(rows: list[dict[str, Any]], experiment: str | None = None) -> list[Summary]:
    """One Summary per configuration found in ``rows`` (one when every trial shares its
    settings), in first-seen order."""
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
        for r, _ in members:
            d = r["description"]
            dataset, mode = d.get("dataset", ""), d.get("batch_mode", "both")
            cell = groups.setdefault(d["model"], {}).setdefault(d["norm"], {}).setdefault(d["batch_size"], Cell())
            sizes.add(d["batch_size"])
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
        name = experiment or (members[0][0].get("experiment") or "-")
        out.append(Summary(name, dataset, mode, sorted(sizes), groups, pending, config, shared))
    return out


def tables(summaries: list[Summary]) -> list[ReportTable]:
    return [s.table(model) for s in summaries for model in s.groups]


def markdown(summaries: list[Summary]) -> str:
    parts = []
    if len(summaries) > 1:
        parts.append("Trials of different configurations are reported separately; they differ in: "
                     + ", ".join(summaries[0].config) + "\n")
    for s in summaries:
        for model in s.groups:
            parts.append(markdown_table(s.table(model)))
            parts += [f"- {v}" for v in verdicts(s, model)]
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
    intro = ("Top-1 test accuracy (%), mean ± 95% interval over seeds with n; best norm per batch "
             "size highlighted; \"drop\" is the accuracy at the largest batch size minus at the smallest.")
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
    page = html_page(f"normlab report: {name}", sections,
                     [("Accuracy against batch size", png)], intro=intro, markdown=md)
    (out / "report.html").write_text(page)
    return {"png": png, "svg": svg, "html": out / "report.html", "markdown": out / "report.md"}
