"""`pkg.module:factory` model specs: a callable (or an `nn.Module`) imported by name.

For users whose model is not a transformers model. The current folder is importable, as
`uvicorn app:main` does; the factory is called without arguments.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from edgetune.errors import InputError


def is_factory(spec: str) -> bool:
    """`pkg.module:factory`, not a path."""
    module, sep, attr = str(spec).partition(":")
    return bool(sep and module and attr.isidentifier() and not Path(spec).exists())


def resolve_factory(spec: str):
    """The object `spec` names (not called)."""
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current folder, as `python -m` and uvicorn do
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{spec}: cannot import '{module_name}' ({exc}); run from the folder "
                         "that holds it or install it") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{spec}: '{module_name}' has no '{attr}'")
    return factory


def load_factory(spec: str):
    """The `nn.Module` the factory returns, in eval mode."""
    import torch

    factory = resolve_factory(spec)
    model = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{spec}: returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()
