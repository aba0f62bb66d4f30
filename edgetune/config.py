"""The config objects the public API takes, and the recipe file that writes a `tune` run down.

`TuneConfig` is the recipe: every `tune` flag has a key (`[train]` and `[search]` are
sections), `edgetune tune --config recipe.toml` reads it, flags override it, and every run
writes the resolved one to `OUT/recipe.toml`, so `--config runs/x/recipe.toml --out runs/y`
repeats the run. Unknown keys are errors that name the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import tomli_w
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from edgetune.errors import InputError, first_problem
from edgetune.fsutil import write_text_atomic
from edgetune.search.settings import SearchSettings
from edgetune.train.settings import TrainConfig

RECIPE_NAME = "recipe.toml"
# agent URLs: a list, or one URL as recipes written before fleets have it
Targets = Annotated[
    list[str], BeforeValidator(lambda v: [] if v is None else [v] if isinstance(v, str) else v)
]
AccuracyOn = Annotated[
    Literal["host", "target"],
    Field(description="where accuracy is measured: here, or by the agents (their outputs)"),
]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TuneConfig(_Config):
    """`edgetune tune`: fine-tune, export, compress, bench every candidate, choose, bundle."""

    model: str | None = Field(None, description="local folder or hub id (default: packaged MiniLM)")
    data: str | None = Field(None, description="file, folder or hub id (default: BBC News)")
    profile: str = "cpu-edge"
    latency_budget_ms: float | None = Field(None, gt=0)
    relative_budget: float | None = Field(
        None,
        gt=0,
        le=1,
        description="the budget as this fraction of the run's own unpruned dynamic INT8 p90",
    )
    out: str = "runs/edgetune"
    text_column: str | None = None
    image_column: str | None = Field(
        None, description="image and audio models: the column of file paths"
    )
    label_column: str | None = None
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    modes: list[str] | None = None
    calibration_samples: int = Field(128, ge=1)
    trim_vocab: Literal["auto", "on", "off"] = Field(
        "auto",
        description="text models: variants keeping the word embeddings of the tokens the "
        "training text uses; auto: for candidates over the profile's size limit",
    )
    vocab_reserve: int = Field(0, ge=0, description="trimmed variants also keep the first N ids")
    atol: float | None = Field(None, gt=0)
    opset: int | None = Field(None, ge=11)
    search: SearchSettings = Field(default_factory=SearchSettings)
    objective: Literal["latency", "accuracy", "size"] = Field(
        "latency",
        description="latency/size: the fastest/smallest whose accuracy is not "
        "significantly below the best; accuracy: the most accurate",
    )
    drop_unseen_labels: bool = Field(
        False,
        description="leave out validation rows whose label "
        "the training rows never have (default: an error)",
    )
    latency_rounds: int = Field(10, ge=2, description="interleaved rounds per candidate")
    max_rounds: int = Field(30, ge=2, description="cap on rounds for marginal verdicts")
    target: Targets = Field(
        default_factory=list,
        description="`edgetune agent` URLs (alike devices sharing the work): latency measured "
        "there (default: the profile's targets)",
    )
    target_token_file: str | None = Field(
        None, description="the agent's token (default: $EDGETUNE_AGENT_TOKEN; never in a recipe)"
    )
    tune_session: bool = Field(
        True,
        description="time the chosen model under a few other ONNX Runtime session settings and "
        "record one in its bundle only if faster beyond its interval",
    )
    allow_mixed_targets: bool = Field(
        False, description="accept agents of different machines (each number keeps its own)"
    )
    accuracy_on: AccuracyOn = "host"
    loadtest: bool = Field(
        False,
        description="load-test the chosen bundle over loopback HTTP; "
        "capacity at budget in the report and the manifest",
    )
    resume: bool = False
    overwrite: bool = False
    force_unlock: bool = Field(False, description="take over the run folder's lock")


class ExportConfig(_Config):
    checkpoint: str
    out: str
    profile: str = "cpu-edge"
    quantize: str = Field("none", description="any mode name; none = fp32")
    opset: int | None = Field(None, ge=11)
    atol: float | None = Field(None, gt=0)
    data: str | None = None
    max_length: int | None = None
    input_shapes: list[str] = Field(
        default_factory=list,
        description="NAME=1x3x224x224 per input of a plain PyTorch model (`pkg.module:factory`)",
    )
    trust_factory: str | None = Field(
        None,
        description="the pkg.module:factory a plain module's "
        "checkpoint names: imported only if named here",
    )
    overwrite: bool = False


class QuantizeConfig(_Config):
    model: str
    out: str
    modes: list[str] = Field(min_length=1)
    calibration_data: str | None = None
    calibration_samples: int = Field(128, ge=1)
    tokenizer: str | None = None
    max_length: int = Field(128, ge=1)
    overwrite: bool = False


class PruneJobConfig(_Config):
    checkpoint: str
    data: str
    out: str
    layers: int | None = Field(None, ge=1)
    heads: float = Field(0.0, ge=0, lt=1)
    ffn: float = Field(0.0, ge=0, lt=1)
    hidden: float = Field(
        0.0, ge=0, lt=1, description="share of the hidden size (residual stream width) removed"
    )
    passes: list[str] = Field(default_factory=list, description="more torch passes: NAME:key=value")
    qat: bool = Field(
        False,
        description="the last share of the recovery with fake quantization, exported as static "
        "INT8 QDQ (compress/qat_recover.py)",
    )
    qat_share: float = Field(0.3, gt=0, le=1, description="share of the recovery budget for QAT")
    calibration_samples: int = Field(
        128, ge=1, description="--qat: rows the INT8 ranges are set on"
    )
    importance: Literal["taylor", "magnitude"] = "taylor"
    distill: bool = True
    distillation: Literal["layerwise", "logits"] = "layerwise"
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=1.0))
    profile: str = "cpu-edge"
    text_column: str | None = None
    label_column: str | None = None
    atol: float | None = Field(None, gt=0)
    trust_factory: str | None = Field(
        None,
        description="the pkg.module:factory a plain module's "
        "checkpoint names: imported only if named here",
    )
    overwrite: bool = False


class BenchConfig(_Config):
    models: list[str] = Field(
        min_length=1, description="several: timed side by side, ratios to the first"
    )
    profile: str = "cpu-edge"
    data: str | None = None
    labels: str | None = Field(None, description=".npy labels for --data arrays")
    split: Literal["validation", "train", "all"] = "validation"
    text_column: str | None = None
    label_column: str | None = None
    tokenizer: str | None = None
    shapes: list[str] = Field(
        default_factory=list,
        description="NAME=1x3x224x224 for inputs "
        "with unknown dimensions (models without a tokenizer)",
    )
    min_runs: int = Field(50, ge=1)
    min_seconds: float | None = Field(
        None,
        ge=0,
        description="timed seconds per model over all rounds (None: the profile's measure_seconds)",
    )
    rounds: int = Field(10, ge=2)
    repeat: int = Field(
        1,
        ge=1,
        description="time every model this many times, as that many "
        "processes in the same interleaved rounds (an A/A check)",
    )
    seed: int = 42
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    target: Targets = Field(
        default_factory=list,
        description="`edgetune agent` URLs (alike devices): latency measured there (default: "
        "the profile's targets)",
    )
    target_token_file: str | None = Field(
        None, description="the agent's token (default: $EDGETUNE_AGENT_TOKEN)"
    )
    tune_session: bool = Field(
        False, description="also time the first model under other session settings, side by side"
    )
    allow_mixed_targets: bool = Field(
        False, description="accept agents of different machines (each number keeps its own)"
    )
    accuracy_on: AccuracyOn = "host"


class AgentConfig(_Config):
    """`edgetune agent`: measure what a tuner elsewhere sends, on this machine."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535, description="0: any free port (printed when ready)")
    store: str = Field("~/.cache/edgetune/agent", description="where uploads are kept by hash")
    token_file: str | None = Field(
        None, description="a file holding the token (default: $EDGETUNE_AGENT_TOKEN)"
    )
    max_upload_mb: float = Field(1024.0, gt=0, description="the largest model or feeds accepted")
    busy_wait_s: float = Field(
        600.0, ge=0, description="how long a caller waits while another is measured, then 503"
    )


