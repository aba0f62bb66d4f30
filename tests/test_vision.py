"""Image classification end to end on tiny random-init models of every family: data sources,
tune (a few steps: export check, every quantization mode the family takes, bench, bundle),
one pruning configuration per family, and the one-line refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from vision_fixtures import (
    IMAGE_FAMILIES,
    LABELS,
    PLAIN_MODULE,
    write_image_folder,
    write_tiny_image_model,
)

from edgetune.cli import cli
from edgetune.errors import InputError

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out

TRAIN = [
    "--epochs", "2", "--lr", "1e-3", "--batch-size", "8", "--rounds", "2", "--no-tune-session"
]  # fmt: skip


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images") / "data", per_class=30)


def _run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _tune(out: Path, model: Path, data: Path, profile: Path, *extra):
    return _run(
        "tune", "--model", model, "--data", data, "--profile", profile, "--out", out, *TRAIN, *extra
    )


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, image_folder, tiny_profile) -> dict[str, Path]:
    """Every family tuned once; what each test reads."""
    runs = {}
    for family in IMAGE_FAMILIES:
        root = tmp_path_factory.mktemp(family)
        model = write_tiny_image_model(root / "model", family)
        modes = ["--modes", "fp32,dynamic-int8,static-int8-minmax,int4"] if family == "vit" else []
        result = _tune(root / "run", model, image_folder, tiny_profile, *modes)
        assert result.exit_code == 0, (family, result.output)
        runs[family] = root / "run"
    return runs


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_tune_every_family_builds_checked_bundles(tuned, family):
    run = tuned[family]
    report = json.loads((run / "report.json").read_text())
    names = {c["name"] for c in report["candidates"]}
    assert {"fp32", "static-int8-minmax"} <= names, names
    assert "dynamic-int8" in names  # unfused where ORT has no fusion recipe for the family
    manifest = json.loads((run / "best" / "edgetune.json").read_text())
    assert manifest["task"] == "image-classification"
    assert manifest["labels"] == list(LABELS)
    assert manifest["input_names"] == ["pixel_values"]
    assert manifest["export_check"]["max_abs_diff"] <= 1e-4
    assert (run / "best" / "preprocessor_config.json").is_file()
    for c in report["candidates"]:
        assert c["accuracy"]["examples"] == 6  # the held-out images, on the ONNX model itself
        assert c["latency"]["input_shape"][1:] == [3, 32, 32]
    # decoding and resizing the files, timed apart from the model (what `predict` does first)
    assert report["run"]["front_end"]["what"].startswith("the image front end (decode, resize")
    assert report["run"]["front_end"]["p50_ms"] > 0
    assert "## Before the model" in (run / "report.md").read_text()


@pytest.mark.parametrize("family", ["vit", "convnext"])
def test_the_tune_front_end_is_timed_with_the_processor_predict_loads(tuned, family):
    from transformers import AutoImageProcessor

    from edgetune.data.image_processor import ImageProcessor, as_loaded, load_image_processor

    best = tuned[family] / "best"
    loaded = load_image_processor(best)
    assert isinstance(loaded, ImageProcessor)
    assert as_loaded(AutoImageProcessor.from_pretrained(best)) == loaded


def test_image_files_are_read_as_bytes_from_paths_bytes_or_an_archive(tmp_path):
    import io
    import zipfile

    import datasets
    from PIL import Image

    from edgetune.modality.image import _image_files

    picture = tmp_path / "a.png"
    Image.new("RGB", (8, 6), (10, 200, 30)).save(picture)
    from_path = datasets.Dataset.from_dict({"image": [str(picture)]})
    from_bytes = datasets.Dataset.from_dict({"image": [{"bytes": picture.read_bytes()}]})
    for split in (from_path, from_bytes):
        split = split.cast_column("image", datasets.Image())
        assert _image_files(split, 4) == [picture.read_bytes()]
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:  # no file to read: re-encoded
        archive.write(picture, "a.png")
    in_archive = datasets.Dataset.from_dict({"image": [f"zip://a.png::{tmp_path}/images.zip"]})
    encoded = _image_files(in_archive.cast_column("image", datasets.Image()), 4)
    assert Image.open(io.BytesIO(encoded[0])).size == (8, 6)


def test_vit_takes_int4_and_its_int8_graph_is_quantized(tuned):
    import onnx

    run = tuned["vit"]
    names = {c["name"] for c in json.loads((run / "report.json").read_text())["candidates"]}
    assert "int4" in names
    ops = {
        n.op_type
        for n in onnx.load(str(run / "candidates" / "static-int8-minmax" / "model.onnx")).graph.node
    }
    assert "QuantizeLinear" in ops


def test_bench_image_bundle_with_data_measures_accuracy(tuned, image_folder, tiny_profile):
    run = tuned["resnet"]
    result = _run(
        "bench",
        run / "best",
        run / "candidates" / "fp32",
        "--profile",
        tiny_profile,
        "--data",
        image_folder,
        "--split",
        "all",
        "--rounds",
        "2",
        "--min-seconds",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    assert "1x3x32x32" in result.output and "n=60" in result.output
    said = " ".join(result.output.split())
    assert said.count("before the model, the image front end (decode, resize") == 2


def test_bench_bare_image_onnx_uses_profile_image_size(tuned, tmp_path):
    profile = tmp_path / "img.toml"
    profile.write_text(
        'name = "img"\nintra_op_threads = 1\nlatency_budget_ms = 1000.0\n'
        "image_size = 32\nchannels = 3\n"
    )
    result = _run(
        "bench",
        tuned["convnext"] / "best" / "model.onnx",
        "--profile",
        profile,
        "--rounds",
        "2",
        "--min-seconds",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    assert "1x3x32x32" in result.output


def test_prune_vit_layers_heads_ffn(tuned, image_folder, tiny_profile, tmp_path):
    result = _run(
        "prune",
        tuned["vit"] / "work" / "best",
        "--layers",
        "1",
        "--heads",
        "0.5",
        "--ffn",
        "0.5",
        "--data",
        image_folder,
        "--profile",
        tiny_profile,
        "--out",
        tmp_path / "pruned",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pruned" / "edgetune.json").read_text())
    assert manifest["task"] == "image-classification"
    assert manifest["pruning"]["params_after"] < manifest["pruning"]["params_before"]
    assert manifest["pruning"]["distillation"] == "layerwise"


@pytest.mark.parametrize("family", ["resnet", "mobilenet_v2"])
def test_channel_prune_cnn_reexported_and_checked(
    tuned, image_folder, tiny_profile, tmp_path, family
):
    import onnxruntime as ort

    out = tmp_path / "pruned"
    result = _run(
        "prune",
        tuned[family] / "work" / "best",
        "--pass",
        "channel-prune:ratio=0.5",
        "--data",
        image_folder,
        "--profile",
        tiny_profile,
        "--out",
        out,
        "--epochs",
        "1",
        "--lr",
        "1e-3",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "edgetune.json").read_text())
    pruning = manifest["pruning"]
    assert pruning["name"] == "channel-prune" and pruning["distillation"] == "logits"
    assert pruning["params_after"] < 0.8 * pruning["params_before"]
    assert manifest["export_check"]["max_abs_diff"] <= 1e-4  # the pruned graph vs PyTorch
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"pixel_values": np.zeros((2, 3, 32, 32), np.float32)})[0]
    assert logits.shape == (2, 2)


def test_channel_prune_refuses_a_transformer(tuned, image_folder, tiny_profile, tmp_path):
    result = _run(
        "prune",
        tuned["vit"] / "work" / "best",
        "--pass",
        "channel-prune:ratio=0.5",
        "--data",
        image_folder,
        "--profile",
        tiny_profile,
        "--out",
        tmp_path / "x",
    )
    assert result.exit_code == 2
    assert "channel-prune: the vit model is a transformer, not a CNN" in result.output
    assert not (tmp_path / "x").exists()


def test_swin_structured_pruning_refused_in_one_line(tuned, image_folder, tiny_profile, tmp_path):
    result = _run(
        "prune",
        tuned["swin"] / "work" / "best",
        "--layers",
        "1",
        "--data",
        image_folder,
        "--profile",
        tiny_profile,
        "--out",
        tmp_path / "x",
    )
    assert result.exit_code == 2
    assert "the swin family is not supported for structured pruning" in result.output


def test_image_sources_folder_splits_csv_and_unreadable(tmp_path):
    from edgetune.data.images import load_image_dataset, looks_like_images

    write_image_folder(tmp_path / "split" / "train", per_class=6)
    write_image_folder(tmp_path / "split" / "val", per_class=2, seed=1)
    (tmp_path / "split" / "train" / "dark" / "broken.png").write_bytes(b"not a png")
    data = load_image_dataset(tmp_path / "split")
    assert (len(data.train), len(data.validation)) == (12, 4)
    assert data.label_names == list(LABELS)
    assert data.dropped == {f"unreadable image ({tmp_path / 'split'} (train))": 1}
    assert data.train[0]["image"].size == (40, 40)  # decoded to PIL on access
    assert looks_like_images(tmp_path / "split")

    folder = write_image_folder(tmp_path / "flat", per_class=10)
    table = tmp_path / "images.csv"
    table.write_text(
        "path,label\n"
        + "".join(f"flat/{lab}/{i:03d}.png,{lab}\n" for lab in LABELS for i in range(10))
    )
    data = load_image_dataset(table)
    assert len(data.train) + len(data.validation) == 20 and looks_like_images(table)
    assert looks_like_images(folder)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "empty").mkdir(), "folder holds no <label>/*.jpg|png folders"),
        (
            lambda d: (d / "t.csv").write_text("path,label\nmissing.png,a\n"),
            "1 image path(s) do not exist",
        ),
        (lambda d: (d / "t.csv").write_text("file,kind\nx.png,a\n"), "no label column found"),
    ],
)
def test_bad_image_data_is_one_line(tmp_path, make, message):
    from edgetune.data.images import load_image_dataset

    make(tmp_path)
    target = next(p for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=re.escape(message)):
        load_image_dataset(target)


def test_text_model_on_images_and_image_size_refusals(
    tmp_path, image_folder, tiny_model_dir, tiny_profile
):
    result = _tune(tmp_path / "a", tiny_model_dir, image_folder, tiny_profile)
    assert result.exit_code == 2 and "holds images but model" in result.output
    vit = write_tiny_image_model(tmp_path / "vit", "vit")
    profile = tmp_path / "big.toml"
    profile.write_text(tiny_profile.read_text() + "image_size = 64\n")
    result = _tune(tmp_path / "b", vit, image_folder, profile, "--max-steps", "1")
    assert result.exit_code == 2
    assert "was trained at 32px" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "b" / "work" / "best").exists()  # refused before training


def test_profile_image_size_is_what_a_cnn_trains_and_deploys_at(
    tmp_path, image_folder, tiny_profile
):
    resnet = write_tiny_image_model(tmp_path / "resnet", "resnet")
    profile = tmp_path / "p24.toml"
    profile.write_text(tiny_profile.read_text() + "image_size = 24\n")
    result = _tune(tmp_path / "run", resnet, image_folder, profile, "--modes", "fp32")
    assert result.exit_code == 0, result.output
    processor = json.loads(
        (tmp_path / "run" / "work" / "best" / "preprocessor_config.json").read_text()
    )
    assert processor["size"] == {"shortest_edge": 24}  # trained at the profile's size
    latency = json.loads((tmp_path / "run" / "report.json").read_text())["candidates"][0]["latency"]
    assert latency["input_shape"] == [1, 3, 24, 24]


def test_plain_pytorch_image_model_tunes_reloads_and_prunes(
    tmp_path, monkeypatch, image_folder, tiny_profile
):
    from edgetune.exporter.onnx import load_checkpoint

    (tmp_path / "plain_models.py").write_text(PLAIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = _tune(tmp_path / "run", "plain_models:small_cnn", image_folder, tiny_profile)
    assert result.exit_code == 0, result.output
    best = tmp_path / "run" / "best"
    assert json.loads((best / "edgetune.json").read_text())["task"] == "image-classification"
    assert json.loads((best / "edgetune_module.json").read_text())["labels"] == list(LABELS)
    model, processor = load_checkpoint(
        tmp_path / "run" / "work" / "best",  # rebuilt, not unpickled
        trust_factory="plain_models:small_cnn",
    )
    assert model.body[-1].out_features == 2 and processor.size == {"height": 32, "width": 32}
    result = _run(
        "prune",
        tmp_path / "run" / "work" / "best",
        "--pass",
        "channel-prune:ratio=0.5",
        "--data",
        image_folder,
        "--profile",
        tiny_profile,
        "--out",
        tmp_path / "pruned",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--trust-factory",
        "plain_models:small_cnn",
    )
    assert result.exit_code == 0, result.output
    pruning = json.loads((tmp_path / "pruned" / "edgetune.json").read_text())["pruning"]
    assert pruning["params_after"] < pruning["params_before"]


def test_plain_factory_that_cannot_be_imported_is_one_line(tmp_path, image_folder, tiny_profile):
    result = _tune(tmp_path / "run", "no_such_module_here:factory", image_folder, tiny_profile)
    assert result.exit_code == 2 and "cannot import 'no_such_module_here'" in result.output
    assert not (tmp_path / "run" / "work").exists()  # refused before any training


def test_quantize_image_bundle_calibrates_on_images(tuned, image_folder, tmp_path):
    import onnx

    out = tmp_path / "q"
    result = _run(
        "quantize",
        tuned["mobilenet_v2"] / "best",
        "--mode",
        "static-int8-minmax",
        "--calibration-data",
        image_folder,
        "--calibration-samples",
        "16",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "static-int8-minmax" / "edgetune.json").read_text())
    assert manifest["quantization"]["calibration_samples"] == 16
    ops = {n.op_type for n in onnx.load(str(out / "static-int8-minmax" / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops


def test_predict_images_with_an_image_bundle(tuned, image_folder):
    import onnxruntime as ort
    from transformers import AutoImageProcessor

    from edgetune.data.pixels import pixel_batches

    best = tuned["convnext"] / "best"
    files = [image_folder / "bright" / "000.png", image_folder / "dark" / "001.png"]
    result = _run("predict", best, "--image", files[0], "--image", files[1])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [line["image"] for line in lines] == [str(f) for f in files]
    from PIL import Image

    session = ort.InferenceSession(str(best / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = pixel_batches(AutoImageProcessor.from_pretrained(best), [Image.open(f) for f in files])[
        0
    ]
    expected = session.run(None, batch)[0].argmax(-1)
    assert [line["label"] for line in lines] == [LABELS[i] for i in expected]
    assert all(abs(sum(line["scores"].values()) - 1) < 1e-4 for line in lines)
    result = _run("predict", best, "--text", "hello")
    assert result.exit_code == 2 and "classifies images: give --image" in result.output


def test_prune_search_on_a_vit(tmp_path, image_folder, tiny_profile):
    from conftest import SEARCH_ARGS

    vit = write_tiny_image_model(tmp_path / "vit", "vit")
    one_config = ["--prune-configs", "L1-H0.5-F0.5", "--epochs", "2"]  # last flag wins: short
    result = _tune(tmp_path / "run", vit, image_folder, tiny_profile, *SEARCH_ARGS, *one_config)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    pruned = [c for c in report["candidates"] if c["settings"].get("pruning")]
    assert pruned and all(c["accuracy"]["examples"] == 6 for c in pruned)


def test_export_and_prune_of_an_image_checkpoint_record_the_image_side(
    tuned, image_folder, tiny_profile, tmp_path
):
    """One modality answers for every command: `export` checks an image checkpoint on images
    (the data's, or stand-ins) and calibrates on them; `export` and `prune` record the image
    side as the bundle's input size, not the profile's sequence length (64 here)."""
    profile = tmp_path / "long.toml"
    profile.write_text(
        tiny_profile.read_text().replace("sequence_length = 32", "sequence_length = 64")
    )
    checkpoint = tuned["vit"] / "work" / "best"
    for data in ([], ["--data", image_folder]):
        out = tmp_path / f"export{len(data)}"
        result = _run(
            "export", checkpoint, "--profile", profile, "--out", out,
            "--quantize", "static-int8-minmax", *data,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "edgetune.json").read_text())
        assert manifest["task"] == "image-classification" and manifest["max_length"] == 32
        assert manifest["export_check"]["examples"] == (6 if data else 2)
    result = _run(
        "prune", checkpoint, "--layers", "1", "--data", image_folder, "--profile", profile,
        "--out", tmp_path / "pruned", "--epochs", "1", "--lr", "1e-3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "pruned" / "edgetune.json").read_text())["max_length"] == 32


def test_predict_on_a_file_that_is_not_an_image_is_one_line(tuned, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not pixels")
    result = _run("predict", tuned["resnet"] / "best", "--image", bad)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {bad}: not a readable image"]
