"""The report: reads the store, never writes it. Table, best norm per batch size, each norm's
drop from its largest to its smallest batch, a plot (PNG and SVG), an HTML page and markdown."""

from __future__ import annotations

import base64
import html
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Summary", "summarize", "write_report", "rich_table", "markdown"]


@dataclass
class Cell:
    accs: list[float] = field(default_factory=list)
    diverged: int = 0
    failed: int = 0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs) if self.accs else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.accs) if len(self.accs) > 1 else 0.0

    def text(self) -> str:
        if not self.accs:
            return "diverged" if self.diverged else ("failed" if self.failed else "-")
        extra = f" ({self.diverged} div.)" if self.diverged else ""
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}{extra}"


@dataclass
class Summary:
    """Top-1 accuracy (final test accuracy) per (model, norm, batch size), over seeds."""

    experiment: str
    dataset: str
    batch_mode: str
    batch_sizes: list[int]
    groups: dict[str, dict[str, dict[int, Cell]]]      # model -> norm -> batch size -> cell
    pending: int = 0

    def best(self, model: str) -> dict[int, str]:
        out = {}
        for b in self.batch_sizes:
            cands = [(c.mean, n) for n, row in self.groups[model].items()
                     if (c := row.get(b)) is not None and c.accs]
            if cands:
                out[b] = max(cands)[1]
        return out

    def table(self, model: str) -> list[tuple[str, list[tuple[str, bool]], float | None]]:
        """What every rendering shows, per norm: (norm, [(cell text, is best)] per batch size,
        drop in points or None). The renderers only format it."""
        best = self.best(model)
        drop = self.drop(model)
        return [(norm, [(row[b].text() if b in row else "-", best.get(b) == norm)
                        for b in self.batch_sizes], drop.get(norm))
                for norm, row in self.groups[model].items()]

    def drop(self, model: str) -> dict[str, float]:
        """Accuracy at the largest batch size minus at the smallest, in points, per norm."""
        out = {}
        for norm, row in self.groups[model].items():
            sizes = [b for b in sorted(row) if row[b].accs]
            if len(sizes) >= 2:
                out[norm] = 100 * (row[sizes[-1]].mean - row[sizes[0]].mean)
        return out


def summarize(rows: list[dict[str, Any]], experiment: str | None = None) -> Summary:
    groups: dict[str, dict[str, dict[int, Cell]]] = {}
    sizes: set[int] = set()
    pending = 0
    dataset = mode = ""
    for r in rows:
        d = r["description"]
        dataset, mode = d["dataset"], d.get("batch_mode", "both")
        cell = groups.setdefault(d["model"], {}).setdefault(d["norm"], {}).setdefault(d["batch_size"], Cell())
        sizes.add(d["batch_size"])
        acc = r["metrics"].get("test_acc")
        if r["status"] == "ok" and acc is not None and math.isfinite(acc):
            cell.accs.append(acc)
        elif r["status"] == "diverged":
            cell.diverged += 1
        elif r["status"] == "failed":
            cell.failed += 1
        else:
            pending += 1
    return Summary(experiment or (rows[0]["experiment"] if rows else "-"), dataset, mode,
                   sorted(sizes), groups, pending)


def rich_table(summary: Summary, model: str):
    from rich.table import Table

    best = summary.best(model)
    table = Table(title=f"{summary.experiment}: {model} on {summary.dataset}, top-1 % "
                        f"(mean ± std over seeds; batch = {summary.batch_mode})")
    table.add_column("norm")
    for b in summary.batch_sizes:
        table.add_column(f"b={b}", justify="right")
    table.add_column("drop", justify="right")
    for norm, cells, d in summary.table(model):
        table.add_row(norm, *[f"[bold green]{t}[/]" if is_best else t for t, is_best in cells],
                      f"{d:+.1f}" if d is not None else "-")
    table.add_row("[italic]best[/]", *[best.get(b, "-") for b in summary.batch_sizes], "")
    return table


def markdown(summary: Summary) -> str:
    lines = []
    for model in summary.groups:
        best = summary.best(model)
        lines.append(f"**{model} on {summary.dataset}** — top-1 % (mean ± std over seeds), "
                     f"batch = {summary.batch_mode}\n")
        lines.append("| norm | " + " | ".join(f"b={b}" for b in summary.batch_sizes) + " | drop |")
        lines.append("|---|" + "---:|" * (len(summary.batch_sizes) + 1))
        for norm, cells, d in summary.table(model):
            texts = [f"**{t}**" if is_best else t for t, is_best in cells]
            lines.append(f"| {norm} | " + " | ".join(texts) + (f" | {d:+.1f} |" if d is not None else " | - |"))
        lines.append("| *best* | " + " | ".join(best.get(b, "-") for b in summary.batch_sizes) + " | |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: Summary, stem: Path) -> list[Path]:
    """Accuracy against batch size (log2 axis), one line per norm with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summary.groups)
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        for i, (norm, row) in enumerate(summary.groups[model].items()):
            sizes = [b for b in sorted(row) if row[b].accs]
            if not sizes:
                continue
            ax.errorbar(sizes, [100 * row[b].mean for b in sizes], yerr=[100 * row[b].std for b in sizes],
                        marker="o", capsize=3, label=norm, color=f"C{i % 10}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(summary.batch_sizes)
        ax.set_xticklabels([str(b) for b in summary.batch_sizes])
        ax.set_xlabel(f"batch size ({summary.batch_mode})")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{model} on {summary.dataset}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _html(summary: Summary, png: Path, svg: Path, md: str) -> str:
    rows_html = []
    for model in summary.groups:
        best = summary.best(model)
        head = "".join(f"<th>b={b}</th>" for b in summary.batch_sizes)
        body = []
        for norm, cells, d in summary.table(model):
            tds = "".join(f"<td class='{'best' if is_best else ''}'>{html.escape(t)}</td>"
                          for t, is_best in cells)
            body.append(f"<tr><th>{html.escape(norm)}</th>{tds}<td>{'' if d is None else f'{d:+.1f}'}</td></tr>")
        body.append("<tr><th><i>best</i></th>" + "".join(
            f"<td>{html.escape(best.get(b, '-'))}</td>" for b in summary.batch_sizes) + "<td></td></tr>")
        rows_html.append(f"<h2>{html.escape(model)} on {html.escape(summary.dataset)}</h2>"
                         f"<table><tr><th>norm</th>{head}<th>drop (pts)</th></tr>{''.join(body)}</table>")
    img = base64.b64encode(png.read_bytes()).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>normlab report: {html.escape(summary.experiment)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child {{ text-align: left; }}
td.best {{ background: #e4f5e4; font-weight: bold; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>normlab report: {html.escape(summary.experiment)}</h1>
<p>Top-1 test accuracy (%), mean ± std over seeds; the batch-size axis varies
<b>{html.escape(summary.batch_mode)}</b>. Best norm per batch size highlighted; "drop" is the
accuracy at the largest batch size minus at the smallest.</p>
{''.join(rows_html)}
<h2>Accuracy against batch size</h2>
<img alt="accuracy against batch size" src="data:image/png;base64,{img}" style="max-width:100%">
<details><summary>SVG</summary>{svg.read_text()}</details>
<h2>Markdown</h2><pre>{html.escape(md)}</pre>
</body></html>"""


def write_report(summary: Summary, out_dir: str | Path) -> dict[str, Path]:
    """Writes accuracy.png, accuracy.svg, report.html and report.md into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, svg = plot(summary, out / "accuracy")
    md = markdown(summary)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(summary, png, svg, md))
    return {"png": png, "svg": svg, "html": out / "report.html", "markdown": out / "report.md"}
