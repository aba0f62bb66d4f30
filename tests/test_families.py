"""Every supported encoder family end to end on a tiny random-init model built from a config:
tune (a few steps) with every CPU quantization mode, export check, bench and bundle; then a
structured pruning config with distillation (DeBERTa-v2: its refusal of head pruning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FILLER, NEGATIVE, POSITIVE, tune_tiny

from edgetune.cli import cli

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out

NO_HEAD_PRUNING = {"deberta-v2", "mpnet"}
MODES = ["fp32", "optimized-fp32", "dynamic-int8", "static-int8-minmax", "int4"]
SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 72,
}
# family -> (config class, config overrides, does its tokenizer give token_type_ids)
FAMILIES = {
    "bert": ("BertConfig", {}, True),
    "distilbert": (
        "DistilBertConfig",
        {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 72},
        False,
    ),
    "roberta": ("RobertaConfig", {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}, False),
    "xlm-roberta": (
        "XLMRobertaConfig",
        {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3},
        False,
    ),
    "deberta-v2": (
        "DebertaV2Config",
        {
            "type_vocab_size": 0,
            "relative_attention": True,
            "position_buckets": 16,
            "max_relative_positions": 32,
            "pos_att_type": ["p2c", "c2p"],
            "pad_token_id": 0,
        },
        False,
    ),
    "electra": ("ElectraConfig", {"embedding_size": 32}, True),
    "mpnet": ("MPNetConfig", {"pad_token_id": 0}, False),
}


def build_tiny(family: str, folder: Path, words: tuple[str, ...] = ()) -> Path:
    """A random-init `family` encoder; `words`: its vocabulary (default: the tiny reviews')."""
    import torch
    import transformers
    from transformers import AutoModel, BertTokenizerFast

    config_class, overrides, token_types = FAMILIES[family]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(words) or [*POSITIVE, *NEGATIVE, *FILLER]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    inputs = (
        ["input_ids", "token_type_ids", "attention_mask"]
        if token_types
        else ["input_ids", "attention_mask"]
    )
    BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_input_names=inputs
    ).save_pretrained(folder)
    fields = {**(SMALL if family != "distilbert" else {}), **overrides}
    config = getattr(transformers, config_class)(vocab_size=len(vocab), **fields)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def family_profile(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "families.toml"
    path.write_text(
        'name = "families"\ndevice = "cpu"\nexecution_providers = ["CPUExecutionProvider"]\n'
        "intra_op_threads = 1\nbatch_size = 1\nsequence_length = 32\n"
        'latency_budget_ms = 1000.0\nprecisions = ["fp32", "int8", "int4"]\nmeasure_seconds = 0.2\n'
    )
    return path


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_tunes_compresses_prunes_and_bundles(
    family, tmp_path, tiny_data_csv, family_profile
):
    model = build_tiny(family, tmp_path / "model")
    out = tmp_path / "run"
    result = tune_tiny(
        out,
        model,
        tiny_data_csv,
        family_profile,
        "--max-steps",
        "6",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--modes",
        ",".join(MODES),
        "--calibration-samples",
        "16",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["candidates"]] == MODES
    assert report["run"]["export_check"]["max_abs_diff"] <= report["run"]["export_check"]["atol"]
    for candidate in report["candidates"]:
        assert candidate["latency"]["p50_ms"] > 0
    fp32 = next(c for c in report["candidates"] if c["name"] == "fp32")
    rows = fp32["accuracy"]["examples"]  # the ONNX model's accuracy is PyTorch's, row for row
    assert abs(fp32["accuracy"]["accuracy"] - report["run"]["pytorch_accuracy"]) <= 1 / rows + 1e-9
    fused = next(c for c in report["candidates"] if c["name"] == "optimized-fp32")
    assert any(s.get("chose", {}).get("model_type") == "bert" for s in fused["settings"]["steps"])
    assert (out / "best" / "model.onnx").is_file()

    heads = ["--heads", "0.5"] if family not in NO_HEAD_PRUNING else []
    pruned = tmp_path / "pruned"
    runner = CliRunner()
    done = runner.invoke(
        cli,
        [
            str(a)
            for a in (
                "prune",
                out / "work" / "best",
                "--data",
                tiny_data_csv,
                "--out",
                pruned,
                "--layers",
                "1",
                *heads,
                "--ffn",
                "0.5",
                "--max-train-samples",
                "64",
                "--profile",
                family_profile,
            )
        ],
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((pruned / "edgetune.json").read_text())
    assert manifest["pruning"]["params_after"] < manifest["pruning"]["params_before"]
    config = json.loads((pruned / "config.json").read_text())
    assert config.get("num_hidden_layers", config.get("n_layers")) == 1
    assert config.get("intermediate_size", config.get("hidden_dim")) == 32
    if family in NO_HEAD_PRUNING:
        refused = runner.invoke(
            cli,
            [
                str(a)
                for a in (
                    "prune",
                    out / "work" / "best",
                    "--data",
                    tiny_data_csv,
                    "--out",
                    tmp_path / "no",
                    "--heads",
                    "0.5",
                    "--profile",
                    family_profile,
                )
            ],
        )
        assert refused.exit_code == 2 and f"{family} family has no head pruning" in refused.output
        assert not (tmp_path / "no").exists()


def test_a_family_without_a_fusion_recipe_is_refused_for_that_step():
    from edgetune.compress.onnx_passes import ort_model_type
    from edgetune.errors import InputError

    assert ort_model_type("mpnet") == "bert" and ort_model_type(None) == "bert"
    with pytest.raises(InputError, match="ort-fusion: the reformer family"):
        ort_model_type("reformer")
