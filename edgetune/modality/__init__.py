"""The modalities edgetune knows, and the one place a run or a bundle is matched to one.

Adding a modality: one module with a `Modality` subclass (see `base.py`) and one line in
`MODALITIES`. Order matters: the first that claims a model wins; text, the fallback, is last.
"""

from __future__ import annotations

from edgetune.deploy.bundle import Bundle
from edgetune.errors import InputError
from edgetune.modality.audio import AudioModality
from edgetune.modality.base import BenchData, Modality, Prepared
from edgetune.modality.image import ImageModality
from edgetune.modality.text import TextModality
from edgetune.modality.tokens import TokenModality

MODALITIES: tuple[Modality, ...] = (
    ImageModality(),
    AudioModality(),
    TokenModality(),
    TextModality(),
)

__all__ = ["MODALITIES", "BenchData", "Modality", "Prepared", "for_bundle", "for_model"]


def for_model(model_source: str, data: str | None = None) -> Modality:
    """The modality of a model to train or export (folder, hub id, factory or checkpoint): the
    one whose head the model has, else the one whose form `data` has, else text."""
    *specific, fallback = MODALITIES
    claimed = next((m for m in specific if m.claims_model(model_source)), None)
    return claimed or next((m for m in specific if m.claims_data(data)), fallback)


def for_task(task: str) -> Modality:
    found = next((m for m in MODALITIES if m.claims_task(task)), None)
    if found is None:
        known = ", ".join(t for m in MODALITIES for t in m.tasks)
        raise InputError(f"task '{task}' is not one edgetune knows ({known})")
    return found


def for_bundle(bundle: Bundle) -> Modality:
    """The modality of a bundle, from its manifest's task."""
    return for_task(bundle.manifest.task)
