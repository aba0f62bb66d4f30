"""Vocabulary-trimmed variants of candidates (`compress/vocab.py`), built and scored like any.

With `trim_vocab = "auto"` only the candidates over the profile's size limit get one (an edge
box's flash is the bound it breaks; trimming buys no speed); with "on", every candidate built
from a preset mode. The variant is a mode like the others (`<mode>+vocab-trim`), built from the
same fp32 export, its accuracy measured on the ONNX model, so a trim that costs accuracy shows
as any other loss.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.compress.modes import MODES, trimmed
from edgetune.measure.bench import EvalSet
from edgetune.profiles import Profile
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.record import Candidate

EXPORT_NAME = "model.fp32.onnx"  # what `CandidateBuilder.from_model` exports next to the modes


def to_trim(candidates: list[Candidate], profile: Profile, setting: str) -> list[Candidate]:
    """The candidates that get a trimmed variant: built from a preset mode (mixed-precision
    variants are not) from an export the run kept, and, with "auto", over the size limit."""
    limit = profile.max_model_size_mb
    return [
        c
        for c in candidates
        if c.settings.get("mode") in MODES
        and (Path(c.model_path).parent / EXPORT_NAME).is_file()
        and (setting == "on" or (limit is not None and c.size_mb > limit))
    ]


def trimmed_variant(
    candidate: Candidate, builder: CandidateBuilder, evaluation: EvalSet, reserve: int
) -> Candidate:
    """`candidate`'s mode with `vocab-trim`, from the same export, named `<name>+vocab-trim`."""
    mode = MODES[candidate.settings["mode"]]
    prefix = candidate.name[: -len(mode.name)]
    folder = Path(candidate.model_path).parent
    extra = {k: v for k, v in candidate.settings.items() if k == "pruning"}
    (built,) = builder.build(
        folder / EXPORT_NAME,
        [trimmed(mode, reserve)],
        folder,
        evaluation,
        prefix=prefix,
        checkpoint=candidate.checkpoint,
        extra=extra,
    )
    return built
