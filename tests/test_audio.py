"""Audio classification end to end on a tiny random-init wav2vec2: WAV folders (other rates
and stereo resampled and mixed down, undecodable files counted), accuracy on the ONNX model,
bundles that predict (`--audio`) and serve (WAV bytes and samples)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import made_once, tune_tiny

RATE = 16000


def _make_tiny_wav2vec2(folder: Path) -> None:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        classifier_proj_size=16,
        vocab_size=8,
        mask_time_prob=0.0,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True
    ).save_pretrained(folder)


def tone(frequency: float, seconds: float, rate: int, rng) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * frequency * t) + rng.normal(0, 0.05, len(t))
    return wave.astype(np.float32)


def write_tones(folder: Path, per_label: int, seed: int) -> None:
    """`low/` (200-400 Hz) and `high/` (1.5-3 kHz) tones with noise; every fourth clip at
    8 kHz, every fifth in stereo (resampled and mixed down when read)."""
    import soundfile

    rng = np.random.default_rng(seed)
    for label, (lo, hi) in (("low", (200, 400)), ("high", (1500, 3000))):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            rate = 8000 if i % 4 == 0 else RATE
            wave = tone(rng.uniform(lo, hi), rng.uniform(0.3, 0.6), rate, rng)
            if i % 5 == 0:
                wave = np.stack([wave, wave * 0.5], axis=1)
            soundfile.write(folder / label / f"{i}.wav", wave, rate)


@pytest.fixture(scope="session")
def tiny_audio_model(tmp_path_factory) -> Path:
    return made_once(tmp_path_factory, "tiny-wav2vec2", _make_tiny_wav2vec2)


@pytest.fixture(scope="session")
def tones(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        write_tones(folder / "train", 24, seed=1)
        write_tones(folder / "validation", 10, seed=2)
        (folder / "train" / "low" / "broken.wav").write_bytes(b"RIFF not really a wave")

    return made_once(tmp_path_factory, "tones", make)


@pytest.fixture(scope="session")
def audio_profile(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        (folder / "audio.toml").write_text(
            'name = "audio"\ndevice = "cpu"\nexecution_providers = ["CPUExecutionProvider"]\n'
            "intra_op_threads = 1\nbatch_size = 1\nsequence_length = 32\n"
            "latency_budget_ms = 1000.0\nmeasure_seconds = 0.2\nclip_seconds = 0.5\n"
        )

    return made_once(tmp_path_factory, "audio-profile", make) / "audio.toml"


def test_the_runtime_clip_matches_transformers_feature_extractor(tiny_audio_model):
    from transformers import AutoFeatureExtractor

    from edgetune.data.waveform import AudioProcessor, fit_length

    rng = np.random.default_rng(0)
    wave = tone(440, 0.4, RATE, rng)
    ours = AudioProcessor.load(tiny_audio_model).batch([(wave, RATE)], 8000)["input_values"]
    theirs = AutoFeatureExtractor.from_pretrained(tiny_audio_model)(
        fit_length(wave, 8000), sampling_rate=RATE, return_tensors="np"
    )["input_values"]
    assert np.abs(ours - theirs).max() < 1e-5


def test_resampling_keeps_a_tone_and_its_length():
    from edgetune.data.waveform import resample

    rng = np.random.default_rng(0)
    wave = tone(300, 1.0, 8000, rng)
    up = resample(wave, 8000, RATE)
    assert len(up) == RATE
    peak = np.argmax(np.abs(np.fft.rfft(up))) * RATE / len(up)
    assert abs(peak - 300) < 2


def test_bad_audio_is_one_line(tmp_path, tiny_audio_model, tones, audio_profile):
    from edgetune.data.audio import load_audio_dataset
    from edgetune.data.waveform import decode
    from edgetune.errors import InputError

    dataset = load_audio_dataset(tones / "train" / "..")
    assert dataset.dropped == {
        "unreadable audio file (" + str(tones / "train" / "..") + " (train))": 1
    }
    with pytest.raises(InputError, match="not a readable audio file"):
        decode(tones / "train" / "low" / "broken.wav")
    eight_k = audio_profile.parent / "8k.toml"
    eight_k.write_text(audio_profile.read_text() + "sample_rate = 8000\n")
    result = tune_tiny(tmp_path / "out", tiny_audio_model, tones, eight_k)
    assert result.exit_code == 2, result.output
    assert "asks for 8000 Hz audio but" in result.output and "takes 16000 Hz" in result.output


@pytest.fixture(scope="session")
def audio_run(tmp_path_factory, tiny_audio_model, tones, audio_profile):
    def make(folder: Path) -> None:
        result = tune_tiny(
            folder / "out",
            tiny_audio_model,
            tones,
            audio_profile,
            *("--epochs", "6", "--lr", "3e-3", "--batch-size", "8", "--patience", "6"),
        )  # the default menu: wav2vec2 has no fusion recipe, so its modes go unfused
        assert result.exit_code == 0, result.output

    return made_once(tmp_path_factory, "audio-run", make) / "out"


@pytest.mark.e2e
def test_tune_on_a_wav_folder_bundles_an_audio_classifier(audio_run):
    report = json.loads((audio_run / "report.json").read_text())
    names = {c["name"]: c for c in report["candidates"]}
    assert set(names) >= {"fp32", "dynamic-int8", "static-int8-minmax"}
    fp32 = names["fp32"]["accuracy"]
    assert fp32["examples"] == 20 and fp32["accuracy"] >= 0.8  # tones apart by 4x in pitch
    manifest = json.loads((audio_run / "best" / "edgetune.json").read_text())
    assert manifest["task"] == "audio-classification" and manifest["max_length"] == 8000
    assert (audio_run / "best" / "preprocessor_config.json").is_file()


@pytest.mark.e2e
def test_an_audio_bundle_predicts_files_and_serves_bytes_and_samples(audio_run, tones, tmp_path):
    import soundfile
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from edgetune.cli import cli
    from edgetune.config import ServeConfig
    from edgetune.deploy.server import create_app
    from edgetune.jobs.serve import app_settings

    low = tones / "validation" / "low" / "1.wav"
    result = CliRunner().invoke(cli, ["predict", str(audio_run / "best"), "--audio", str(low)])
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.output.splitlines()[-1])
    assert predicted["audio"] == str(low) and set(predicted["scores"]) == {"high", "low"}
    bad = CliRunner().invoke(
        cli,
        [
            "predict",
            str(audio_run / "best"),
            "--audio",
            str(tones / "train" / "low" / "broken.wav"),
        ],
    )
    assert bad.exit_code == 2 and "not a readable audio file" in bad.output
    samples, rate = soundfile.read(low, dtype="float32")
    wav = io.BytesIO()
    soundfile.write(wav, samples, rate, format="WAV")
    settings = app_settings(ServeConfig(bundle=str(audio_run / "best"), max_batch=4))
    with TestClient(create_app(**settings)) as client:
        by_bytes = client.post(
            "/v1/predict", json={"audio": [base64.b64encode(wav.getvalue()).decode()]}
        )
        by_samples = client.post(
            "/v1/predict",
            json={"samples": [samples.tolist()], "sample_rate": rate},
        )
    assert by_bytes.status_code == 200, by_bytes.text
    assert by_samples.status_code == 200, by_samples.text
    first = by_bytes.json()["predictions"][0]
    assert (
        first
        == by_samples.json()["predictions"][0]
        == {k: predicted[k] for k in ("label", "scores")}
    )


@pytest.mark.e2e
def test_prune_a_wav2vec2_encoder_layers_and_ffn_but_not_heads(audio_run, tones, audio_profile):
    from click.testing import CliRunner

    from edgetune.cli import cli

    common = ["--data", str(tones), "--profile", str(audio_profile), "--lr", "3e-3"]
    target = audio_run.parent / "pruned"
    args = ["prune", str(audio_run / "work" / "best"), "--layers", "1", "--ffn", "0.5"]
    result = CliRunner().invoke(cli, [*args, "--epochs", "2", *common, "--out", str(target)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((target / "edgetune.json").read_text())
    assert manifest["task"] == "audio-classification" and manifest["pruning"]["name"] == "L1-F0.5"
    assert json.loads((target / "config.json").read_text())["num_hidden_layers"] == 1
    bench = ["bench", str(target), "--data", str(tones), "--profile", str(audio_profile)]
    done = CliRunner().invoke(cli, [*bench, "--json", "--min-runs", "5", "--min-seconds", "0.1"])
    assert done.exit_code == 0, done.output
    measured = json.loads(done.output)
    assert measured["accuracy"]["examples"] == 20 and measured["latency"]["input_shape"] == [
        1,
        8000,
    ]
    heads = ["prune", str(audio_run / "work" / "best"), "--heads", "0.5", *common]
    refused = CliRunner().invoke(cli, [*heads, "--out", str(audio_run.parent / "heads")])
    assert refused.exit_code == 2 and "the wav2vec2 family has no head pruning" in refused.output
