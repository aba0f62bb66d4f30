"""Log-mel features in numpy, the front end of plain PyTorch audio models (`pkg.module:factory`
with `modality = "audio"`): the same code in training, the export check, `predict` and `serve`,
so a deployment target needs neither torch nor transformers to hear as the model was trained.

The spectrogram is the usual one (periodic Hann window, frames centred with reflected edges,
power spectrum, HTK mel filters, natural log above a floor); tests compare it with
transformers' `audio_utils`. A clip is then normalised to zero mean and unit variance over all
its bins, so a loud and a quiet speaker reach the model alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from edgetune.data.waveform import PROCESSOR_FILE, fit_length, resample

FEATURE_TYPE = "EdgetuneLogMel"  # the `feature_extractor_type` its preprocessor_config.json names
LOG_FLOOR = 1e-6


def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hertz, dtype=np.float64) / 700.0)


def mel_to_hertz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filters(n_fft: int, n_mels: int, rate: int, low: float = 0.0, high: float | None = None):
    """Triangular filters evenly spaced on the mel scale, (n_fft // 2 + 1, n_mels): each rises
    from its left neighbour's centre to its own and falls to its right neighbour's."""
    bins = np.linspace(0.0, rate // 2, n_fft // 2 + 1)
    edges = mel_to_hertz(np.linspace(hertz_to_mel(low), hertz_to_mel(high or rate / 2), n_mels + 2))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - left) / (centre - left)
    falling = (right - bins[:, None]) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


@dataclass(frozen=True)
class LogMelProcessor:
    """A clip at the model's rate and length, as (n_mels, frames) log-mel features."""

    sampling_rate: int = 16000
    n_fft: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 64
    do_normalize: bool = True
    input_name = "input_features"

    @classmethod
    def of(cls, values: dict) -> LogMelProcessor:
        return cls(
            int(values.get("sampling_rate", 16000)),
            int(values.get("n_fft", 400)),
            int(values.get("hop_length", 160)),
            int(values.get("n_mels", 64)),
            bool(values.get("do_normalize", True)),
        )

    def to_json(self) -> dict:
        return {
            "feature_extractor_type": FEATURE_TYPE,
            "sampling_rate": self.sampling_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "do_normalize": self.do_normalize,
        }

    def save_pretrained(self, folder: str | Path) -> None:
        path = Path(folder) / PROCESSOR_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @cached_property
    def _filters(self) -> np.ndarray:
        return mel_filters(self.n_fft, self.n_mels, self.sampling_rate)

    @cached_property
    def _window(self) -> np.ndarray:
        return np.hanning(self.n_fft + 1)[:-1]  # periodic: what spectral analysis uses

    def frames(self, samples: int) -> int:
        return 1 + samples // self.hop_length

    def features(self, samples: np.ndarray) -> np.ndarray:
        """(n_mels, frames) natural-log mel power of `samples` (already at the model's rate)."""
        half = self.n_fft // 2
        padded = np.pad(samples.astype(np.float64), half, mode="reflect")
        starts = np.arange(self.frames(len(samples))) * self.hop_length
        frames = padded[starts[:, None] + np.arange(self.n_fft)] * self._window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        return np.log(np.maximum(power @ self._filters, LOG_FLOOR)).T

    def clip(self, samples: np.ndarray, rate: int, length: int) -> np.ndarray:
        fitted = fit_length(resample(samples, rate, self.sampling_rate), length)
        mel = self.features(fitted)
        if self.do_normalize:
            mel = (mel - mel.mean()) / np.sqrt(mel.var() + 1e-7)
        return mel.astype(np.float32)

    def batch(self, clips: list[tuple[np.ndarray, int]], length: int) -> dict[str, np.ndarray]:
        """`input_features` (batch, n_mels, frames) for (samples, rate) pairs."""
        return {self.input_name: np.stack([self.clip(s, r, length) for s, r in clips])}
