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


def test_sniffing_a_data_file_reads_its_head_not_the_whole_file(tmp_path, monkeypatch):
    """A file past the full check's size is sniffed from its first bytes: memory stays small."""
    import tracemalloc

    import datasets

    from edgetune.data.text import load_text_dataset
    from edgetune.errors import InputError

    data = tmp_path / "big.csv"
    with data.open("wb") as handle:
        handle.write(b"text,label\nfine,a\nalso fine,b\n")
        handle.truncate(300 * 1024 * 1024)  # sparse: 300 MiB to read, no disk used

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached  # the sniffing is over once `datasets` is asked to read the file

    monkeypatch.setattr(datasets, "load_dataset", reached)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="Reached"):  # said as a file `datasets` cannot read
            load_text_dataset(str(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"sniffing allocated {peak / 2**20:.0f} MiB"


def test_a_decompression_bomb_image_is_skipped_and_counted(tmp_path, monkeypatch):
    from PIL import Image
    from vision_fixtures import write_image_folder

    from edgetune.data.images import load_image_dataset

    folder = write_image_folder(tmp_path / "images", per_class=8, size=16)  # 256 px each
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's limit, small for the test
    Image.new("L", (40, 40)).save(folder / "bright" / "warns.png")  # 1,600 px: past the limit
    Image.new("L", (64, 64)).save(folder / "dark" / "bomb.png")  # 4,096 px: past twice the limit
    dataset = load_image_dataset(folder)
    assert (
        sum(count for reason, count in dataset.dropped.items() if "unreadable image" in reason) == 2
    )
    assert len(dataset.train) + len(dataset.validation) == 16


def test_a_measurement_worker_does_not_import_from_the_current_folder(tmp_path, monkeypatch):
    import onnxruntime

    shipped = Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx"
    planted = 'from pathlib import Path\nPath(__file__).with_name("IMPORTED").write_text("ran")\n'
    for name in ("numpy.py", "onnxruntime.py", "edgetune.py"):
        (tmp_path / name).write_text(planted)
    monkeypatch.chdir(tmp_path)
    result = _run(
        "bench", shipped, "--json", "--rounds", "2", "--min-runs", "4", "--min-seconds", "0.2"
    )
    assert not (tmp_path / "IMPORTED").exists()
    assert result.exit_code == 0, result.output


HUB_CHECK = """
import sys, time
from click.testing import CliRunner
from transformers import AutoConfig  # imported before the clock starts
from edgetune.cli import cli
import edgetune.jobs.tune, edgetune.train.sources, edgetune.modality, edgetune.train.plain
import edgetune.train.tasks, datasets, torch  # what a tune imports on the way: not the hub
started = time.monotonic()
result = CliRunner().invoke(cli, sys.argv[1:])
print(round(time.monotonic() - started, 1), result.exit_code)
print(result.output.strip())
"""


def test_a_model_neither_local_nor_reachable_fails_in_seconds(tmp_path, tiny_data_csv):
    import socket

    with socket.socket() as closed:  # a loopback port nothing listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    args = [
        "tune",
        "--no-tune-session",  # timed in test_session_tuning
        "--model",
        "models/missing",
        "--data",
        str(tiny_data_csv),
        "--out",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(
        [sys.executable, "-P", "-c", HUB_CHECK, *args],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds, code = done.stdout.split("\n")[0].split()
    assert int(code) == 2, done.stdout + done.stderr
    assert "'models/missing'" in done.stdout and "cannot be reached" in done.stdout
    assert float(seconds) < 15, f"{seconds} s to refuse (transformers' hub retries take ~30 s)"


def test_a_link_in_a_built_folder_is_not_followed_when_modes_are_set(tmp_path):
    """Modes are set through descriptors opened without following links: a link to a private
    file elsewhere does not make that file readable by others."""
    import stat

    from edgetune.fsutil import build_dir_atomic

    private = tmp_path / "private.key"
    private.write_text("secret")
    private.chmod(0o600)

    def build(staging: Path) -> None:
        (staging / "model.onnx").write_text("model")
        (staging / "link").symlink_to(private)

    out = build_dir_atomic(tmp_path / "bundle", build, overwrite=False)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (out / "model.onnx").read_text() == "model" and (out / "link").is_symlink()
