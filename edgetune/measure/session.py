"""ONNX Runtime sessions on a profile: providers and threads, no silent fallback, IO binding,
and the memory a process holds. No torch here, on purpose."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

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


def create_session(model_path: str | Path, profile: Profile) -> ort.InferenceSession:
    """An ORT session with the profile's providers and threads; clear errors, no silent fallback."""
    check_providers(profile)
    options = ort.SessionOptions()
    options.intra_op_num_threads = profile.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
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