class PredictConfig(_Config):
    bundle: str
    texts: list[str] = Field(default_factory=list)
    text_pairs: list[str] = Field(
        default_factory=list, description="second texts, for a pair bundle"
    )
    images: list[str] = Field(default_factory=list, description="image files, for an image bundle")
    audio: list[str] = Field(
        default_factory=list, description="audio files (WAV/FLAC/OGG), for an audio bundle"
    )
    input: str | None = None
    text_column: str | None = None
    out: str | None = None
    batch_size: int | None = Field(None, ge=1, description="default: the bundle's profile batch")
    threads: int | None = Field(
        None, ge=0, description="0: all cores; default: the bundle's session settings"
    )


class ServeConfig(_Config):
    bundle: str
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0: any free port (printed when ready)")
    threads: int | None = Field(
        None, ge=0, description="default: the bundle's session settings, else its profile's"
    )
    max_batch: int | None = Field(
        None, ge=1, description="texts per session run; default: the profile's"
    )
    max_wait_ms: float | None = Field(None, ge=0, description="how long a batch waits to fill")
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_text_chars: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    graceful_seconds: float = Field(30.0, ge=0, description="how long shutdown waits for requests")
    max_queue: int = Field(64, ge=1, description="texts waiting for the model; past it: 503")
    request_timeout_s: float = Field(10.0, gt=0, description="arrival to answer; past it: 504")
    read_timeout_s: float = Field(
        5.0,
        gt=0,
        description="request headers, then the body, must "
        "arrive within this; past it the connection is closed / 408",
    )
    max_connections: int = Field(
        256, ge=1, description="open connections; past it a new one is answered 503 and closed"
    )
    keep_alive_s: float = Field(5.0, gt=0, description="an idle connection is closed after this")


