"""`export`, `prune`, `quantize`, `bench`: parse flags into a config, call the API, print."""

from __future__ import annotations

import json

import click

from edgetune.cli.options import (
    config_option,
    profile_option,
    split_list,
    stdout_console,
    trust_factory_option,
)
from edgetune.compress.modes import MODES
from edgetune.config import (
    BenchConfig,
    ExportConfig,
    PredictConfig,
    PruneJobConfig,
    QuantizeConfig,
    validated,
)

MODE_LIST = ", ".join(MODES)


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--out", "out_dir", required=True, help="Bundle folder to write.")
@config_option(ExportConfig, "quantize", help=f"none (fp32) or any mode: {MODE_LIST}.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18).")
@click.option(
    "--atol", type=float, default=None, help="ONNX vs PyTorch logits tolerance (default 1e-4)."
)
@click.option(
    "--data",
    default=None,
    help="Data whose validation texts check the export (default: the sample saved by tune).",
)
@profile_option(ExportConfig)
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    help="NAME=1x3x224x224 per input of a plain PyTorch model (CHECKPOINT = pkg.module:factory).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@trust_factory_option()
def export(
    checkpoint,
    out_dir,
    quantize,
    opset,
    atol,
    data,
    profile_name,
    input_shapes,
    overwrite,
    trust_factory,
) -> None:
    """Export a fine-tuned CHECKPOINT to a validated ONNX bundle, or a plain PyTorch model
    (CHECKPOINT = pkg.module:factory, a callable returning an nn.Module, with --input-shape) to
    OUT/model.onnx, checked against PyTorch on random inputs.

    \b
    Example:
      edgetune export runs/sst2/work/best --out bundles/sst2-int8 --quantize dynamic-int8
      edgetune export mymodels.vision:build_net --input-shape x=1x3x224x224 --out exports/net
    """
    import edgetune

    config = validated(
        ExportConfig,
        "export",
        checkpoint=checkpoint,
        out=out_dir,
        quantize=quantize,
        opset=opset,
        atol=atol,
        data=data,
        profile=profile_name,
        input_shapes=list(input_shapes),
        overwrite=overwrite,
        trust_factory=trust_factory,
    )
    bundle = edgetune.export(config)
    if not hasattr(bundle, "manifest"):  # a plain PyTorch model
        click.echo(
            f"model: {bundle.path}; ONNX vs PyTorch max |diff| {bundle.check.max_abs_diff:.2e} "
            f"on {bundle.check.examples} random inputs"
        )
        return
    check = bundle.manifest.export_check
    click.echo(
        f"bundle: {bundle.path} ({bundle.manifest.precision}); ONNX vs PyTorch max "
        f"|diff| {check['max_abs_diff']:.2e} on {check['examples']} examples"
    )


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--data", required=True, help="Training data for recovery (as for tune).")
@click.option("--out", "out_dir", required=True, help="Bundle folder to write.")
@click.option(
    "--layers", type=int, default=None, help="Keep this many encoder layers (most important)."
)
@config_option(PruneJobConfig, "heads", help="Fraction of attention heads to remove per layer.")
@config_option(PruneJobConfig, "ffn", help="Fraction of FFN neurons to remove per layer.")
@config_option(
    PruneJobConfig,
    "hidden",
    help="Fraction of the hidden size (the residual stream's width) to remove (BERT/RoBERTa).",
)
@config_option(
    PruneJobConfig,
    "qat",
    "--qat/--no-qat",
    help="Train the last share of the recovery with fake quantization; the bundle is static "
    "INT8 (QDQ). With no --layers/--heads/--ffn/--hidden: a QAT phase alone.",
)
@config_option(PruneJobConfig, "qat_share", help="Share of the recovery budget trained with QAT.")
@click.option(
    "--pass",
    "passes",
    multiple=True,
    help="Another torch pass, NAME[:key=value,...] "
    "(see `edgetune passes`), e.g. magnitude-sparsity:sparsity=0.5. Repeatable.",
)
@config_option(
    PruneJobConfig,
    "importance",
    help="taylor: |gradient x weight| on a few batches; magnitude: |weight|.",
)
@config_option(
    PruneJobConfig,
    "distill",
    "--distill/--no-distill",
    help="Recover with distillation from the unpruned model.",
)
@config_option(
    PruneJobConfig,
    "distillation",
    help="layerwise: logits KL + hidden states of the kept teacher layers; logits: KL only.",
)
@config_option(PruneJobConfig, "train.epochs")
@click.option("--max-train-minutes", type=float, default=None)
@click.option("--max-train-samples", type=int, default=None)
@config_option(
    PruneJobConfig,
    "train.learning_rate",
    "--learning-rate",
    "--lr",
    "learning_rate",
    help="A number, or auto: an LR range test on the pruned student picks it.",
)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@profile_option(PruneJobConfig)
@click.option("--overwrite", is_flag=True)
@trust_factory_option()
def prune(
    checkpoint,
    data,
    out_dir,
    layers,
    heads,
    ffn,
    hidden,
    qat,
    qat_share,
    passes,
    importance,
    distill,
    distillation,
    epochs,
    max_train_minutes,
    max_train_samples,
    learning_rate,
    text_column,
    label_column,
    profile_name,
    overwrite,
    trust_factory,
) -> None:
    """Structurally prune a fine-tuned CHECKPOINT, recover it by distillation, export a bundle.

    \b
    Example:
      edgetune prune runs/sst2/work/best --layers 4 --heads 0.25 --ffn 0.5 \\
          --data data/sst2 --max-train-minutes 10 --out runs/sst2-L4
    """
    import edgetune

    train = {
        "epochs": epochs,
        "max_train_minutes": max_train_minutes,
        "learning_rate": learning_rate,
        "max_train_samples": max_train_samples,
    }
    config = validated(
        PruneJobConfig,
        "prune",
        checkpoint=checkpoint,
        data=data,
        out=out_dir,
        layers=layers,
        heads=heads,
        ffn=ffn,
        hidden=hidden,
        qat=qat,
        qat_share=qat_share,
        passes=list(passes),
        importance=importance,
        distill=distill,
        distillation=distillation,
        train=train,
        profile=profile_name,
        text_column=text_column,
        label_column=label_column,
        overwrite=overwrite,
        trust_factory=trust_factory,
    )
    bundle = edgetune.prune(config)
    p = bundle.manifest.pruning
    click.echo(
        f"bundle: {bundle.path} ({p['name']}: {p['params_after'] / 1e6:.1f}M of "
        f"{p['params_before'] / 1e6:.1f}M parameters; PyTorch accuracy "
        f"{bundle.manifest.metrics['pytorch_accuracy']:.4f})"
    )


