"""The `edgetune` command group: error handling, and the small commands (report, profiles,
passes). Each command parses flags into a config object, calls the public API, prints.

Errors from the library (`EdgetuneError`) become one line on stderr and their exit code;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import click

from edgetune._version import __version__
from edgetune.cli.agent import agent
from edgetune.cli.deploy import loadtest, serve
from edgetune.cli.tools import bench, export, predict, prune, quantize
from edgetune.cli.tune import tune
from edgetune.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    TUNE_EXTRA,
    EdgetuneError,
    missing_tune_extra,
)

DEBUG_ENV = "EDGETUNE_DEBUG"
# Errors of the machine, not of edgetune: said in one line, with what to do.
MACHINE_ERRNOS = {
    errno.ENOSPC: "free some space or choose another --out",
    errno.EDQUOT: "free some space or choose another --out",
    errno.EACCES: "no permission: choose a folder you can write",
    errno.EROFS: "read-only file system: choose another --out",
}


class EdgetuneGroup(click.Group):
    """Turns library errors into one line and their exit code; `--debug` re-raises them."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except EdgetuneError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if _debug(ctx) or exc.errno not in MACHINE_ERRNOS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(
                f"error: {exc.strerror}{where}: {MACHINE_ERRNOS[exc.errno]}; nothing "
                "half-written was left (rerun with --resume where it applies)",
                err=True,
            )
            ctx.exit(EXIT_BAD_INPUT)
        except Exception as exc:
            if _debug(ctx):
                raise
            if missing_tune_extra(exc):  # a runtime-only install (no torch, transformers...)
                command = ctx.invoked_subcommand or "this command"
                click.echo(
                    f"error: edgetune {command} needs the training extra: {TUNE_EXTRA}", err=True
                )
                ctx.exit(EXIT_BAD_INPUT)
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(
                f"internal error: {exc.__class__.__name__}: {first} "
                "(run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_ENV) == "1"


@click.group(
    cls=EdgetuneGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="edgetune")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Fine-tune, compress, export to ONNX and benchmark a model under a deployment budget.

    \b
    Example:
      edgetune tune --data reviews.csv --profile cpu-edge --out runs/reviews
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        import datasets
    except ModuleNotFoundError:  # a runtime-only install: the commands that load data say so
        return
    datasets.disable_progress_bars()


@cli.command()
@click.argument("run_dir", type=click.Path())
def report(run_dir) -> None:
    """Re-render report.md and pareto.png of a tune RUN_DIR from its report.json.

    \b
    Example:
      edgetune report runs/sst2
    """
    from edgetune.deploy.report import rerender

    _json_path, md_path = rerender(run_dir)
    click.echo(f"report: {md_path}\nplot: {Path(run_dir) / 'pareto.png'}")


@cli.group()
def profiles() -> None:
    """List and show deployment profiles."""


@profiles.command("list")
def profiles_list() -> None:
    """List the shipped profiles.

    \b
    Example:
      edgetune profiles list
    """
    from edgetune.profiles import available_profiles, load_profile

    for name in available_profiles():
        p = load_profile(name)
        click.echo(
            f"{name:12s} {p.device:4s} threads={p.intra_op_threads} batch={p.batch_size} "
            f"seq={p.sequence_length} p90<={p.latency_budget_ms:g}ms  {p.description}"
        )


@profiles.command("show")
@click.argument("name")
def profiles_show(name: str) -> None:
    """Show one profile (a shipped NAME or a .toml path) as validated JSON.

    \b
    Example:
      edgetune profiles show cpu-edge
    """
    from edgetune.profiles import load_profile

    click.echo(json.dumps(load_profile(name).model_dump(), indent=2))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def passes(as_json: bool) -> None:
    """List the compression passes, their options and defaults, and the named modes.

    \b
    Example:
      edgetune passes
    """
    from edgetune.compress.modes import MODES
    from edgetune.compress.passes import describe_passes

    described = describe_passes()
    if as_json:
        click.echo(
            json.dumps(
                {"passes": described, "modes": [m.to_json() for m in MODES.values()]},
                indent=2,
                default=str,
            )
        )
        return
    for p in described:
        note = "" if p["speeds_up"] else "  [size only: no speed-up]"
        note += "  [runs after recovery training]" if p["after_training"] else ""
        click.echo(
            f"{p['name']:20s} {p['stage']:5s} -> {p['precision']:4s} "
            f"({', '.join(p['devices'])}) {p['description']}{note}"
        )
        for key, knob in p["options"].items():
            click.echo(f"    {key} = {knob['default']!r}  {knob['description']}")
    click.echo("\nmodes (presets):")
    for mode in MODES.values():
        steps = " -> ".join(
            s.pass_name
            + (
                f"({', '.join(f'{k}={v}' for k, v in s.config.model_dump().items())})"
                if s.config.model_dump()
                else ""
            )
            for s in mode.steps
        )
        click.echo(f"  {mode.name:24s} {steps or '(the export as is)'}")


for command in (tune, export, prune, quantize, bench, predict, serve, loadtest, agent):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgetune")


if __name__ == "__main__":
    main()
