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


from posevlm.cli import compare as _compare  # noqa: E402  (registers commands)
from posevlm.cli import demo as _demo  # noqa: E402
from posevlm.cli import eval as _eval  # noqa: E402
from posevlm.cli import info as _info  # noqa: E402
from posevlm.cli import inspect as _inspect  # noqa: E402,F401  (registers `posevlm inspect`)
from posevlm.cli import report as _report  # noqa: E402
from posevlm.cli import sample as _sample  # noqa: E402
from posevlm.cli import synth as _synth  # noqa: E402
from posevlm.cli import viz as _viz  # noqa: E402

app.command("synth")(_synth.synth)
app.command("info")(_info.info)
app.command("sample")(_sample.sample)
app.add_typer(_viz.viz_app, name="viz")
app.command("eval")(_eval.eval_cmd)
app.command("report")(_report.report)
app.command("compare")(_compare.compare)
app.command("demo")(_demo.demo)

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: errors raised on purpose print as one clear line, not a traceback."""
    try:
        app()
    except PosevlmError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(2)
