"""BIO (IOB2) tags: which sequences are well formed, and the entities they mark.

An entity is a `B-X` followed by any `I-X` of the same type; a stray `I-X` (after `O` or
another type) starts none: seqeval's strict IOB2 mode (`mode="strict", scheme=IOB2`). The
loaders refuse sequences that break it (`bio_error`); scoring reads predictions with `spans`.
"""

from __future__ import annotations

from collections.abc import Sequence

OUTSIDE = "O"


def spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities of one sentence as (type, first word, last word + 1)."""
    found: set[tuple[str, int, int]] = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, OUTSIDE]):
        prefix, _, name = tag.partition("-")
        if kind is not None and not (prefix == "I" and name == kind):
            found.add((kind, start, i))
            kind = None
        if prefix == "B":
            kind, start = name, i
    return found


def bio_error(tags: Sequence[str]) -> str | None:
    """Why `tags` is not BIO (IOB2), or None: every tag is O, B-X or I-X, and I-X follows
    B-X or I-X."""
    previous = OUTSIDE
    for i, tag in enumerate(tags):
        prefix, dash, name = tag.partition("-")
        if tag != OUTSIDE and (prefix not in ("B", "I") or not dash or not name):
            return f"tag {i + 1} '{tag}' is not O, B-<type> or I-<type>"
        if prefix == "I" and previous[2:] != name:
            return f"tag {i + 1} '{tag}' follows '{previous}' (an entity starts with B-{name})"
        previous = tag
    return None
