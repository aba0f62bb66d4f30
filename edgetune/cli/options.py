"""Options and printing helpers the command modules share."""

from __future__ import annotations

import click


def profile_option(default: str = "cpu-edge"):
    return click.option(
        "--profile",
        "profile_name",
        default=default,
        show_default=True,
        help="Deployment profile: a shipped name (see `edgetune profiles list`) or a .toml path.",
    )


def trust_factory_option():
    return click.option(
        "--trust-factory",
        "trust_factory",
        default=None,
        metavar="PKG.MODULE:FACTORY",
        help="A plain PyTorch module's checkpoint names the factory that rebuilds "
        "it; it is imported (its code runs) only if you name the same one here.",
    )


def split_list(value: str | None) -> list[str] | None:
    """`a, b,c` -> ["a", "b", "c"]; None stays None."""
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def stdout_console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_candidates(candidates, selection, title: str) -> None:
    from edgetune.deploy.report import candidates_table

    stdout_console().print(candidates_table(candidates, selection, title))