@click.command(epilog="\b\nModes:\n  " + MODE_LIST)
@click.argument("model", type=click.Path())
@click.option(
    "--mode",
    "modes",
    required=True,
    help="Comma-separated modes, e.g. dynamic-int8,static-int8-minmax.",
)
@click.option(
    "--out", "out_dir", required=True, help="Folder; each mode is written to OUT/<mode>/."
)
@click.option(
    "--calibration-data",
    default=None,
    help="Data whose training texts calibrate static INT8; "
    "for a model without text inputs, a .npz of arrays named after its inputs (or a .npy).",
)
@config_option(QuantizeConfig, "calibration_samples")
@click.option(
    "--tokenizer", "tokenizer_dir", default=None, help="Tokenizer folder for a bare .onnx file."
)
@config_option(QuantizeConfig, "max_length", help="Calibration length for a bare .onnx file.")
@click.option("--overwrite", is_flag=True)
def quantize(
    model,
    modes,
    out_dir,
    calibration_data,
    calibration_samples,
    tokenizer_dir,
    max_length,
    overwrite,
) -> None:
    """Quantize or optimize any ONNX MODEL (or edgetune BUNDLE) with ONNX Runtime.

    Accuracy is not measured here: run `edgetune bench OUT/<mode> --data D` on the result.

    \b
    Example:
      edgetune quantize runs/sst2/best --mode dynamic-int8,static-int8-minmax \\
          --calibration-data data/sst2 --out runs/sst2/quantized
    """
    import edgetune

    config = validated(
        QuantizeConfig,
        "quantize",
        model=model,
        out=out_dir,
        modes=split_list(modes),
        calibration_data=calibration_data,
        calibration_samples=calibration_samples,
        tokenizer=tokenizer_dir,
        max_length=max_length,
        overwrite=overwrite,
    )
    for name, path in edgetune.quantize(config).items():
        click.echo(f"{name}: {path}")


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path())
@profile_option(BenchConfig)
@click.option(
    "--data",
    default=None,
    help="Data to measure accuracy on (its validation split by default); for a "
    "model without text inputs, a .npz of arrays named after its inputs (or a .npy for one input).",
)
@click.option(
    "--labels",
    default=None,
    help="A .npy of class indices, one per row of --data arrays "
    "(or a `labels` array inside the .npz).",
)
@config_option(BenchConfig, "split")
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option(
    "--tokenizer", "tokenizer_dir", default=None, help="Tokenizer folder for a bare .onnx file."
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    help=(
        "NAME=1x3x224x224: an input's shape, for models without a tokenizer (inputs are made "
        "from the graph)."
    ),
)
@config_option(BenchConfig, "min_runs", help="Runs per model, over all rounds.")
@click.option(
    "--min-seconds",
    type=float,
    default=None,
    help=(
        "Seconds per model, over all rounds (default: the profile's measure_seconds, 3 s shipped)."
    ),
)
@config_option(BenchConfig, "rounds", help="Interleaved rounds (order rotates).")
@config_option(
    BenchConfig,
    "repeat",
    help="Time every model N times, as N processes in the same interleaved rounds (an A/A "
    "check: each copy's p50 ratio to the first, with its interval, should hold 1).",
)
@config_option(BenchConfig, "seed", help="Seed of the held-out split (as in tune).")
@click.option(
    "--target",
    multiple=True,
    help="URL of an `edgetune agent` on the device: latency is measured there (repeat for "
    "alike devices; default: the profile's targets).",
)
@click.option(
    "--target-token-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="The agent's token (default: $EDGETUNE_AGENT_TOKEN).",
)
@click.option(
    "--tune-session",
    is_flag=True,
    help="Also time the first MODEL under other ONNX Runtime session settings (threads, "
    "spinning, graph optimization, execution mode), side by side with the default, and say "
    "which one is faster beyond its interval (the default otherwise).",
)
@click.option(
    "--allow-mixed-targets",
    is_flag=True,
    help="Accept agents of different machines (each number keeps its machine; never blended).",
)
@click.option(
    "--accuracy-on",
    type=click.Choice(["host", "target"]),
    default="host",
    show_default=True,
    help="Where --data's accuracy is measured: here, or by the agent (it sends back "
    "the predictions; scored here the same way).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(
    models,
    profile_name,
    data,
    labels,
    split,
    text_column,
    label_column,
    tokenizer_dir,
    shapes,
    min_runs,
    min_seconds,
    rounds,
    repeat,
    seed,
    target,
    target_token_file,
    tune_session,
    allow_mixed_targets,
    accuracy_on,
    as_json,
) -> None:
    """Latency (p50/p90/p99 with 95 % intervals, throughput, peak RSS, size) and accuracy of
    MODEL.onnx files or BUNDLEs. Several models are timed side by side in interleaved rounds,
    and each one's p50/p90 ratio to the first is printed with its interval. A model without a
    tokenizer (any ONNX file) is fed inputs made from its graph's signature (see --shape).

    \b
    Example:
      edgetune bench runs/sst2/best --profile cpu-edge --data data/sst2 --json
      edgetune bench runs/x/candidates/fp32 runs/x/candidates/dynamic-int8
      edgetune bench resnet.onnx --shape pixel_values=1x3x224x224
      edgetune bench resnet.onnx --data images.npz --labels labels.npy
      edgetune bench runs/x/best --target http://device:8765   # on the device's agent
      edgetune bench runs/x/best --tune-session   # which session settings are fastest here
    """
    import edgetune

    report = edgetune.bench(
        validated(
            BenchConfig,
            "bench",
            models=list(models),
            profile=profile_name,
            data=data,
            labels=labels,
            split=split,
            text_column=text_column,
            label_column=label_column,
            tokenizer=tokenizer_dir,
            shapes=list(shapes),
            min_runs=min_runs,
            min_seconds=min_seconds,
            rounds=rounds,
            repeat=repeat,
            seed=seed,
            target=list(target),
            target_token_file=target_token_file,
            tune_session=tune_session,
            allow_mixed_targets=allow_mixed_targets,
            accuracy_on=accuracy_on,
        )
    )
    tuning = report.session_tuning.to_json() if report.session_tuning else None
    if as_json:
        single = len(models) == 1 and repeat == 1 and not report.other_machines
        data = report.results[0].to_json() if single else report.to_json()
        click.echo(json.dumps({**data, "session_tuning": tuning} if single else data, indent=2))
        return
    console = stdout_console()
    for machine_report in (report, *report.other_machines):  # apart: one table per machine
        first = machine_report.results[0]
        where = first.latency.machine if first.latency else {}
        title = (
            f"on {first.profile}, measured on {where.get('cpu') or '?'} ({where.get('cores')} "
            f"cores, {where.get('id')})"
        )
        if first.accuracy and first.accuracy.machine.get("id") not in (None, where.get("id")):
            title += f"; accuracy on {first.accuracy.machine.get('id')}"
        console.print(bench_table(machine_report.results, machine_report.ratios, title))
        for result in machine_report.results:
            if result.front_end:
                from edgetune.deploy.report import front_end_line

                console.print(front_end_line(result.model, result.front_end))
        if repeat > 1:
            console.print(repeat_table(machine_report))
    if tuning:
        from edgetune.deploy.report import session_tuning_table

        console.print(session_tuning_table(tuning))