class LoadtestConfig(_Config):
    target: str  # a bundle folder (the server is started on loopback) or a loopback URL
    out: str = Field("loadtest", description="the folder for loadtest.json and loadtest.png")
    profile: str | None = None  # whose budget; default: the bundle's own profile
    budget_ms: float | None = Field(None, gt=0, description="p99 budget; default: the profile's")
    concurrency: int = Field(
        8, ge=1, le=256, description="closed-loop clients for the saturation step"
    )
    step_seconds: float = Field(5.0, gt=0, le=600)
    rates: list[float] = Field(
        default_factory=list,
        description="open-loop rates; default: fractions of the saturated throughput",
    )
    max_seconds: float = Field(180.0, gt=0, description="the whole test stops by then")
    max_requests: int = Field(200_000, ge=1)
    texts: str | None = None  # a file of texts to send; default: built-in sentences
    text_column: str | None = None
    server_args: list[str] = Field(default_factory=list, description="extra `serve` flags")


def validated(cls: type[_Config], where: str, **values) -> _Config:
    """Build a config; a bad key or value becomes one line naming `where` and the key."""
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        key, message = first_problem(exc)
        raise InputError(f"{where}: key '{key}': {message}") from None


def read_recipe(path: str | Path) -> dict:
    """The raw recipe table (validated when merged with the flags)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"recipe {path}: not valid TOML ({exc})") from None


def write_recipe(config: TuneConfig, path: str | Path) -> Path:
    """The resolved recipe, without run-control keys (resume, overwrite) or unset values."""
    data = config.model_dump(
        mode="json", exclude_none=True, exclude={"resume", "overwrite", "force_unlock"}
    )
    text = (
        "# edgetune recipe: repeat with `edgetune tune --config THIS --out NEW`\n"
        + tomli_w.dumps(data)
    )
    write_text_atomic(path, text)
    return Path(path)
