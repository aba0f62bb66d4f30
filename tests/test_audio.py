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
            "loadtest_step_seconds = 0.5\n"
        )

    return made_once(tmp_path_factory, "audio-profile", make) / "audio.toml"


def test_the_runtime_clip_matches_transformers_feature_extractor(tiny_audio_model):
    from transformers import AutoFeatureExtractor

    from edgetune.data.front_end import load_audio_processor
    from edgetune.data.waveform import fit_length

    rng = np.random.default_rng(0)
    wave = tone(440, 0.4, RATE, rng)
    ours = load_audio_processor(tiny_audio_model).batch([(wave, RATE)], 8000)["input_values"]
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
        raw = client.post("/v1/predict", content=wav.getvalue())
        torn = client.post("/v1/predict", content=wav.getvalue()[:30])
    assert raw.status_code == 200 and raw.json()["predictions"] == by_bytes.json()["predictions"]
    assert torn.status_code == 422 and "not a readable audio file" in torn.json()["error"]
    assert by_bytes.status_code == 200, by_bytes.text
    assert by_samples.status_code == 200, by_samples.text
    first = by_bytes.json()["predictions"][0]
    assert first == by_samples.json()["predictions"][0]
    assert first == {k: v for k, v in predicted.items() if k != "audio"}
    assert ("cut" in first) == (len(samples) / rate > 0.5)  # the profile's clip_seconds


def test_a_clip_longer_than_the_model_hears_says_so(plain_audio_run):
    from edgetune.deploy.bundle import load_bundle
    from edgetune.deploy.runtime import AudioPredictor

    predictor = AudioPredictor(load_bundle(plain_audio_run / "out" / "best"))
    rng = np.random.default_rng(0)
    long, short = tone(300, 2.0, 8000, rng), tone(300, 0.4, RATE, rng)
    results = predictor.predict_clips([(long, 8000), (short, RATE)])
    assert results[0]["cut"] == {"seconds": 2.0, "heard_seconds": 0.5}
    assert "cut" not in results[1]


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


# A plain PyTorch keyword spotter over log-mel features (`plain_audio:small_kws` once written
# as plain_audio.py): mel bins as the channels of 1-d convolutions over time.
PLAIN_AUDIO_MODULE = """
import torch
from torch import nn


def small_kws():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(32, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Conv1d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(16, 10))


small_kws.modality = "audio"
small_kws.n_mels = 32
"""


def test_log_mel_features_match_transformers_audio_utils():
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    from edgetune.data.logmel import LogMelProcessor

    rng = np.random.default_rng(0)
    wave = tone(440, 0.5, RATE, rng) + rng.normal(0, 0.01, RATE // 2).astype(np.float32)
    ours = LogMelProcessor(n_mels=40, do_normalize=False).features(wave)
    filters = mel_filter_bank(201, 40, 0.0, 8000.0, RATE, norm=None, mel_scale="htk")
    theirs = spectrogram(
        wave.astype(np.float64),
        window_function(400, "hann"),
        frame_length=400,
        hop_length=160,
        power=2.0,
        mel_filters=filters,
        mel_floor=1e-6,
        log_mel="log",
    )
    assert ours.shape == theirs.shape == (40, 51)
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.fixture(scope="session")
def plain_audio_run(tmp_path_factory, tones, audio_profile):
    def make(folder: Path) -> None:
        (folder / "plain_audio.py").write_text(PLAIN_AUDIO_MODULE)
        with pytest.MonkeyPatch.context() as patch:
            patch.syspath_prepend(str(folder))
            result = tune_tiny(
                folder / "out",
                "plain_audio:small_kws",
                tones,
                audio_profile,
                *("--epochs", "4", "--lr", "1e-2", "--batch-size", "8", "--patience", "4"),
                "--loadtest",  # the chosen bundle served and sent the validation clips
            )  # the default menu, unfused: a plain module has no fusion recipe
        assert result.exit_code == 0, result.output

    return made_once(tmp_path_factory, "plain-audio-run", make)


@pytest.mark.e2e
def test_a_plain_pytorch_audio_model_tunes_on_log_mels_predicts_and_reloads(
    plain_audio_run, tones, monkeypatch
):
    from edgetune.deploy.bundle import load_bundle
    from edgetune.deploy.runtime import AudioPredictor
    from edgetune.exporter.onnx import load_checkpoint

    out = plain_audio_run / "out"
    report = json.loads((out / "report.json").read_text())
    names = {c["name"]: c for c in report["candidates"]}
    assert set(names) >= {"fp32", "dynamic-int8", "static-int8-minmax"}
    assert names["fp32"]["accuracy"]["accuracy"] >= 0.8  # tones apart by 4x in pitch
    assert names["fp32"]["latency"]["input_shape"] == [1, 32, 51]  # 0.5 s of 10 ms frames
    # the numpy front end, timed apart from the model, in the report and in bench
    assert "log-mel" in report["run"]["front_end"]["what"]
    assert report["run"]["front_end"]["p50_ms"] > 0
    assert "## Before the model" in (out / "report.md").read_text()
    served = json.loads((out / "loadtest" / "loadtest.json").read_text())
    assert served["steps"][0]["ok"] == served["steps"][0]["sent"] > 0  # errors: past saturation
    assert served["capacity_rps"] > 0
    assert json.loads((out / "best" / "edgetune.json").read_text())["serving"]["saturated_rps"] > 0
    from click.testing import CliRunner

    from edgetune.cli import cli

    fast = ["--rounds", "2", "--min-runs", "4", "--min-seconds", "0.1", "--json"]
    bench = CliRunner().invoke(cli, ["bench", str(out / "best"), *fast])
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.output)["front_end"]["batch_size"] == 1
    table = CliRunner().invoke(cli, ["bench", str(out / "best"), *fast[:-1]])
    assert table.exit_code == 0, table.output
    assert ": before the model, " in " ".join(table.output.split())
    assert "not in the times above" in " ".join(table.output.split())
    manifest = json.loads((out / "best" / "edgetune.json").read_text())
    assert manifest["task"] == "audio-classification"
    assert manifest["input_names"] == ["input_features"]
    front = json.loads((out / "best" / "preprocessor_config.json").read_text())
    assert front["feature_extractor_type"] == "EdgetuneLogMel" and front["n_mels"] == 32
    low = tones / "validation" / "low" / "1.wav"
    predicted = AudioPredictor(load_bundle(out / "best")).predict([low])[0]
    assert set(predicted["scores"]) == {"high", "low"}
    monkeypatch.syspath_prepend(str(plain_audio_run))
    model, processor = load_checkpoint(out / "work" / "best", trust_factory="plain_audio:small_kws")
    assert model.config.modality == "audio" and processor.n_mels == 32
    assert model.body[-1].out_features == 2


