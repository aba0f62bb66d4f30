"""`edgetune tune`: flags and the recipe file -> `TuneConfig` -> `edgetune.tune` -> a table.

Every flag maps to one recipe key (`TUNE_FLAGS`); flags given on the command line override
`--config`; defaults come from `TuneConfig` itself, so the two cannot drift apart.
"""

from __future__ import annotations

import click
from click.core import ParameterSource
from pydantic import ValidationError

from edgetune.cli.options import config_default, print_candidates, split_list, stdout_console
from edgetune.config import TuneConfig, read_recipe
from edgetune.errors import InputError, NoCandidate, first_problem

LIST = "list"  # a comma-separated flag that fills a list key
MULTI = "multi"  # a repeatable flag that fills a list key
FLAG = "flag"
# (recipe key, flag names, type or LIST/FLAG, help)
TUNE_FLAGS: list[tuple[str, tuple[str, ...], object, str]] = [
    (
        "model",
        ("--model",),
        str,
        "Pretrained model: local folder or hub id. Default: the packaged all-MiniLM-L6-v2.",
    ),
    (
        "data",
        ("--data",),
        str,
        (
            "CSV/TSV/JSON/JSONL/parquet file, folder of split files or <label>/*.txt, or hub "
            "id; for an image model, a folder of <label>/*.jpg|png (or train/ and validation/ "
            "folders of them), a CSV of path,label, or a hub dataset with an image column. "
            "Default: BBC News."
        ),
    ),
    (
        "profile",
        ("--profile",),
        str,
        "Deployment profile: a shipped name (see `edgetune profiles list`) or a .toml path.",
    ),
    (
        "latency_budget_ms",
        ("--latency-budget-ms",),
        float,
        "Override the profile's p90 latency budget.",
    ),
    (
        "relative_budget",
        ("--relative-budget",),
        float,
        (
            "Budget = this fraction of the run's own unpruned dynamic INT8 p90 (e.g. 0.5 for "
            "half), measured before the search, in each probe's rounds and in the final rounds."
        ),
    ),
    ("out", ("--out",), str, "Run folder (bundle in OUT/best)."),
    ("text_column", ("--text-column",), str, "Text column (default: detected)."),
    (
        "image_column",
        ("--image-column", "--audio-column"),
        str,
        (
            "Image and audio models: the column of file paths in a CSV, or the image column of "
            "a hub dataset (default: detected)."
        ),
    ),
    ("label_column", ("--label-column",), str, "Label column (default: detected)."),
    (
        "train.epochs",
        ("--epochs",),
        float,
        (
            "Training epochs (default: 3; with --max-train-minutes alone, until early stopping or "
            "the budget)."
        ),
    ),
    ("train.max_steps", ("--max-steps",), int, "Stop after N steps (-1: no limit)."),
    (
        "train.max_train_minutes",
        ("--max-train-minutes",),
        float,
        (
            "Training time budget (best checkpoint kept); without --epochs or --max-steps, "
            "training "
            "runs until early stopping (--patience, --min-delta) or the budget, the LR schedule "
            "planned for the budget."
        ),
    ),
    (
        "train.learning_rate",
        ("--learning-rate", "--lr"),
        str,
        "Peak learning rate, or auto: an LR range test finds it (about 100 steps).",
    ),
    (
        "train.batch_size",
        ("--batch-size",),
        str,
        (
            "Training batch size, or auto: the smallest that reaches the best examples/s, "
            "measured in a few steps (a number is lowered automatically if it does not fit)."
        ),
    ),
    (
        "train.scheduler",
        ("--scheduler",),
        click.Choice(["linear", "cosine", "plateau"]),
        "Warm-up then linear/cosine decay, or reduce-on-plateau.",
    ),
    ("train.warmup_ratio", ("--warmup-ratio",), float, "Share of steps spent warming up."),
    (
        "train.eval_steps",
        ("--eval-steps",),
        int,
        (
            "Evaluate every N steps (default: every epoch, 4 times an epoch when training until "
            "early stopping; at most 500 steps apart)."
        ),
    ),
    (
        "train.early_stopping_patience",
        ("--patience",),
        int,
        "Early stopping: evaluations in a row without improvement.",
    ),
    (
        "train.early_stopping_min_delta",
        ("--min-delta",),
        float,
        "Early stopping: smallest improvement that counts.",
    ),
    (
        "train.metric",
        ("--metric",),
        click.Choice(["accuracy", "macro_f1"]),
        "Metric for early stopping and the best checkpoint.",
    ),
    (
        "train.max_length",
        ("--max-length",),
        int,
        "Max tokens per text (default: the profile's sequence length).",
    ),
    (
        "train.max_train_samples",
        ("--max-train-samples",),
        int,
        "Use at most N training rows (seeded sample).",
    ),
    ("train.seed", ("--seed",), int, "Seed for the split, sampling and training."),
    (
        "train.precision",
        ("--train-precision",),
        click.Choice(["auto", "fp32", "bf16"]),
        (
            "auto: bf16 autocast where the CPU/GPU computes bf16 natively (avx512_bf16, AMX, "
            "CUDA), fp32 elsewhere."
        ),
    ),
    ("atol", ("--atol",), float, "ONNX vs PyTorch logits tolerance (default 1e-4)."),
    ("opset", ("--opset",), int, "ONNX opset (default 18)."),
    (
        "modes",
        ("--modes",),
        LIST,
        (
            "Comma-separated candidate modes (see `edgetune quantize --help`). Default: the "
            "menu for the profile's device and precisions."
        ),
    ),
    (
        "calibration_samples",
        ("--calibration-samples",),
        int,
        "Training rows used to calibrate static INT8.",
    ),
    (
        "trim_vocab",
        ("--trim-vocab",),
        click.Choice(["auto", "on", "off"]),
        (
            "Text models: also build candidates whose word embeddings keep only the tokens the "
            "training text uses (auto: those over the profile's max_model_size_mb)."
        ),
    ),
    (
        "vocab_reserve",
        ("--vocab-reserve",),
        int,
        "Trimmed candidates also keep the vocabulary's first N token ids.",
    ),
    (
        "search.enabled",
        ("--prune-search",),
        FLAG,
        "Also search structured pruning configs (distilled) x precisions.",
    ),
    (
        "search.prune_configs",
        ("--prune-configs",),
        LIST,
        (
            "Comma-separated configs for the search, e.g. L4,L3-F0.5,H0.5 (default: a grid "
            "over layers, heads and FFN)."
        ),
    ),
    ("search.modes", ("--search-modes",), LIST, "Modes each pruned model is built in."),
    (
        "search.distillation",
        ("--distillation",),
        click.Choice(["layerwise", "logits"]),
        "How pruned students learn from the fine-tuned model.",
    ),
    (
        "search.importance",
        ("--prune-importance",),
        click.Choice(["taylor", "magnitude"]),
        "What decides which parts are pruned.",
    ),
    (
        "search.budget_minutes",
        ("--search-budget-minutes",),
        float,
        (
            "Time for the pruning search (probes + recovery training; default: the rest of an "
            "hour-long run, at least 10 min)."
        ),
    ),
    (
        "search.recovery_minutes",
        ("--recovery-minutes",),
        float,
        "Cap on each pruned model's recovery training.",
    ),
    (
        "search.recovery_lr",
        ("--recovery-lr",),
        float,
        "Learning rate for recovery (default: --learning-rate).",
    ),
    (
        "search.executor",
        ("--executor",),
        click.Choice(["local", "ray"]),
        (
            "Where the search's latency probes and students run: here, or as Ray tasks (probes "
            "only on nodes with the resource profile:<name>)."
        ),
    ),
    (
        "search.ray_address",
        ("--ray-address",),
        str,
        "Ray cluster to join: auto, HOST:PORT (default: start a local Ray instance).",
    ),
    (
        "search.max_accuracy_drop",
        ("--max-accuracy-drop",),
        float,
        (
            "Accuracy points a candidate may lose vs the fine-tuned fp32 ONNX model (with "
            "--prune-search)."
        ),
    ),
    (
        "objective",
        ("--objective",),
        click.Choice(["latency", "accuracy", "size"]),
        (
            "What the choice minimises among candidates within the budget whose accuracy is "
            "not significantly below the best (accuracy: take the most accurate)."
        ),
    ),
    (
        "target",
        ("--target",),
        MULTI,
        (
            "URL of an `edgetune agent` on the device: every latency of the run (final "
            "rounds, probes, "
            "the relative budget's reference) is measured there; token from $EDGETUNE_AGENT_TOKEN. "
            "Repeat for alike devices: they share the probes; default: the profile's targets."
        ),
    ),
    ("target_token_file", ("--target-token-file",), str, "A file holding the agent's token."),
    (
        "allow_mixed_targets",
        ("--allow-mixed-targets",),
        FLAG,
        "Accept agents of different machines (each number keeps its machine; never blended).",
    ),
    (
        "accuracy_on",
        ("--accuracy-on",),
        click.Choice(["host", "target"]),
        "Where accuracy is measured: here, or by the agents (their predictions, scored here).",
    ),
    (
        "latency_rounds",
        ("--rounds",),
        int,
        "Interleaved latency rounds (all candidates in each, order rotating).",
    ),
    (
        "max_rounds",
        ("--max-rounds",),
        int,
        "Cap on rounds for candidates whose p90 interval straddles the budget.",
    ),
    (
        "tune_session",
        ("--tune-session/--no-tune-session",),
        bool,
        (
            "Time the chosen model under a few ONNX Runtime session settings (threads, "
            "spinning, graph optimization, execution mode) side by side with the default, and "
            "record one in the bundle only if it is faster beyond its interval (on the target "
            "with --target)."
        ),
    ),
    (
        "loadtest",
        ("--loadtest",),
        FLAG,
        (
            "Serve the chosen bundle on 127.0.0.1 and find the requests/s it holds within the "
            "budget (`edgetune loadtest`); capacity goes in the report and the manifest."
        ),
    ),
    (
        "drop_unseen_labels",
        ("--drop-unseen-labels",),
        FLAG,
        "Leave out validation rows whose label the training rows never have (default: an error).",
    ),
    (
        "force_unlock",
        ("--force-unlock",),
        FLAG,
        "Take over OUT's lock (a run that died, or one you stopped on another host).",
    ),
    ("resume", ("--resume",), FLAG, "Continue an interrupted run in OUT from its last checkpoint."),
    ("overwrite", ("--overwrite",), FLAG, "Allow writing into an existing OUT."),
]