def _ci(value: float, ci: list[float]) -> str:
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"


def bench_table(results, ratios: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for name in (
        "model",
        "input shape",
        "p50 ms [95% CI]",
        "p90 ms [95% CI]",
        "p99 ms",
        "items/s",
        "traffic p50 / p90 ms",
        "peak RSS MB",
        "size MB",
        "accuracy [95% CI]",
        "macro-F1",
        "p50 vs first [95% CI]",
    ):
        table.add_column(name, justify="left" if name == "model" else "right")
    by_model = {r["model"]: r for r in ratios}
    for r in results:
        lat, acc = r.latency, r.accuracy
        ratio = by_model.get(r.model)
        traffic = (
            f"{lat.traffic_p50_ms:.2f} / {lat.traffic_p90_ms:.2f}"
            if lat.traffic_p50_ms is not None
            else "-"
        )
        table.add_row(
            r.model,
            lat.shape_label,
            _ci(lat.p50_ms, lat.p50_ci),
            _ci(lat.p90_ms, lat.p90_ci),
            f"{lat.p99_ms:.2f}",
            f"{lat.throughput_items_per_s:.1f}",
            traffic,
            f"{lat.peak_rss_mb:.0f}",
            f"{r.size_mb:.1f}",
            f"{acc.accuracy:.4f} [{acc.ci[0]:.3f}, {acc.ci[1]:.3f}] n={acc.examples}"
            if acc
            else "-",
            f"{acc.macro_f1:.4f}" if acc else "-",
            "{:.2f}x [{:.2f}, {:.2f}]".format(*ratio["p50_ratio"]) if ratio else "1 (reference)",
        )
    return table


def repeat_table(report):
    from rich.table import Table

    table = Table(
        title=f"the same files timed {len(report.repeats)} times side by side (A/A check)"
    )
    for name in ("model", "copy", "p50 ms [95% CI]", "p90 ms [95% CI]", "p50 vs copy 1 [95% CI]"):
        table.add_column(name, justify="left" if name == "model" else "right")
    ratio = {(r["model"], r["repeat"]): r["p50_ratio"] for r in report.repeat_ratios}
    for k, row in enumerate(report.repeats, start=1):
        for r in row:
            lat = r.latency
            table.add_row(
                r.model,
                str(k),
                _ci(lat.p50_ms, lat.p50_ci),
                _ci(lat.p90_ms, lat.p90_ci),
                "{:.3f}x [{:.3f}, {:.3f}]".format(*ratio[r.model, k]) if k > 1 else "1 (reference)",
            )
    return table


@click.command()
@click.argument("bundle", type=click.Path())
@click.option(
    "--text", "texts", multiple=True, help="A text to classify (repeatable); prints JSON lines."
)
@click.option(
    "--text-pair",
    "text_pairs",
    multiple=True,
    help="For a sentence-pair bundle: the second text of each --text, in order.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    help="For an image bundle: an image file to classify (repeatable).",
)
@click.option(
    "--audio",
    "audio",
    multiple=True,
    help="For an audio bundle: a WAV/FLAC/OGG file to classify (repeatable).",
)
@click.option(
    "--input", "input_file", default=None, help="A .csv/.tsv/.jsonl file of texts (streamed)."
)
@click.option(
    "--text-column",
    default=None,
    help="Text column of --input, or a,b for a pair bundle (default: detected by name).",
)
@click.option(
    "--out",
    "out_file",
    default=None,
    help="Predictions file, .csv or .jsonl (default: INPUT.predictions.jsonl).",
)
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Texts per run (default: the bundle's profile batch).",
)
@config_option(
    PredictConfig,
    "threads",
    help="ONNX Runtime threads (0: all cores; default: the bundle's tuned session settings, "
    "else its profile's).",
)
def predict(
    bundle, texts, text_pairs, images, audio, input_file, text_column, out_file, batch_size, threads
) -> None:
    """Classify texts with a BUNDLE (ONNX Runtime and tokenizers only: no torch), or images
    with an image bundle (--image; its image processor prepares them). A token-classification
    bundle tags each text's words and returns its entities with character offsets; an audio
    bundle takes --audio files (mixed to mono, resampled to the model's rate).

    Accuracy is printed when the input file has a label column (classifiers).

    \b
    Example:
      edgetune predict runs/sst2/best --text "a gripping, beautiful film"
      edgetune predict runs/sst2/best --input reviews.csv --out predictions.csv
      edgetune predict runs/photos/best --image cat.jpg --image dog.png
      edgetune predict runs/keywords/best --audio yes.wav
    """
    import edgetune

    result = edgetune.predict(
        validated(
            PredictConfig,
            "predict",
            bundle=bundle,
            texts=list(texts),
            text_pairs=list(text_pairs),
            images=list(images),
            audio=list(audio),
            input=input_file,
            text_column=text_column,
            out=out_file,
            batch_size=batch_size,
            threads=threads,
        )
    )
    for index, prediction in enumerate(result.predictions):
        if images or audio:
            key, files = ("image", images) if images else ("audio", audio)
            click.echo(json.dumps({key: files[index], **prediction}))
            continue
        pair = {"text_pair": text_pairs[index]} if text_pairs else {}
        click.echo(json.dumps({"text": texts[index], **pair, **prediction}))
    if result.out is not None:
        accuracy = f"; accuracy {result.accuracy:.4f}" if result.accuracy is not None else ""
        click.echo(f"predictions: {result.out} ({result.rows} rows{accuracy})")
