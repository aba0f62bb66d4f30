"""Keyword spotting on spoken words synthesized offline: no download, no recorded corpus.

    apt-get install espeak-ng      # Debian's package
    python benchmarks/keywords_real.py --out runs/kws [--epochs 8]

Recipe (`synthesize`): each keyword spoken by espeak-ng in every voice of `VOICES` (English
accents, male and female variants), at every speed of `SPEEDS` (words per minute) and pitch of
`PITCHES`, written at 22.05 kHz (espeak-ng's rate, so every clip is resampled to the model's
16 kHz on the way in), `NOISE_DRAWS` times with background noise mixed in at a random SNR
between 5 and 25 dB (white or brown noise, seeded). One folder per keyword and split:
`<out>/data/{train,validation}/<keyword>/*.wav`; the validation split is the voices of
`HELD_OUT_VOICES`, voices the model never heard.

The model is a small wav2vec2-style classifier from random weights (no pretrained speech model
installs offline), or with `--plain` a small plain PyTorch CNN over 40 log-mel bins
(`PLAIN_MODULE`, written beside the data and named as `kws_cnn:small_kws`); either is trained
by `edgetune tune` on `cpu-edge`; this prints fp32 against the chosen candidate side by side
(accuracy with its interval and the paired test on the same clips, p90 with its interval, all
from the same interleaved rounds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edgetune_run import NO_CANDIDATE_MET, run

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
VOICES = [
    "en-us",
    "en-us+f2",
    "en-gb",
    "en-gb+f3",
    "en-gb-scotland",
    "en-gb-x-rp+m3",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd+f4",
]
HELD_OUT_VOICES = ["en-gb-x-gbcwmd+f4"]
SPEEDS = [130, 160, 190]
PITCHES = [30, 50, 70]
NOISE_DRAWS = 2  # each spoken clip mixed with this many different noises
RATE = 16000


def speak(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    import soundfile

    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", handle.name, word],
            check=True,
        )
        samples, rate = soundfile.read(handle.name, dtype="float32")
    return samples, rate


def with_noise(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 1, len(samples))
    if rng.random() < 0.5:  # brown noise: integrated white noise, most power low
        noise = np.cumsum(noise)
        noise -= np.linspace(noise[0], noise[-1], len(noise))
    snr_db = rng.uniform(5, 25)
    signal_power = np.mean(samples**2) + 1e-12
    noise *= np.sqrt(signal_power / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (samples + noise).astype(np.float32)


def synthesize(folder: Path, seed: int = 0) -> int:
    """train/<keyword>/*.wav and validation/<keyword>/*.wav; the number of clips."""
    import soundfile

    rng = np.random.default_rng(seed)
    count = 0
    for word, voice, speed, pitch in itertools.product(KEYWORDS, VOICES, SPEEDS, PITCHES):
        split = "validation" if voice in HELD_OUT_VOICES else "train"
        samples, rate = speak(word, voice, speed, pitch)
        target = folder / split / word
        target.mkdir(parents=True, exist_ok=True)
        for draw in range(NOISE_DRAWS):
            name = f"{voice.replace('+', '_')}-{speed}-{pitch}-{draw}.wav"
            soundfile.write(target / name, with_noise(samples, rng), rate)
            count += 1
    return count


def tiny_wav2vec2(folder: Path) -> None:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=192,
        conv_dim=(64, 64, 64, 64, 64),
        conv_stride=(5, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 2),
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="group",
        classifier_proj_size=64,
        vocab_size=8,
        mask_time_prob=0.0,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, do_normalize=True).save_pretrained(
        folder
    )


# A keyword spotter over log-mel features: mel bins as the channels of 1-d convolutions over
# time (as TC-ResNet does), three blocks, the last two striding, then global average pooling.
PLAIN_MODULE = """
import torch
from torch import nn


def block(inputs, outputs, stride):
    return [nn.Conv1d(inputs, outputs, 5, stride, 2, bias=False), nn.BatchNorm1d(outputs),
            nn.ReLU()]


def small_kws():
    torch.manual_seed(0)
    return nn.Sequential(*block(40, 64, 1), *block(64, 96, 2), *block(96, 128, 2),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.1),
                         nn.Linear(128, 8))


small_kws.modality = "audio"
small_kws.n_mels = 40
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/kws")
    parser.add_argument("--epochs", default="8")
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--plain", action="store_true", help="a log-mel CNN, not wav2vec2")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data, model = out / "data", out / "model"
    if not (data / "validation").is_dir():
        started = time.perf_counter()
        clips = synthesize(data)
        print(f"# synthesized {clips} clips in {time.perf_counter() - started:.0f} s")
    if args.plain:
        (out / "kws_cnn.py").write_text(PLAIN_MODULE)
        sys.path.insert(0, str(out.resolve()))
        model = "kws_cnn:small_kws"
    elif not (model / "config.json").is_file():
        tiny_wav2vec2(model)
    run("tune", "--model", model, "--data", data, "--profile", args.profile,
        "--epochs", args.epochs, "--batch-size", "32", "--lr", "1e-3", "--patience", "4",
        "--out", out / "run", "--overwrite", accept=(0, NO_CANDIDATE_MET))  # fmt: skip
    report = json.loads((out / "run" / "report.json").read_text())
    candidates = {c["name"]: c for c in report["candidates"]}
    chosen = report["selection"]["winner"]
    from edgetune.hardware import cpu_flags, describe

    flags = sorted(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16"})
    print(f"\n{describe(candidates['fp32']['latency']['machine'])}; INT8/bf16 flags: {flags}")
    print(f"chosen: {chosen}; {report['selection']['reason']}")
    print("| candidate | accuracy [95% CI] | vs fp32: points (McNemar p) | p90 ms [95% CI] |")
    print("|---|---|---|---|")
    for name in dict.fromkeys(["fp32", chosen, *candidates]):
        c = candidates[name]
        acc, lat = c["accuracy"], c["latency"]
        versus = (c.get("stats") or {}).get("vs_reference") or {}
        p = versus.get("p_value")
        print(
            f"| {name} | {acc['accuracy']:.4f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}] "
            f"| {-versus.get('drop_points', 0):+.2f}"
            + (f" ({p:.2g})" if p is not None else "")
            + f" | {lat['p90_ms']:.2f} [{lat['p90_ci'][0]:.2f}, {lat['p90_ci'][1]:.2f}] |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