def param_name(key: str) -> str:
    return key.replace(".", "__")


def _default(key: str):
    value = config_default(TuneConfig, key)
    return ",".join(value) if isinstance(value, list) else value


def _with_flags(command):
    for key, names, kind, help_text in reversed(TUNE_FLAGS):
        default = _default(key)
        if kind == FLAG:
            command = click.option(*names, param_name(key), is_flag=True, help=help_text)(command)
        elif kind == MULTI:
            command = click.option(*names, param_name(key), multiple=True, help=help_text)(command)
        else:
            command = click.option(
                *names,
                param_name(key),
                type=str if kind == LIST else kind,
                default=default,
                show_default=default is not None,
                help=help_text,
            )(command)
    return command


def config_from_command_line(ctx: click.Context, params: dict) -> TuneConfig:
    """The recipe file (if any), then every flag given on the command line, validated."""
    recipe = params.get("config")
    data = read_recipe(recipe) if recipe else {}
    given: dict[str, str] = {}
    for key, names, kind, _ in TUNE_FLAGS:
        name = param_name(key)
        if ctx.get_parameter_source(name) not in (
            ParameterSource.COMMANDLINE,
            ParameterSource.ENVIRONMENT,
        ):
            continue
        value = (
            split_list(params[name])
            if kind == LIST
            else list(params[name])
            if kind == MULTI
            else params[name]
        )
        *parents, leaf = key.split(".")
        table = data
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = value
        given[key] = names[0]
    try:
        return TuneConfig.model_validate(data)
    except ValidationError as exc:
        key, message = first_problem(exc)
        where = given.get(key) or (f"recipe {recipe}: key '{key}'" if recipe else f"'{key}'")
        raise InputError(f"{where}: {message}") from None


