"""Options and printing helpers the command modules share."""

from __future__ import annotations

from typing import Literal, get_args, get_origin

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo


def _field(config: type[BaseModel], key: str) -> FieldInfo:
    """`key`'s field; `train.epochs` is a field of the config the `train` field holds."""
    *parents, leaf = key.split(".")
    for part in parents:
        config = config.model_fields[part].annotation
    return config.model_fields[leaf]


def config_default(config: type[BaseModel], key: str):
    """The value `config` gives `key` when it is not set (a nested config's own default for
    `train.epochs`, e.g. `PruneJobConfig`'s one epoch): the flag shows what the job gets."""
    head, *rest = key.split(".")
    value = config.model_fields[head].get_default(call_default_factory=True)
    for part in rest:
        value = getattr(value, part)
    return value


def _click_type(annotation):
    """int, float, str as they are; a Literal as a choice; `X | None` as X; other unions
    (`float | "auto"`) as text, which the config then parses."""
    if get_origin(annotation) is Literal:
        return click.Choice([str(choice) for choice in get_args(annotation)])
    if annotation in (int, float, str):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    return _click_type(args[0]) if len(args) == 1 else str


def config_option(config: type[BaseModel], key: str, *names: str, **kwargs):
    """A flag for `config`'s `key` whose default (and type, and choices) the config owns, so
    the two cannot drift apart. `names`: the flag's names and its parameter name (default:
    `--the-key`, `the_key`); `kwargs` go to `click.option` (`help`, or `type` to override)."""
    field = _field(config, key)
    leaf = key.rsplit(".", 1)[-1]
    default = config_default(config, key)
    if field.annotation is not bool:  # an on/off pair (`--distill/--no-distill`) is typed by click
        kwargs.setdefault("type", _click_type(field.annotation))
    return click.option(
        *(names or (f"--{leaf.replace('_', '-')}", leaf)),
        default=default,
        show_default=default is not None,
        **kwargs,
    )


def profile_option(config: type[BaseModel]):
    return config_option(
        config,
        "profile",
        "--profile",
        "profile_name",
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