@pytest.mark.e2e
def test_channel_pruning_shrinks_a_plain_audio_model(plain_audio_run, tones, audio_profile):
    from click.testing import CliRunner

    from edgetune.cli import cli

    spec = "plain_audio:small_kws"
    args = ["prune", str(plain_audio_run / "out" / "work" / "best"), "--pass"]
    args += ["channel-prune:ratio=0.5", "--data", str(tones), "--profile", str(audio_profile)]
    args += ["--epochs", "1", "--lr", "1e-2", "--trust-factory", spec]
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(plain_audio_run))
        result = CliRunner().invoke(cli, [*args, "--out", str(plain_audio_run / "pruned")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((plain_audio_run / "pruned" / "edgetune.json").read_text())
    assert manifest["task"] == "audio-classification"
    assert manifest["pruning"]["params_after"] < manifest["pruning"]["params_before"]


@pytest.mark.e2e
def test_loadtest_of_an_audio_bundle_sends_clips(plain_audio_run, tones, tmp_path):
    from click.testing import CliRunner

    from edgetune.cli import cli

    bundle = str(plain_audio_run / "out" / "best")
    steps = ["--budget-ms", "2000", "--rates", "4", "--step-seconds", "0.5"]
    steps += ["--concurrency", "2", "--max-seconds", "20"]
    given = CliRunner().invoke(
        cli, ["loadtest", bundle, "--texts", str(tones / "validation"), *steps, "--out", tmp_path]
    )
    assert given.exit_code == 0, given.output
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert all(s["errors"] == 0 for s in report["steps"]) and report["capacity_rps"] == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = CliRunner().invoke(cli, ["loadtest", bundle, "--texts", str(empty), *steps])
    assert refused.exit_code == 2 and "no audio files" in refused.output


def test_built_in_load_test_clips_are_wav_files_at_16k():
    from edgetune.data.waveform import decode, sample_clips

    clips = [decode(c) for c in sample_clips()]
    assert len(clips) == 4 and all(rate == RATE and len(s) == RATE for s, rate in clips)


def test_training_clips_are_shifted_scaled_and_noised_reproducibly():
    from edgetune.data.waveform import augment_clip

    wave = tone(440, 0.5, RATE, np.random.default_rng(0))
    first = augment_clip(wave, RATE, np.random.default_rng(3))
    again = augment_clip(wave, RATE, np.random.default_rng(3))
    assert first.shape == wave.shape and first.dtype == np.float32
    assert np.array_equal(first, again) and not np.allclose(first, wave)
    peak = np.argmax(np.abs(np.fft.rfft(first))) * RATE / len(first)
    assert abs(peak - 440) < 4  # still the same tone


@pytest.mark.e2e
def test_an_audio_model_is_measured_and_scored_on_an_agent(
    plain_audio_run, tones, audio_profile, tmp_path
):
    from test_agent import bench_here_and_on_agent

    on_host, on_target = bench_here_and_on_agent(
        tmp_path / "store",
        plain_audio_run / "out" / "best",
        *("--data", tones, "--profile", audio_profile),
    )
    assert on_target["latency"]["p50_ms"] > 0 and on_target["latency"]["rounds"] == 2
    assert on_target["accuracy"]["examples"] == on_host["accuracy"]["examples"] > 0
    assert on_target["accuracy"]["correct"] == on_host["accuracy"]["correct"]
    assert "front_end" not in on_target  # it runs here, not on the agent: not timed there
