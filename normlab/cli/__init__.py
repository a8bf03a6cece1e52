"""The `normlab` command: one module per sub-command, each thin (parse, build a config, call the
library, print with Rich). User errors end as one line on stderr and exit status 2."""

from __future__ import annotations

import sys

__all__ = ["main", "app"]

try:
    from .app import app
except ImportError:  # pragma: no cover - exercised only without the cli extra
    app = None


def main() -> None:
    if app is None:
        print("error: the normlab command needs the cli extra: pip install 'normlab[cli]'",
              file=sys.stderr)
        sys.exit(2)
    app()
