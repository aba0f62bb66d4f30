"""edgetune: fine-tune, compress, export to ONNX and benchmark a model under a deployment budget.

The public Python API. Each job takes one config object and returns a typed result:

    import edgetune
    result = edgetune.tune(edgetune.TuneConfig(model="./bert", data="reviews.csv", out="runs/x"))

Names are imported on first use, so `import edgetune` stays cheap (no torch, no transformers).
"""

from __future__ import annotations

import importlib

from edgetune._version import __version__

_EXPORTS = {
    "tune": "edgetune.jobs.tune",
    "export": "edgetune.jobs.export",
    "quantize": "edgetune.jobs.quantize",
    "prune": "edgetune.jobs.prune",
    "bench": "edgetune.jobs.bench",
    "predict": "edgetune.jobs.predict",
    "PredictConfig": "edgetune.config",
    "serve": "edgetune.jobs.serve",
    "ServeConfig": "edgetune.config",
    "loadtest": "edgetune.jobs.loadtest",
    "LoadtestConfig": "edgetune.config",
    "agent": "edgetune.jobs.agent",
    "AgentConfig": "edgetune.config",
    "load_bundle": "edgetune.deploy.bundle",
    "TuneConfig": "edgetune.config",
    "SearchSettings": "edgetune.config",
    "ExportConfig": "edgetune.config",
    "QuantizeConfig": "edgetune.config",
    "PruneJobConfig": "edgetune.config",
    "BenchConfig": "edgetune.config",
    "TrainConfig": "edgetune.train.settings",
    "TuneResult": "edgetune.jobs.tune",
    "NoCandidate": "edgetune.errors",
    "EdgetuneError": "edgetune.errors",
    "InputError": "edgetune.errors",
    "load_profile": "edgetune.profiles",
}
__all__ = [  # noqa: RUF022 - grouped as in _EXPORTS
    "__version__",
    "tune",
    "export",
    "quantize",
    "prune",
    "bench",
    "predict",
    "PredictConfig",
    "serve",
    "ServeConfig",
    "loadtest",
    "LoadtestConfig",
    "agent",
    "AgentConfig",
    "load_bundle",
    "TuneConfig",
    "SearchSettings",
    "ExportConfig",
    "QuantizeConfig",
    "PruneJobConfig",
    "BenchConfig",
    "TrainConfig",
    "TuneResult",
    "NoCandidate",
    "EdgetuneError",
    "InputError",
    "load_profile",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgetune' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
