"""The self-contained HTML page: tables and figures embedded, opens with no server."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from .tables import ReportTable

__all__ = ["html_table", "html_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { background: #e4f5e4; font-weight: bold; }
caption { caption-side: bottom; font-style: italic; text-align: left; padding-top: .4em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def html_table(table: ReportTable) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for r, row in enumerate(table.rows):
        cells = "".join(f"<td class='{'best' if (r, j) in table.emphasis else ''}'>{html.escape(c)}</td>"
                        for j, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    caption = f"<caption>{html.escape(table.note)}</caption>" if table.note else ""
    return (f"<h2>{html.escape(table.title)}</h2><table>{caption}<tr>{head}</tr>"
            f"{''.join(body)}</table>")


def html_page(title: str, sections: Sequence[str], figures: Sequence[tuple[str, Path]] = (),
              intro: str = "", markdown: str | None = None) -> str:
    """A page: intro paragraph, sections (HTML fragments), figures (caption, PNG path; an SVG
    beside it is embedded too), and the markdown version for copy-paste."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{intro}</p>")
    parts.extend(sections)
    for caption, png in figures:
        img = base64.b64encode(Path(png).read_bytes()).decode()
        parts.append(f"<h2>{html.escape(caption)}</h2>"
                     f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{img}' style='max-width:100%'>")
        svg = Path(png).with_suffix(".svg")
        if svg.exists():
            parts.append(f"<details><summary>SVG</summary>{svg.read_text()}</details>")
    if markdown is not None:
        parts.append(f"<h2>Markdown</h2><pre>{html.escape(markdown)}</pre>")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>")
