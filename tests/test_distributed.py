"""`edgetune tune` under torchrun: two CPU processes (gloo) train data-parallel; one writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import make_rows, write_csv

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out


def test_tune_under_torchrun_with_two_cpu_processes(tmp_path, tiny_model_dir, tiny_profile):
    data = write_csv(tmp_path / "d.csv", make_rows(240))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGETUNE_PROGRESS_SECONDS": "3600"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "edgetune.cli.main",
        "tune",
        "--no-tune-session",  # timed in test_session_tuning
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--profile",
        str(tiny_profile),
        "--out",
        str(out),
        "--modes",
        "fp32,dynamic-int8",
        "--max-steps",
        "6",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--rounds",
        "2",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("bundle: ") == 1  # one process printed the result
    record = json.loads((out / "work" / "best" / "edgetune_train.json").read_text())
    assert record["processes"] == 2 and record["steps"] == 6
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["candidates"]] == ["fp32", "dynamic-int8"]
    manifest = json.loads((out / "best" / "edgetune.json").read_text())
    assert manifest["candidate"] == report["selection"]["winner"]
    assert sorted(p.name for p in (out / "candidates").iterdir()) == ["dynamic-int8", "fp32"]
    assert not (out / ".edgetune.lock").exists() and not list(out.rglob(".*.tmp-*"))
