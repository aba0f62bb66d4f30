"""The jobs behind the public API: one module per command, each taking one config object."""
