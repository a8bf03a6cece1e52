"""The `normlab` command. Thin: parses arguments, calls the library, prints with Rich."""

from __future__ import annotations

import sys

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - exercised only without the cli extra
    typer = None

if typer is not None:
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="normlab: normalization layers, the batch-size study, and search.")
    console = Console()
    err = Console(stderr=True)

    def fail(message: str, code: int = 2) -> "typer.Exit":
        """One line on stderr and a non-zero exit: how every user error ends."""
        err.print(f"[bold red]error:[/] {message}", highlight=False)
        return typer.Exit(code)

    @app.callback()
    def _root() -> None:
        """normlab: normalization layers, the batch-size study, and search."""

    @app.command()
    def layers(check: bool = typer.Option(False, "--check",
                                          help="Run every layer end to end and report.")) -> None:
        """List every normalization layer (and, with --check, verify each one)."""
        from .layers import NORMS

        results = {}
        if check:
            from .selfcheck import run_checks

            with console.status("checking layers..."):
                results = {r.name: r for r in run_checks()}
        table = Table(title="normlab layers", show_lines=False)
        wide = console.width >= 110
        cols = (("spec", "class", "batch-dependent", "replaces act", "folds into conv", "paper")
                if wide else ("spec", "batch", "repl. act", "folds", "paper"))
        for col in cols:
            table.add_column(col, no_wrap=col != "paper")
        if check:
            table.add_column("check")
        yes = lambda flag: "[green]yes[/]" if flag else "no"  # noqa: E731
        for name, info in NORMS.items():
            row = [name, info.cls.__name__, yes(info.batch_dependent), yes(info.replaces_act),
                   info.foldable, info.paper]
            if not wide:
                del row[1]
            if check:
                r = results[name]
                row.append("[green]ok[/]" if r.ok else "[red]FAIL[/]")
            table.add_row(*row)
        console.print(table)
        if check:
            for r in results.values():
                if not r.ok or r.name not in NORMS:
                    mark = "[green]PASS[/]" if r.ok else "[red]FAIL[/]"
                    console.print(f"{mark} {r.name}: {r.detail}", highlight=False)
            failed = [r.name for r in results.values() if not r.ok]
            if failed:
                raise fail(f"{len(failed)} check(s) failed: {', '.join(failed)}", code=1)
            console.print(f"[bold green]all {len(results)} checks passed[/]")


def main() -> None:
    if typer is None:
        print("error: the normlab command needs the cli extra: pip install 'normlab[cli]'",
              file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