@click.command()
@click.option(
    "--config",
    "config",
    type=click.Path(),
    default=None,
    help="Recipe file (TOML; every flag has a key). Flags given here override it.",
)
@_with_flags
@click.pass_context
def tune(ctx: click.Context, config, **params) -> None:
    """Fine-tune, export, compress, bench every candidate on the profile, choose, bundle.

    Writes the resolved recipe to OUT/recipe.toml; `--config OUT/recipe.toml --out NEW`
    repeats the run. Exit code 4 when no candidate meets the budget (the report is still
    written).

    \b
    Example:
      edgetune tune --model ./my-bert --data data/ --profile cpu-edge \\
          --latency-budget-ms 15 --max-train-minutes 20 --out runs/sst2
    """
    import edgetune

    settings = config_from_command_line(ctx, {"config": config, **params})
    try:
        result = edgetune.tune(settings)
    except NoCandidate as exc:
        if exc.result is not None:
            print_candidates(exc.result.candidates, None, "candidates (none met the budget)")
        raise
    if result is None:  # a non-main process of a torchrun/accelerate launch: nothing to say
        return
    print_candidates(result.candidates, result.selection, f"candidates on {result.profile.name}")
    console = stdout_console()
    console.print(f"choice: {result.selection.reason}")
    console.print(f"bundle: {result.best_bundle}")
    console.print(f"report: {result.report_md}")
    console.print(f"recipe: {result.recipe}")
