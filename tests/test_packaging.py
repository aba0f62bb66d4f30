"""Every pinned requirement (the `gpu` extra's included) names a version the registry has.

`pip install 'edgetune[gpu]'` once pinned onnxruntime-gpu 1.32.0, which was never released:
this asks the registry (`pip index versions`, no download) for each exact pin.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def exact_pins() -> list[tuple[str, str]]:
    requirements = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        requirements += extra
    pins = [re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)\s*", r) for r in requirements]
    return [(m.group(1), m.group(2)) for m in pins if m]


def available_versions(package: str) -> list[str] | None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", package],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"Available versions: (.+)", result.stdout)
    return [v.strip() for v in match.group(1).split(",")] if match else None


def test_the_gpu_extra_is_pinned_and_matches_the_wheel_script():
    gpu = PYPROJECT["project"]["optional-dependencies"]["gpu"]
    assert len(gpu) == 1 and gpu[0].startswith("onnxruntime-gpu==")
    assert gpu[0] in (ROOT / "benchmarks" / "gpu_wheels.sh").read_text()


@pytest.mark.registry
@pytest.mark.parametrize("package, version", exact_pins(), ids=lambda x: str(x))
def test_every_exact_pin_exists_in_the_registry(package, version):
    versions = available_versions(package)
    if versions is None:
        pytest.skip(f"the registry did not answer for {package}")
    assert version in versions, (
        f"{package}=={version} is not in the registry (it has {versions[:5]}...)"
    )
