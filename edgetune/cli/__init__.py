"""The `edgetune` command line (entry point `edgetune.cli:main`)."""

from edgetune.cli.main import cli, main
from edgetune.defaults import default_data, default_model

__all__ = ["cli", "default_data", "default_model", "main"]
