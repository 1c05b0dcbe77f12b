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
from posevlm.cli import experiment as _experiment  # noqa: E402
from posevlm.cli import explore as _explore  # noqa: E402
from posevlm.cli import geometry as _geometry  # noqa: E402
from posevlm.cli import info as _info  # noqa: E402
from posevlm.cli import inspect as _inspect  # noqa: E402,F401  (registers `posevlm inspect`)
from posevlm.cli import list as _list  # noqa: E402
from posevlm.cli import report as _report  # noqa: E402
from posevlm.cli import sample as _sample  # noqa: E402
from posevlm.cli import synth as _synth  # noqa: E402
from posevlm.cli import train as _train  # noqa: E402
from posevlm.cli import viz as _viz  # noqa: E402

app.command("synth")(_synth.synth)
app.command("info")(_info.info)
app.command("sample")(_sample.sample)
app.add_typer(_viz.viz_app, name="viz")
app.add_typer(_geometry.geometry_app, name="geometry")
app.command("eval")(_eval.eval_cmd)
app.command("report")(_report.report)
app.command("compare")(_compare.compare)
app.command("explore")(_explore.explore)
app.command("demo")(_demo.demo)
app.command("list")(_list.list_cmd)
app.command("train")(_train.train_cmd)
app.add_typer(_experiment.experiment_app, name="experiment")

__all__ = ["app", "main", "fail", "os_error_message"]


def main() -> None:
    """Entry point: errors raised on purpose, and OS errors on inputs and outputs (unwritable folder, disk
    full), print as one line (``error: ...`` on stderr, never wrapped) with exit code 2, not a traceback.
    ``POSEVLM_DEBUG=1`` re-raises them with the traceback."""
    import os

    try:  # typer >= 0.2x vendors click
        from typer._click import exceptions as click_exceptions
    except ImportError:
        from click import exceptions as click_exceptions

    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as exc:  # bad or missing option: one line, then where help is
        where = exc.ctx.command_path if exc.ctx is not None else "posevlm"
        fail(f"{exc.format_message()} (see: {where} --help)", exc.exit_code)
    except click_exceptions.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        fail("aborted", 130)
    except (PosevlmError, OSError) as exc:
        if os.environ.get("POSEVLM_DEBUG"):
            raise
        fail(str(exc) if isinstance(exc, PosevlmError) else os_error_message(exc))
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: <message>`` as exactly one line on stderr (red on a terminal) and exit with ``code``."""
    line = " ".join(message.split())
    prefix = "\033[1;31merror:\033[0m" if sys.stderr.isatty() else "error:"
    print(f"{prefix} {line}", file=sys.stderr, flush=True)
    sys.exit(code)


def os_error_message(exc: OSError) -> str:
    """One line naming the file and what to do (disk full, read-only, permissions, a file where a folder goes)."""
    import errno

    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None) or "(no path)"
    fixes = {
        errno.ENOSPC: "free disk space (or point --out elsewhere) and rerun: completed work is kept and resumed",
        errno.EDQUOT: "free quota (or point --out elsewhere) and rerun: completed work is kept and resumed",
        errno.EFBIG: "raise the file size limit (ulimit -f) or point --out elsewhere and rerun: completed work is "
                     "kept and resumed",
        errno.EROFS: "the location is read-only; choose a writable --out",
        errno.EACCES: "check the permissions or choose another path",
        errno.EPERM: "check the permissions or choose another path",
        errno.ENOTDIR: "a file is in the way where a folder is needed; move it or choose another path",
        errno.EEXIST: "a file is in the way; move it or choose another path",
        errno.EISDIR: "a folder is where a file is expected; check the path",
    }
    fix = fixes.get(exc.errno, "check the path and rerun")
    return f"{exc.strerror or type(exc).__name__}: {where}; {fix}"
