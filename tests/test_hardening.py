"""Files someone else made cannot be turned against the user: a checkpoint folder's module is
not imported on its own word, cache records cannot name paths outside the run, the run lock
is one writer even under a race; and the smaller items (sniffing, bomb images, hub waits)."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from vision_fixtures import LABELS, PLAIN_MODULE

from edgetune.cli import cli

MARKER_MODULE = """
from pathlib import Path

Path(__file__).with_name("IMPORTED").write_text("this module ran")
"""


def _run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def handed_over_checkpoint(tmp_path) -> Path:
    """A plain-module checkpoint whose record names `ckpt_net:small_cnn`, a module that came
    with the folder and writes IMPORTED beside itself when imported."""
    from safetensors.torch import save_file

    from edgetune.train.plain import build, save_record

    folder = tmp_path / "downloaded_ckpt"
    folder.mkdir()
    (folder / "ckpt_net.py").write_text(PLAIN_MODULE)
    sys.path.insert(0, str(folder))
    try:
        model, processor = build("ckpt_net:small_cnn", list(LABELS))
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("ckpt_net", None)
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    save_record(model, folder)
    processor.save_pretrained(folder)
    (folder / "ckpt_net.py").write_text(MARKER_MODULE + PLAIN_MODULE)
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    importlib.invalidate_caches()
    return folder


def test_a_checkpoint_folder_module_is_imported_only_when_the_user_names_it(
    handed_over_checkpoint, tmp_path, monkeypatch, tiny_profile
):
    folder = handed_over_checkpoint
    monkeypatch.chdir(folder)  # where importing from the current folder would find it
    result = _run("export", ".", "--out", tmp_path / "b", "--profile", tiny_profile)
    assert result.exit_code == 2, result.output
    assert (
        "'ckpt_net:small_cnn'" in result.output
        and "--trust-factory ckpt_net:small_cnn" in result.output
    )
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (folder / "IMPORTED").exists() and not (tmp_path / "b").exists()
    result = _run(
        "export",
        ".",
        "--out",
        tmp_path / "b",
        "--profile",
        tiny_profile,
        "--trust-factory",
        "ckpt_net:other",
    )  # another factory is not this one
    assert result.exit_code == 2 and not (folder / "IMPORTED").exists()

    # Named by the user: imported from the current folder, as uvicorn does (`prune
    # --trust-factory` end to end: tests/test_vision.py).
    from edgetune.exporter.onnx import load_checkpoint

    model, _ = load_checkpoint(folder, trust_factory="ckpt_net:small_cnn")
    sys.modules.pop("ckpt_net", None)
    assert (folder / "IMPORTED").exists() and model.config.id2label == dict(enumerate(LABELS))
    assert str(folder) not in sys.path and "" not in sys.path[:1]  # the import's path undone
