"""Which audio front end a model hears through, read from its `preprocessor_config.json`:
edgetune's log-mel features (plain PyTorch audio models, `data/logmel.py`) or a wav2vec2-style
waveform extractor (`data/waveform.py`). Both are numpy only (the runtime's too)."""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.data.logmel import FEATURE_TYPE, LogMelProcessor
from edgetune.data.waveform import PROCESSOR_FILE, AudioProcessor
from edgetune.errors import InputError


def audio_processor(config: dict | object) -> AudioProcessor | LogMelProcessor:
    """The front end a preprocessor config describes (a dict, transformers' feature extractor,
    or one of ours)."""
    if isinstance(config, AudioProcessor | LogMelProcessor):
        return config
    if isinstance(config, dict) and config.get("feature_extractor_type") == FEATURE_TYPE:
        return LogMelProcessor.of(config)
    return AudioProcessor.of(config)


def load_audio_processor(folder: str | Path) -> AudioProcessor | LogMelProcessor:
    """`audio_processor` of the `preprocessor_config.json` in `folder` (a bundle, a checkpoint)."""
    path = Path(folder) / PROCESSOR_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: no readable feature extractor config") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a feature extractor config (a JSON object)")
    return audio_processor(config)
