"""The ``posevlm`` command line: one verb per file, each a thin shell over one library call."""

from __future__ import annotations

import sys

import typer

from posevlm import __version__
from posevlm.errors import PosevlmError

app = typer.Typer(
    name="posevlm",
    help="Spatial reasoning with video LLMs conditioned on camera pose.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"posevlm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """posevlm: posed scans -> pose-aware frame selection -> pose-aware video LLMs -> evaluation."""


from posevlm.cli import info as _info  # noqa: E402  (registers commands)
from posevlm.cli import synth as _synth  # noqa: E402

app.command("synth")(_synth.synth)
app.command("info")(_info.info)

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: errors raised on purpose print as one clear line, not a traceback."""
    try:
        app()
    except PosevlmError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(2)
