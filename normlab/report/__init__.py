"""What every study's and search's output shares: statistics over seeds (n, mean, std, 95%
interval), one table model rendered to Rich, markdown and HTML, matplotlib figures saved as PNG
and SVG, and the self-contained HTML page that embeds them."""

from .figures import save_figure, pyplot
from .html import html_page, html_table
from .stats import Stat, describe
from .tables import ReportTable, markdown_table, rich_table

__all__ = ["Stat", "describe", "ReportTable", "rich_table", "markdown_table", "html_table",
           "html_page", "save_figure", "pyplot"]
