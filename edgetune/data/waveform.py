"""Audio as models take it, with numpy and soundfile only (what a deployment target has):
decode a file or WAV bytes, mix to mono, resample to the model's rate, fix the length, and
normalise as the model's feature extractor does (`preprocessor_config.json`).

Training, the ONNX checks, `predict` and `serve` all go through these functions, so a clip
reaches the exported model exactly as it reached PyTorch (tests compare with transformers'
feature extractor).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetune.errors import InputError

PROCESSOR_FILE = "preprocessor_config.json"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what soundfile decodes and edgetune reads
DEFAULT_CLIP_SECONDS = 1.0  # keyword spotting's usual clip; a profile's `clip_seconds` sets it
MIN_RATE = 1000  # below this a file is not speech or sound a model of ours was trained on


def decode(source: str | Path | bytes, where: str | None = None) -> tuple[np.ndarray, int]:
    """Samples (float32, mono: channels averaged) and the file's rate; one clear error for a
    file soundfile cannot decode."""
    import soundfile

    name = where or (str(source) if not isinstance(source, bytes) else "the audio")
    try:
        data, rate = soundfile.read(
            io.BytesIO(source) if isinstance(source, bytes) else str(source),
            dtype="float32",
            always_2d=True,
        )
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError, ValueError):
        raise InputError(f"{name}: not a readable audio file (WAV, FLAC or OGG)") from None
    if rate < MIN_RATE or len(data) == 0:
        raise InputError(f"{name}: {len(data)} samples at {rate} Hz is no clip a model can take")
    return data.mean(axis=1).astype(np.float32), int(rate)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """`samples` as the bytes of a 16-bit WAV file."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def sample_clips(rate: int = 16000, seconds: float = 1.0) -> list[bytes]:
    """Stand-in clips for a load test with no clips given: tones at a few pitches and noise."""
    rng = np.random.default_rng(0)
    times = np.arange(round(rate * seconds)) / rate
    tones = [0.3 * np.sin(2 * np.pi * pitch * times) for pitch in (220.0, 440.0, 880.0)]
    return [wav_bytes(w, rate) for w in [*tones, rng.normal(0.0, 0.1, len(times))]]


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling through the spectrum (frequencies above the lower rate's
    Nyquist dropped): numpy only, the same in training and serving."""
    if rate == target:
        return samples.astype(np.float32)
    length = max(1, round(len(samples) * target / rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    kept = np.zeros(length // 2 + 1, dtype=np.complex128)
    bins = min(len(kept), len(spectrum))
    kept[:bins] = spectrum[:bins]
    return (np.fft.irfft(kept, length) * (length / len(samples))).astype(np.float32)


def augment_clip(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A training clip as a microphone might have caught it: shifted by up to 100 ms either way
    (silence filling the gap), its gain scaled by -6 to +6 dB, and half the time with white
    noise 20-40 dB below the clip's level."""
    shift = int(rng.integers(-rate // 10, rate // 10 + 1))
    shifted = np.zeros_like(samples)
    if shift >= 0:
        shifted[shift:] = samples[: len(samples) - shift]
    else:
        shifted[:shift] = samples[-shift:]
    out = shifted * np.float32(10 ** (rng.uniform(-6, 6) / 20))
    if rng.random() < 0.5:
        level = np.sqrt(np.mean(out**2) + 1e-12) * 10 ** (-rng.uniform(20, 40) / 20)
        out = out + rng.normal(0.0, level, len(out))
    return out.astype(np.float32)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """The first `length` samples, or the clip followed by silence."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


@dataclass(frozen=True)
class AudioProcessor:
    """What a wav2vec2-style feature extractor does to a clip: the rate it takes and, when
    `do_normalize`, zero mean and unit variance per clip."""

    sampling_rate: int = 16000
    do_normalize: bool = True
    padding_value: float = 0.0
    config: dict = field(default_factory=dict, compare=False)  # the file, written back as is
    input_name = "input_values"

    @classmethod
    def of(cls, config: dict | object) -> AudioProcessor:
        """From a preprocessor config (a dict, or transformers' feature extractor, or one of
        these)."""
        if isinstance(config, AudioProcessor):
            return config
        values = config if isinstance(config, dict) else config.to_dict()
        return cls(
            int(values.get("sampling_rate", 16000)),
            bool(values.get("do_normalize", True)),
            float(values.get("padding_value", 0.0)),
            dict(values),
        )

    def save_pretrained(self, folder: str | Path) -> None:
        """The feature extractor's config beside a checkpoint (as transformers writes it)."""
        path = Path(folder) / PROCESSOR_FILE
        path.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    def clip(self, samples: np.ndarray, rate: int, length: int) -> np.ndarray:
        """One clip at the model's rate and `length` samples, normalised as in training."""
        fitted = fit_length(resample(samples, rate, self.sampling_rate), length)
        if not self.do_normalize:
            return fitted
        return ((fitted - fitted.mean()) / np.sqrt(fitted.var() + 1e-7)).astype(np.float32)

    def batch(self, clips: list[tuple[np.ndarray, int]], length: int) -> dict[str, np.ndarray]:
        """`input_values` (batch, length) for (samples, rate) pairs."""
        values = np.stack([self.clip(s, r, length) for s, r in clips]).astype(np.float32)
        return {"input_values": values}


def clip_samples(processor, seconds: float | None) -> int:
    """The fixed clip length in samples at the model's rate."""
    return round((seconds or DEFAULT_CLIP_SECONDS) * processor.sampling_rate)
