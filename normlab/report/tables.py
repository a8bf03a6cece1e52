"""One table model for every report, rendered to Rich (terminal), markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReportTable", "rich_table", "markdown_table"]


@dataclass
class ReportTable:
    """A titled table: header, rows of cell texts, and which cells to emphasise (row, col)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    emphasis: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""

    def add(self, cells: list[str], emphasise: list[int] = ()) -> None:
        for col in emphasise:
            self.emphasis.add((len(self.rows), col))
        self.rows.append(list(cells))


def rich_table(table: ReportTable):
    from rich.table import Table

    out = Table(title=table.title, caption=table.note or None)
    for i, col in enumerate(table.columns):
        if i == 0:          # the row names (norm specs) are what a reader looks for: never cut
            width = max([len(col)] + [len(str(row[0])) for row in table.rows])
            out.add_column(col, justify="left", no_wrap=True, min_width=width)
        else:
            out.add_column(col, justify="right")
    for r, row in enumerate(table.rows):
        out.add_row(*[f"[bold green]{c}[/]" if (r, j) in table.emphasis else c for j, c in enumerate(row)])
    return out


def markdown_table(table: ReportTable) -> str:
    lines = [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|---|" + "---:|" * (len(table.columns) - 1))
    for r, row in enumerate(table.rows):
        lines.append("| " + " | ".join(f"**{c}**" if (r, j) in table.emphasis else c
                                       for j, c in enumerate(row)) + " |")
    if table.note:
        lines += ["", f"*{table.note}*"]
    return "\n".join(lines) + "\n"
