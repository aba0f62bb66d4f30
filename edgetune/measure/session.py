"""ONNX Runtime sessions on a profile: providers and threads, the session settings a bundle
records (`SessionSettings`), no silent fallback, IO binding, and the memory a process holds.
No torch here, on purpose."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from edgetune.errors import InputError
from edgetune.profiles import Profile


def check_providers(profile: Profile) -> None:
    """The profile's execution providers exist in this onnxruntime (checked before training)."""
    available = ort.get_available_providers()
    missing = [p for p in profile.execution_providers if p not in available]
    if missing:
        raise InputError(
            f"profile '{profile.name}' asks for {', '.join(missing)}, which this onnxruntime "
            f"does not have (available: {', '.join(available)}); use a profile for this machine"
        )


SPINNING = "session.intra_op.allow_spinning"  # ORT's session config keys
INTER_SPINNING = "session.inter_op.allow_spinning"
OPTIMIZATION = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}
EXECUTION = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


class SessionSettings(BaseModel):
    """The few ONNX Runtime settings that change a CPU session's speed: what session tuning
    chooses among (`measure/tuning.py`), a bundle records and every session of it uses. The
    defaults are the session every measurement used before tuning, so "untuned" is unchanged.
    Strict: a manifest or a request saying `"yes"` for a bool is refused, not guessed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    intra_op_threads: int | None = Field(None, ge=1, le=1024, description="None: the profile's")
    allow_spinning: bool = Field(True, description="idle pool threads spin (ORT's default)")
    graph_optimization: Literal["all", "extended", "basic"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    inter_op_threads: int = Field(1, ge=1, le=1024, description="parallel mode's node threads")

    def changes(self) -> dict:
        """The settings that differ from the default (what a tuning trial varies)."""
        return self.model_dump(exclude_defaults=True)

    def label(self) -> str:
        """`default`, or the changes, e.g. `threads=1 spinning=off`."""
        words = {
            "intra_op_threads": "threads={}",
            "allow_spinning": "spinning={}",
            "graph_optimization": "optimization={}",
            "execution_mode": "execution={}",
            "inter_op_threads": "inter-op={}",
        }
        parts = [
            words[k].format({True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v)
            for k, v in self.changes().items()
        ]
        return " ".join(parts) or "default"


def session_options(settings: SessionSettings, threads: int) -> ort.SessionOptions:
    """ORT options for `settings`; `threads` (the profile's) where they name no thread count."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads or threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.execution_mode = EXECUTION[settings.execution_mode]
    options.graph_optimization_level = OPTIMIZATION[settings.graph_optimization]
    spin = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry(SPINNING, spin)
    options.add_session_config_entry(INTER_SPINNING, spin)
    options.log_severity_level = 3
    return options


def session_in_use(session: ort.InferenceSession) -> dict:
    """The settings a live session runs with, read back from ONNX Runtime (what `/healthz`
    shows: the truth, not what was asked for)."""
    options = session.get_session_options()
    return {
        "intra_op_threads": options.intra_op_num_threads,
        "allow_spinning": options.get_session_config_entry(SPINNING) != "0",
        "graph_optimization": next(
            k for k, v in OPTIMIZATION.items() if v == options.graph_optimization_level
        ),
        "execution_mode": next(k for k, v in EXECUTION.items() if v == options.execution_mode),
        "inter_op_threads": options.inter_op_num_threads,
        "providers": session.get_providers(),
    }


def create_session(
    model_path: str | Path, profile: Profile, settings: SessionSettings | None = None
) -> ort.InferenceSession:
    """An ORT session with the profile's providers and threads, and `settings` (a bundle's
    tuned ones; None: the defaults); clear errors, no silent fallback."""
    check_providers(profile)
    options = session_options(settings or SessionSettings(), profile.threads)
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=profile.execution_providers
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
        raise InputError(
            f"{model_path}: ONNX Runtime cannot load it as an ONNX model ({exc})"
        ) from None
    # ORT falls back to CPU silently when a GPU provider fails to initialise (missing CUDA/cuDNN
    # libraries): a CUDA profile measured on the CPU would be a lie, so refuse.
    if profile.device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise InputError(
            f"profile '{profile.name}' needs CUDA but ONNX Runtime could not start the "
            f"CUDA provider "
            "(check the CUDA/cuDNN libraries and that onnxruntime-gpu replaced onnxruntime)"
        )
    return session


ORT_DTYPES = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}


def feed_for(
    session: ort.InferenceSession, encoded: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Keep only the inputs the graph declares (e.g. drop token_type_ids for DistilBERT), each
    in the dtype it declares."""
    declared = {i.name: ORT_DTYPES.get(i.type) for i in session.get_inputs()}
    missing = [n for n in declared if n not in encoded]
    if missing:
        raise InputError(f"the model needs inputs {missing} that the tokenizer does not produce")
    return {
        n: np.ascontiguousarray(encoded[n], dtype=dtype) for n, dtype in declared.items()
    }  # None: as given


def make_runner(session: ort.InferenceSession, feed: dict[str, np.ndarray], io_binding: bool):
    """A no-argument callable that runs one batch.

    With IO binding the inputs are copied to the session's device once and the outputs stay
    there, so the timing is the model's, not the host<->device copies'; `synchronize_*` makes
    the timer wait for the device (CUDA runs asynchronously).
    """
    if not io_binding:
        return lambda: session.run(None, feed)
    device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, device)

    def run() -> None:
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def gpu_memory_mb(pid: int | None = None) -> float | None:
    """GPU memory held by this process, from nvidia-smi (None where it is not available)."""
    import os

    pid = pid or os.getpid()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over from the parent across fork+exec, which would count the trainer's memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
