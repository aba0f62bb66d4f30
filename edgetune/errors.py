"""One family of errors, each with the exit code the CLI returns for it.

Library code raises these; only `cli.py` turns them into a one-line message and an exit code,
so a Python caller gets a typed exception instead of a `SystemExit`.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: traceback shown with --debug
EXIT_BAD_INPUT = 2  # what the user gave us is wrong (same code as Click's usage errors)
EXIT_VALIDATION = 3  # the exported ONNX model disagrees with PyTorch
EXIT_NO_CANDIDATE = 4  # nothing met the latency budget / size limit (report still written)


class EdgetuneError(Exception):
    """Base class: a message a user can act on, and an exit code."""

    exit_code = EXIT_INTERNAL


class InputError(EdgetuneError):
    """Bad input: a path, a file, a column, a profile field."""

    exit_code = EXIT_BAD_INPUT


class ValidationError(EdgetuneError):
    """The ONNX model's outputs do not match PyTorch's within the tolerance."""

    exit_code = EXIT_VALIDATION

    def __init__(self, message: str, max_abs_diff: float, atol: float):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.atol = atol


class NoCandidate(EdgetuneError):
    """No candidate met the budget; the report has been written anyway, and `result` (the
    `TuneResult`, every candidate measured) comes with the exception."""

    exit_code = EXIT_NO_CANDIDATE

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


# What `pip install 'edgetune[tune]'` adds to the runtime-only install (training, export,
# compression, the report's plot): a command reaching one of these without it says so.
TUNE_EXTRA_MODULES = frozenset(
    {
        "torch",
        "transformers",
        "optimum",
        "onnxscript",
        "datasets",
        "accelerate",
        "torch_pruning",
        "matplotlib",
    }
)
TUNE_EXTRA = "pip install 'edgetune[tune]'"


def missing_tune_extra(exc: BaseException) -> bool:
    """True when `exc` is the import of a module only the `tune` extra installs."""
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and name.split(".")[0] in TUNE_EXTRA_MODULES


_BRANCH = re.compile(r"(int|float|str|bool|none|literal\[.*\]|function-.*)")


def first_problem(exc) -> tuple[str, str]:
    """(dotted field, message) of a pydantic ValidationError's first error, for one-line errors.
    For a union (`float | "auto"`) the branch names are left out of the field and the literal
    branches' values are added to the message: "... a valid number, or 'auto'"."""
    errors = exc.errors()

    def field_of(error: dict) -> list:
        return [p for p in error["loc"] if not (isinstance(p, str) and _BRANCH.fullmatch(p))]

    first = errors[0]
    message = first["msg"].removeprefix("Value error, ")
    others = [
        e["ctx"]["expected"]
        for e in errors[1:]
        if e["type"] == "literal_error" and field_of(e) == field_of(first)
    ]
    if others:
        message += ", or " + " or ".join(others)
    return ".".join(str(part) for part in field_of(first)), message
