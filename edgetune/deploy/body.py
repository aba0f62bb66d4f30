"""What a prediction request's body may hold, and a 4xx that says what is wrong with it.

The body is parsed here, not by a schema, so a malformed body, a wrong type, an empty list, too
many or too long texts, an oversized body, one that arrives too slowly, JSON nested too deeply
for the parser or a number too long to convert each get their own one-line message.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from starlette.requests import Request

MAX_NUMBER_DIGITS = 100  # a longer JSON number is refused before Python converts it


@dataclass
class Limits:
    max_texts: int = 64
    max_text_chars: int = 10_000
    max_body_bytes: int = 1 << 20
    max_queue: int = 64  # texts waiting for the model
    request_timeout_s: float = 10.0  # arrival to answer
    read_timeout_s: float = 5.0  # the whole body


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limits: Limits) -> bytes:
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BadRequest(413, f"request body is over the limit of {limit} bytes")
    except TimeoutError:
        raise BadRequest(
            408, f"the request body did not arrive within {limits.read_timeout_s:g} s"
        ) from None
    return bytes(body)


def _short_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_DIGITS:
        raise BadRequest(
            400, f"the body holds a number of {len(digits)} digits; send a JSON list of texts"
        )
    return int(digits)


def _texts_of(item: object, index: int, pairs: bool) -> list[str]:
    """The string(s) of one item: a text, or for a sentence-pair model [first, second]."""
    if not pairs:
        if not isinstance(item, str):
            raise BadRequest(422, f"text {index} is a {type(item).__name__}, not a string")
        return [item]
    if not (isinstance(item, list) and len(item) == 2 and all(isinstance(t, str) for t in item)):
        raise BadRequest(
            422,
            f"item {index} is not a pair: this model classifies sentence pairs; "
            'send ["first text", "second text"] for each',
        )
    return item


def parse_texts(body: bytes, limits: Limits, pairs: bool = False) -> list:
    """The texts (or pairs) of a request body, or a BadRequest that says what is wrong with it."""
    try:
        data = json.loads(body, parse_int=_short_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(
            400, f"the body is not valid JSON ({exc}); send a JSON list of texts"
        ) from None
    except RecursionError:
        raise BadRequest(
            400, "the body's JSON is nested too deeply; send a JSON list of texts"
        ) from None
    if isinstance(data, dict):
        if set(data) != {"texts"}:
            raise BadRequest(
                422,
                'send a JSON list of texts or {"texts": [...]}; '
                f"got an object with keys {sorted(data)}",
            )
        data = data["texts"]
    if not isinstance(data, list):
        raise BadRequest(422, f"send a JSON list of texts; got {type(data).__name__}")
    if not data:
        raise BadRequest(422, "the list of texts is empty")
    if len(data) > limits.max_texts:
        raise BadRequest(
            413, f"{len(data)} texts is over the limit of {limits.max_texts} per request"
        )
    for index, item in enumerate(data):
        for text in _texts_of(item, index, pairs):
            if len(text) > limits.max_text_chars:
                raise BadRequest(
                    413,
                    f"text {index} has {len(text)} characters; the limit is "
                    f"{limits.max_text_chars}",
                )
    return data


AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS")  # a WAV, FLAC or OGG file sent as the body itself


def parse_audio(body: bytes, limits: Limits) -> list:
    """The clips of a request body, as (samples, rate): one audio file as the body itself
    (`curl --data-binary @a.wav`), `{"audio": [base64 WAV/FLAC/OGG, ...]}` or
    `{"samples": [[float, ...], ...], "sample_rate": 16000}`; or a BadRequest."""
    import base64
    import binascii

    import numpy as np

    from edgetune.data.waveform import MIN_RATE, decode
    from edgetune.errors import InputError

    hint = (
        'send a WAV file as the body, {"audio": [base64 WAV, ...]} or '
        '{"samples": [[...]], "sample_rate": 16000}'
    )
    if body[:4] in AUDIO_MAGIC:
        try:
            return [decode(body, "the body")]
        except InputError as exc:
            raise BadRequest(422, str(exc)) from None
    try:
        data = json.loads(body, parse_int=_short_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"the body is not valid JSON ({exc}); {hint}") from None
    except RecursionError:
        raise BadRequest(400, f"the body's JSON is nested too deeply; {hint}") from None
    if not isinstance(data, dict) or not (
        {"audio"} == set(data) or {"samples", "sample_rate"} == set(data)
    ):
        raise BadRequest(422, hint)
    items = data.get("audio", data.get("samples"))
    if not isinstance(items, list) or not items:
        raise BadRequest(422, f"no clips; {hint}")
    if len(items) > limits.max_texts:
        raise BadRequest(
            413, f"{len(items)} clips is over the limit of {limits.max_texts} per request"
        )
    clips = []
    for index, item in enumerate(items):
        if "audio" in data:
            try:
                clips.append(decode(base64.b64decode(item, validate=True), f"clip {index}"))
            except (binascii.Error, TypeError, ValueError):
                raise BadRequest(422, f"clip {index} is not base64 audio; {hint}") from None
            except InputError as exc:
                raise BadRequest(422, str(exc)) from None
            continue
        rate = data["sample_rate"]
        if not isinstance(rate, int) or rate < MIN_RATE:
            raise BadRequest(
                422, f"sample_rate {rate!r}: give the clips' rate in Hz (>= {MIN_RATE})"
            )
        if (
            not isinstance(item, list)
            or not item
            or not all(isinstance(v, (int, float)) for v in item)
        ):
            raise BadRequest(422, f"clip {index} is not a list of numbers; {hint}")
        clips.append((np.asarray(item, dtype=np.float32), rate))
    return clips
