"""Faults while running: two writers, SIGKILL then --resume, a torn cache entry, a full disk,
a damaged checkpoint; and what a user sees: progress without a terminal, dropped-row counts,
readable bundles, no hang on a relative checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import TINY_TRAIN, make_rows, write_csv

from edgetune.cli import cli

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out


def tune(model, data, profile, out, *extra):
    return CliRunner().invoke(
        cli,
        [
            str(a)
            for a in (
                "tune",
                "--no-tune-session",  # timed in test_session_tuning
                "--model",
                model,
                "--data",
                data,
                "--profile",
                profile,
                "--out",
                out,
                "--modes",
                "fp32",
                "--rounds",
                "2",
                *extra,
            )
        ],
    )


def test_export_of_a_relative_checkpoint_does_not_hang(
    tuned_run, tmp_path, monkeypatch, tiny_profile
):
    out, _ = tuned_run
    # the shared run is read-only: the checkpoint is copied before its sample is removed
    shutil.copytree(out / "work" / "best", tmp_path / "work" / "best")
    monkeypatch.chdir(tmp_path / "work")
    (tmp_path / "work" / "best" / "edgetune_validation_sample.json").unlink(missing_ok=True)
    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["export", "best", "--out", str(tmp_path / "b"), "--profile", str(tiny_profile)]
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 60


def test_a_second_writer_is_refused_and_a_stale_lock_is_reported(
    tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile
):
    from edgetune.fsutil import run_lock

    out = tmp_path / "run"
    out.mkdir()
    lock = out / ".edgetune.lock"
    with run_lock(out):  # a live run's lock (a second open of the file cannot take it either)
        result = tune(tiny_model_dir, tiny_data_csv, tiny_profile, out, "--overwrite")
    assert result.exit_code == 2 and "in use by another edgetune run" in result.output
    assert f"pid {os.getpid()}" in result.output
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "then"}))
    result = tune(tiny_model_dir, tiny_data_csv, tiny_profile, out, "--overwrite")
    assert (
        result.exit_code == 2
        and "stale lock" in result.output
        and "--force-unlock" in result.output
    )
    assert lock.is_file()  # not taken without being asked
    result = tune(
        tiny_model_dir,
        tiny_data_csv,
        tiny_profile,
        out,
        "--overwrite",
        "--force-unlock",
        "--max-steps",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert not lock.exists() and (out / "best" / "model.onnx").is_file()


def test_sigkill_while_writing_candidates_then_resume(
    tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile
):
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "edgetune.cli.main",
        "tune",
        "--no-tune-session",  # timed in test_session_tuning
        "--model",
        str(tiny_model_dir),
        "--data",
        str(tiny_data_csv),
        "--profile",
        str(tiny_profile),
        "--out",
        str(out),
        "--modes",
        "fp32,dynamic-int8",
        "--rounds",
        "2",
        *TINY_TRAIN,
        *("--epochs", "2"),  # what is killed is the writing of candidates, not training
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "candidates").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the kill: nothing was killed mid-write"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    for folder in (out / "best", *(out / "candidates").glob("*")):
        if folder.is_dir() and not folder.name.startswith("."):
            assert (folder / "edgetune.json").is_file()  # whole or absent, never half
    result = CliRunner().invoke(cli, [str(a) for a in args[3:]] + ["--resume"])
    assert result.exit_code == 0, result.output
    assert (out / "best" / "edgetune.json").is_file()
    assert not [p for p in out.rglob(".*.tmp-*")] and not (out / ".edgetune.lock").exists()


def test_a_torn_cache_record_is_redone(tmp_path):
    from edgetune.search.cache import Cache, TrainedRecord

    cache = Cache(tmp_path)
    key = Cache.key("trained", "x")
    cache.put(key, {"candidates": []})
    (tmp_path / f"{key}.json").write_text('{"candidates": [')  # killed mid-write, by hand
    assert cache.get(key, TrainedRecord) is None and (tmp_path / f"{key}.torn").is_file()
    cache.put(key, {"candidates": []})
    assert cache.get(key, TrainedRecord) == {"candidates": []}


def test_a_damaged_checkpoint_is_set_aside_on_resume(
    tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile
):
    out = tmp_path / "run"
    result = tune(
        tiny_model_dir,
        tiny_data_csv,
        tiny_profile,
        out,
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--patience",
        "8",
    )
    assert result.exit_code == 0, result.output
    checkpoints = sorted(
        (out / "work" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])
    )
    assert len(checkpoints) >= 2
    last = checkpoints[-1]
    weights = last / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a torn write
    (out / "work" / "best" / "edgetune_train.json").unlink()  # training not finished
    result = tune(
        tiny_model_dir,
        tiny_data_csv,
        tiny_profile,
        out,
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--patience",
        "8",
        "--resume",
    )
    assert result.exit_code == 0, result.output
    assert list((out / "work" / "checkpoints").glob(f"damaged-{last.name}-*"))


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tuned_run, tmp_path, tiny_profile):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)],
        check=False,
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out, _ = tuned_run
        result = CliRunner().invoke(
            cli,
            [
                "export",
                str(out / "work" / "best"),
                "--out",
                str(disk / "bundle"),
                "--profile",
                str(tiny_profile),
            ],
        )
        assert result.exit_code == 2, result.output
        assert "No space left on device" in result.output and "Traceback" not in result.output
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_progress_lines_without_a_terminal_and_dropped_rows(
    tmp_path, tiny_model_dir, tiny_profile, monkeypatch
):
    monkeypatch.setenv("EDGETUNE_PROGRESS_SECONDS", "0.001")
    data = write_csv(tmp_path / "d.csv", [*make_rows(120), ("", "positive"), ("some text", "")])
    result = tune(
        tiny_model_dir,
        data,
        tiny_profile,
        tmp_path / "run",
        "--max-steps",
        "6",
        "--batch-size",
        "16",
    )
    assert result.exit_code == 0, result.output
    assert "step 3/6 (50 %)" in result.output and "steps/s, ETA" in result.output
    assert "left out 2 row(s): empty text or label (train)" in " ".join(result.output.split())
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["run"]["dropped_rows"] == {"empty text or label (train)": 2}


def test_drop_unseen_labels_counts_what_it_drops(tmp_path):
    from edgetune.data.text import load_text_dataset

    write_csv(tmp_path / "train.csv", make_rows(40))
    write_csv(tmp_path / "validation.csv", [*make_rows(10, seed=1), ("meh", "neutral")])
    ds = load_text_dataset(tmp_path, drop_unseen_labels=True)
    assert ds.label_names == ["negative", "positive"] and len(ds.validation) == 10
    assert ds.dropped == {"validation label not in train": 1}


def test_bundles_are_readable_by_others(tuned_run):
    """As any file the user makes (the umask decides), not mkdtemp's private 0700."""
    out, _ = tuned_run
    mask = os.umask(0)
    os.umask(mask)
    best = out / "best"
    assert stat.S_IMODE(best.stat().st_mode) == 0o777 & ~mask
    for item in best.iterdir():
        assert stat.S_IMODE(item.stat().st_mode) == 0o666 & ~mask, item
    assert stat.S_IMODE((out / "report.json").stat().st_mode) == 0o666 & ~mask
