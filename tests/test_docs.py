"""The documentation builds strictly and its Python examples run.

Every ```python block of README.md and docs/*.md is executed, page by page in one namespace (so a
page's later blocks can use its earlier ones), in a temporary directory. A block that cannot run
here (it downloads data, needs a GPU or a cluster, or trains for minutes) is preceded by an HTML
comment ``<!-- no-run: why -->``; the reason is required. ``pycon`` blocks are shown, not run.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^(?P<marker><!-- no-run(?P<why>[^>]*)-->\n)?```python\n(?P<code>.*?)^```", re.S | re.M)


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, reason-not-run or None) for each python block of a page."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("code"))
        why = None
        if m.group("marker"):
            why = m.group("why").strip(" :")
            assert why, f"{page.name}:{line}: a no-run block must say why (<!-- no-run: reason -->)"
        out.append((line, m.group("code"), why))
    return out


def _environment() -> None:
    """Examples say ``import torchvision``; where its compiled ops cannot load beside this torch,
    import it the way normlab does (models and transforms work without those ops)."""
    from normlab._compat import import_timm, import_torchvision

    for imp in (import_torchvision, import_timm):
        try:
            imp()
        except ImportError:
            pass


RUNNABLE = [p for p in PAGES if any(why is None for _, _, why in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page: Path, tmp_path, monkeypatch) -> None:
    _environment()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for line, code, why in blocks(page):
        if why is not None:
            compile(code, f"{page.name}:{line}", "exec")  # still valid Python
            continue
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as e:  # name the block that failed
            raise AssertionError(f"{page.relative_to(ROOT)}, block at line {line + 1}: {e!r}") from e


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed (extra 'docs')")
def test_docs_build_strict(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ,
                                                                         "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
