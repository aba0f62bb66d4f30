"""Files someone else made cannot be turned against the user: a checkpoint folder's module is
not imported on its own word, cache records cannot name paths outside the run, the run lock
is one writer even under a race; and the smaller items (sniffing, bomb images, hub waits)."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
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


def _student_record(run: Path, name: str, model_path: Path) -> dict:
    return {
        "candidates": [
            {
                "name": name,
                "precision": "int8",
                "model_path": str(model_path),
                "checkpoint": str(run / "work" / "search" / "students" / "s"),
                "accuracy": None,
                "latency": None,
                "size_mb": 1.0,
            }
        ]
    }


def test_a_cache_record_that_names_a_path_outside_the_run_is_set_aside(tmp_path, caplog):
    from edgetune.search.cache import Cache, TrainedRecord

    run = tmp_path / "run"
    cache = Cache(run / "work" / "search" / "cache")
    inside = run / "work" / "search" / "students" / "s" / "onnx" / "model.onnx"
    key = Cache.key("trained", "L4")
    cache.put(key, _student_record(run, "L4+dynamic-int8", inside))
    assert cache.get(key, TrainedRecord)["candidates"][0]["name"] == "L4+dynamic-int8"

    (tmp_path / "x").mkdir()  # what `out / "candidates" / "../../x"` would have replaced
    for name, model_path in [
        ("../../x", inside),
        (".hidden", inside),
        ("L4", tmp_path / "x"),
        ("L4", run / "work" / ".." / ".." / "secret.onnx"),
    ]:
        cache.put(key, _student_record(run, name, model_path))
        caplog.clear()
        assert cache.get(key, TrainedRecord) is None
        assert "is not a TrainedRecord" in caplog.text and "redone" in caplog.text
        assert (cache.folder / f"{key}.invalid").is_file() and not (
            cache.folder / f"{key}.json"
        ).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "x"]  # nothing written outside
    assert not list((tmp_path / "x").iterdir())


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _take_the_lock(folder: Path, start, outcomes) -> None:
    """One racer: at the signal, take the run lock as `--resume` does; hold it a moment."""
    from edgetune.errors import InputError
    from edgetune.fsutil import run_lock

    start.wait()
    try:
        with run_lock(folder, take_stale=True):
            outcomes.put("took it")
            time.sleep(0.3)
    except InputError as exc:
        outcomes.put(str(exc))


def test_resumes_racing_on_a_stale_lock_exactly_one_takes_it(tmp_path):
    context = multiprocessing.get_context("fork")
    stale = json.dumps({"pid": _dead_pid(), "host": os.uname().nodename, "since": "then"})
    for attempt in range(8):
        folder = tmp_path / f"run{attempt}"
        folder.mkdir()
        (folder / ".edgetune.lock").write_text(stale)
        start, outcomes = context.Event(), context.Queue()
        racers = [
            context.Process(target=_take_the_lock, args=(folder, start, outcomes)) for _ in range(4)
        ]
        for racer in racers:
            racer.start()
        time.sleep(0.3)
        start.set()
        results = [outcomes.get(timeout=30) for _ in racers]
        for racer in racers:
            racer.join(timeout=30)
        assert results.count("took it") == 1, results
        assert all("in use by another edgetune run" in r for r in results if r != "took it"), (
            results
        )
        assert not (folder / ".edgetune.lock").exists()


def test_a_stale_or_corrupt_lock_is_one_line_and_taken_on_resume(tmp_path):
    from edgetune.errors import InputError
    from edgetune.fsutil import run_lock

    lock = tmp_path / ".edgetune.lock"
    for content, who in [
        ('{"pid": "abc"', "unreadable owner record"),
        ("[1, 2]", "unreadable owner record"),
        (json.dumps({"pid": _dead_pid(), "host": os.uname().nodename, "since": "t"}), "pid "),
    ]:
        lock.write_text(content)
        with pytest.raises(InputError, match="stale lock") as refused, run_lock(tmp_path):
            pass
        assert who in str(refused.value) and "--force-unlock" in str(refused.value)
        assert lock.read_text() == content  # left as found
        with run_lock(tmp_path, take_stale=True):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not lock.exists()
