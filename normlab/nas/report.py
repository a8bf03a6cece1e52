"""The correlation report as pictures and a page: each proxy against stand-alone accuracy
(scatter, with its Kendall tau), tau over supernet epochs (the early-stage claim), and a
self-contained HTML page with the table and the verdict. Built on normlab.report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..report import ReportTable, html_page, html_table, markdown_table
from ..report.figures import pyplot, save_figure

__all__ = ["correlation_table", "write_correlation_report"]

LABELS = {"bn_indicator": "BN indicator", "rebn_acc": "ReBN accuracy", "abs_angle": "ABS angle",
          "params": "#params", "flops": "FLOPs", "synflow": "synflow (log)"}


def correlation_table(report: Mapping[str, Any]) -> ReportTable:
    truth = report.get("truth", "stand-alone accuracy")
    table = ReportTable(f"rank correlation with {truth} (n={report['n']})",
                        ["proxy", "Kendall tau [95% CI]", "Spearman rho [95% CI]", "ms / subnet"],
                        note="bootstrap percentile intervals; higher is better")
    best = max((c.get("kendall", float("-inf")), k) for k, c in report["correlation"].items())[1]
    for key, c in report["correlation"].items():
        ms = 1e3 * report["seconds_per_subnet"].get(key, float("nan"))
        if "kendall" not in c:
            table.add([LABELS.get(key, key), c.get("error", "-"), "", f"{ms:.3g}"])
            continue
        table.add([LABELS.get(key, key), f"{c['kendall']:.3f} [{c['kendall_ci'][0]:.2f}, {c['kendall_ci'][1]:.2f}]",
                   f"{c['spearman']:.3f} [{c['spearman_ci'][0]:.2f}, {c['spearman_ci'][1]:.2f}]", f"{ms:.3g}"],
                  emphasise=[1] if key == best else [])
    c = report.get("noise_ceiling") or {}
    if "kendall" in c:              # the same paths trained with another seed: the most any proxy can show
        table.add(["ground truth, 2nd seed (ceiling)",
                   f"{c['kendall']:.3f} [{c['kendall_ci'][0]:.2f}, {c['kendall_ci'][1]:.2f}]",
                   f"{c['spearman']:.3f} [{c['spearman_ci'][0]:.2f}, {c['spearman_ci'][1]:.2f}]", "-"])
    return table


def write_correlation_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """scatter.png/.svg, early.png/.svg, report.html and report.md in ``out_dir``."""
    plt = pyplot()
    out = Path(out_dir)
    scale = report.get("truth_scale", 100.0)          # the supernet study stores fractions, NB201 percent
    truth = [scale * a for a in report["standalone_acc"]]
    truth_label = report.get("truth_label", "stand-alone test accuracy (%)")
    keys = list(report["proxies"])
    cols = 3
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ax.scatter(report["proxies"][key], truth, s=16, alpha=0.75)
        tau = report["correlation"].get(key, {}).get("kendall")
        ax.set_title(f"{LABELS.get(key, key)}: tau = {tau:.2f}" if tau is not None else LABELS.get(key, key))
        ax.set_xlabel(LABELS.get(key, key))
        ax.set_ylabel(truth_label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    scatter = save_figure(fig, out / "scatter")
    early = None
    if any(report.get("early_stage_tau", {}).values()):     # only the supernet study has epochs
        early = _early_figure(report, out)
    table = correlation_table(report)
    md = markdown_table(table) + f"\n{report['verdict']}\n"
    (out / "report.md").write_text(md)
    figures = [("each proxy against " + truth_label, scatter[0])]
    if early is not None:
        figures.append(("tau over supernet epochs", early))
    page = html_page(report.get("title", "BN-NAS / SPOS / ABS: do the proxies rank like the real accuracy?"),
                     [html_table(table)], figures=figures, intro=str(report["verdict"]), markdown=md)
    (out / "report.html").write_text(page)
    return {"scatter": scatter[0], "early": early, "html": out / "report.html", "markdown": out / "report.md"}


def _early_figure(report: Mapping[str, Any], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for key, taus in report.get("early_stage_tau", {}).items():
        if taus:
            ax.plot(range(1, len(taus) + 1), taus, "o-", label=LABELS.get(key, key))
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_xlabel("supernet epoch")
    ax.set_ylabel("Kendall tau with stand-alone accuracy")
    ax.set_title("the early-stage claim: ranking quality during supernet training")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out / "early")[0]
