"""`pkg.module:factory` model specs: a callable (or an `nn.Module`) imported by name.

For users whose model is not a transformers model. A spec the user types is imported with
the current folder importable, as `uvicorn app:main` does; the factory is called without
arguments. A spec read from a file (a checkpoint's record) is never imported on the file's
word: only when the user names the same factory (`trusted_factory`), since importing runs
whatever code the folder came with.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgetune.errors import InputError

TRUST_FLAG = "--trust-factory"


def is_factory(spec: str) -> bool:
    """`pkg.module:factory`, not a path."""
    module, sep, attr = str(spec).partition(":")
    return bool(sep and module and attr.isidentifier() and not Path(spec).exists())


def trusted_factory(spec: object, trusted: str | None, where: str) -> str:
    """`spec`, read from the file `where`, if the user named the same factory; else refused.

    The refusal names the factory and the flag, so the user decides whether to run its code."""
    if not isinstance(spec, str) or not is_factory(spec):
        raise InputError(f"{where}: 'factory' is not a pkg.module:factory spec ({spec!r})")
    if spec != trusted:
        raise InputError(
            f"{where} names the factory '{spec}', whose code would run on import; "
            f"edgetune imports only a factory you name: pass {TRUST_FLAG} {spec} "
            "if you trust it"
        )
    return spec


@contextmanager
def _current_folder_importable() -> Iterator[None]:
    """The current folder first on `sys.path` for one import, as `python -m` and uvicorn do,
    then taken off again, so later imports in this process do not look there."""
    folder = os.getcwd()
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def resolve_factory(spec: str):
    """The object `spec` (typed by the user, or trusted by them) names, not called."""
    module_name, _, attr = spec.partition(":")
    try:
        with _current_folder_importable():
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"{spec}: cannot import '{module_name}' ({exc}); run from the folder "
            "that holds it or install it"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{spec}: '{module_name}' has no '{attr}'")
    return factory


def load_factory(spec: str):
    """The `nn.Module` the factory returns, in eval mode."""
    import torch

    with _current_folder_importable():  # what the factory imports when called, too
        factory = resolve_factory(spec)
        called = callable(factory) and not isinstance(factory, torch.nn.Module)
        model = factory() if called else factory
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{spec}: returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()
