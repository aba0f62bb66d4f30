"""Diagnose a data file before `datasets` reads it, so a bad file gets its line and its fix.

`datasets` reports a Latin-1 byte, a broken JSON line or a ragged row as a generation error
with no line number (or, for a row with an extra field, not at all). These checks read the
file once: UTF-8 (the line of the first bad byte), the same number of fields on every CSV/TSV
line as in the header, and every JSON line parsing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgetune.errors import InputError

MAX_CHECKED_BYTES = 256 * 1024 * 1024  # larger files go to `datasets` unchecked


def check_text_file(path: Path) -> None:
    if path.stat().st_size > MAX_CHECKED_BYTES:
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}, line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8, "
            f"e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8{path.suffix}`"
        ) from None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        _check_fields(path, text, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".jsonl" or (suffix == ".json" and not text.lstrip().startswith("[")):
        _check_json_lines(path, text)
    elif suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None


def _check_fields(path: Path, text: str, delimiter: str) -> None:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
        for row in reader:
            if row and len(row) != len(header):
                name = "tab" if delimiter == "\t" else "comma"
                raise InputError(
                    f"{path}, line {reader.line_num}: {len(row)} fields where the header has "
                    f"{len(header)} ({name}-separated); quote a text that holds a {name}, "
                    "or fix the line"
                )
    except csv.Error as exc:
        raise InputError(f"{path}, line {reader.line_num}: {exc}") from None


def _check_json_lines(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}, line {number}: not valid JSON ({exc.msg}, column {exc.colno}); "
                "JSON lines need one object per line"
            ) from None
        if not isinstance(value, dict):
            raise InputError(
                f"{path}, line {number}: expected a JSON object per line, got "
                f"{type(value).__name__}"
            )
