"""JSON records in a folder, keyed by a hash of what produced them (config, source, profile)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from edgetune.fsutil import write_json_atomic

LOG = logging.getLogger(__name__)


class Cache:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def get(self, key: str) -> dict | None:
        """The record, or None: missing, or torn (unparseable: set aside and redone)."""
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            if isinstance(record, dict):
                return record
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
        path.replace(path.with_suffix(".torn"))
        LOG.warning("cache record %s is damaged; set aside as %s and redone", path.name,
                    path.with_suffix(".torn").name)
        return None

    def put(self, key: str, record: dict) -> None:
        write_json_atomic(self.folder / f"{key}.json", record)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:20]
