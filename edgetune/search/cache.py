"""JSON records in a folder, keyed by a hash of what produced them (config, source, profile).

A record is read back only through its schema: on shared storage anyone who can write the
run folder can write a record, and a record's names become folder names and its paths are
copied into bundles. So names must be plain (`SAFE_NAME`) and paths must lie inside the run
(`root`); a record that is not so is set aside with a warning and redone, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from edgetune.errors import first_problem
from edgetune.fsutil import SAFE_NAME, inside, write_json_atomic

LOG = logging.getLogger(__name__)
Name = Annotated[str, StringConstraints(pattern=SAFE_NAME)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProbeRecord(_Record):
    """A latency probe: p90 and verdict per mode, the pruned copy's parameter count."""

    p90_ms: dict[Name, float]
    verdict: dict[Name, str]
    params: int
    budget_ms: float | None = None
    over_counted: dict[Name, list[str]] = {}  # modes over a counted bound: not timed


class CandidateEntry(_Record):
    """The fields of a `Candidate` that become a folder name or are read as files."""

    name: Name
    precision: str
    model_path: str
    checkpoint: str = ""
    accuracy: dict | None
    latency: dict | None

    @field_validator("model_path", "checkpoint")
    @classmethod
    def _inside_the_run(cls, value: str, info: ValidationInfo) -> str:
        if value and not inside(info.context["root"], value):
            raise ValueError(f"'{value}' is outside the run folder {info.context['root']}")
        return value


class TrainedRecord(_Record):
    """A recovered student: its candidates, one per mode."""

    candidates: list[CandidateEntry]


class Cache:
    def __init__(self, folder: Path, root: Path | None = None):
        """Records in `folder`; the paths they name must lie in `root` (default: the folder
        holding `folder`, the run's work folder)."""
        self.folder, self.root = folder, Path(root or folder.parent)
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[
            :20
        ]

    def get(self, key: str, schema: type[_Record]) -> dict | None:
        """The record if it is whole and fits `schema`, or None: missing, torn (unparseable),
        or not fitting (set aside, said, and redone)."""
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return self._set_aside(path, ".torn", "is damaged")
        try:
            schema.model_validate(record, context={"root": self.root})
        except ValidationError as exc:
            field, message = first_problem(exc)
            return self._set_aside(
                path, ".invalid", f"is not a {schema.__name__} (field '{field}': {message})"
            )
        return record

    @staticmethod
    def _set_aside(path: Path, suffix: str, why: str) -> None:
        path.replace(path.with_suffix(suffix))
        LOG.warning(
            "cache record %s %s; set aside as %s and redone",
            path.name,
            why,
            path.with_suffix(suffix).name,
        )

    def put(self, key: str, record: dict) -> None:
        write_json_atomic(self.folder / f"{key}.json", record)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:20]
