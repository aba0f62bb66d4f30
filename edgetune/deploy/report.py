"""The run's report: `report.json` for machines, `report.md` and a rich table for people."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from edgetune.deploy.plot import plot_pareto
from edgetune.fsutil import write_json_atomic, write_text_atomic
from edgetune.hardware import describe
from edgetune.measure.bench import SCORINGS, Scoring
from edgetune.measure.front_end import describe as describe_front_end
from edgetune.measure.tuning import TABLE_COLUMNS, table_rows
from edgetune.profiles import Profile
from edgetune.search.record import Candidate
from edgetune.search.select import Selection, choose

COLUMNS = (
    "#",
    "candidate",
    "precision",
    "{metric} [95% CI]",
    "vs fp32: points ({test} p)",
    "p50 ms",
    "p90 ms [95% CI]",
    "traffic p50 / p90 ms",
    "items/s",
    "size MB",
    "peak RSS MB",
    "verdict",
)
LEFT = ("candidate", "precision", "verdict")


def _ci(ci: list[float], digits: int = 2) -> str:
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else ""


def _versus(c: Candidate) -> str:
    vs = c.stats.get("vs_reference")
    if not vs or vs["against"] == c.name:
        return "reference" if vs else "-"
    p = f" (p={vs['p_value']:.2g})" if vs.get("p_value") is not None else ""
    change = -vs["drop_points"] if abs(vs["drop_points"]) >= 0.005 else 0.0
    return f"{change:+.2f}{p}" + (" significant" if vs["significant"] else "")


def _verdict(c: Candidate) -> str:
    lat = c.latency
    verdict = lat.verdict or ("met" if c.meets_latency else "missed")
    if verdict == "marginal":
        verdict += f" ({'under' if c.meets_latency else 'over'} on the point estimate)"
    if not c.meets_size:
        verdict += ", over size"
    if not c.within_accuracy_bound:
        verdict += ", accuracy below bound"
    return verdict


def _row(i: int, c: Candidate, selection: Selection | None) -> list[str]:
    chosen = (
        selection is not None and selection.winner is not None and selection.winner.name == c.name
    )
    lat, acc = c.latency, c.accuracy
    traffic = (
        f"{lat.traffic_p50_ms:.2f} / {lat.traffic_p90_ms:.2f}"
        if lat.traffic_p50_ms is not None
        else "-"
    )
    return [
        str(i),
        c.name + (" (chosen)" if chosen else ""),
        c.precision,
        f"{acc.accuracy:.4f}{_ci(acc.ci, 3)}",
        _versus(c),
        f"{lat.p50_ms:.2f}",
        f"{lat.p90_ms:.2f}{_ci(lat.p90_ci)}",
        traffic,
        f"{lat.throughput_items_per_s:.1f}",
        f"{c.size_mb:.1f}",
        f"{lat.peak_rss_mb:.0f}",
        _verdict(c),
    ]


def candidates_table(candidates: list[Candidate], selection: Selection | None, title: str) -> Table:
    table = Table(title=title)
    for name in column_names(candidates):
        table.add_column(
            name, justify="left" if name in LEFT else "right", no_wrap=name in ("candidate",)
        )
    for i, c in enumerate(candidates, 1):
        table.add_row(*_row(i, c, selection))
    return table


def render_markdown(
    candidates: list[Candidate], selection: Selection, profile: Profile, context: dict
) -> str:
    lines = [
        "# edgetune report",
        "",
        f"Profile **{profile.name}**: {profile.device}, {profile.threads} threads, batch "
        f"{profile.batch_size}, sequence {profile.sequence_length}, budget p90 <= "
        f"{profile.latency_budget_ms:g} ms"
        + (f", size <= {profile.max_model_size_mb:g} MB" if profile.max_model_size_mb else "")
        + ".",
        "",
        f"**Choice:** {selection.reason}.",
        "",
        *_machines_line(candidates),
        *_machines_line(candidates, "accuracy"),
        *_training_line(context.get("train")),
        *_served_lines(candidates),
        "| " + " | ".join(column_names(candidates)) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_row(i, c, selection)) + " |" for i, c in enumerate(candidates, 1)]
    lines += [
        "",
        f"Pareto frontier (accuracy vs p90): {', '.join(selection.pareto)}.",
        "",
        "![accuracy vs p90 latency](pareto.png)",
        "",
        *_method(candidates, selection, profile),
    ]
    search = context.get("search")
    if search:
        lines += [
            "## Pruning search",
            "",
            (
                f"Trained {search['trained']} configuration(s), {search['from_cache']} from cache; "
                f"accuracy bound {context.get('min_accuracy', 0):.4f}."
            ),
            "",
        ]
        lines += [f"- {line}" for line in search["lines"]]
        lines.append("")
    serving = context.get("loadtest")
    if serving:
        capacity = (
            f"**{serving['capacity_rps']:g} requests/s** with p99 <= {serving['budget_ms']:g} ms"
            if serving["capacity_rps"] is not None
            else f"**none**: no rate tried kept p99 within {serving['budget_ms']:g} ms"
        )
        lines += [
            "## Served",
            "",
            f"Capacity at budget of the chosen bundle behind `edgetune serve` (one input per "
            f"request, Poisson arrivals over loopback HTTP): {capacity}; single-stream p90 "
            f"{serving['single_stream_p90_ms']} ms, saturated throughput "
            f"{serving['saturated_rps']:g} requests/s ({serving['stopped']}). "
            + " ".join(n[0].upper() + n[1:] + "." for n in serving["notes"]),
            "",
            "![latency vs rate](loadtest/loadtest.png)",
            "",
        ]
    lines += _entity_type_lines(candidates)
    lines += _front_end_lines(context.get("front_end"))
    lines += _counted_lines(candidates, context.get("counted"))
    lines += _session_lines(context.get("session_tuning"))
    notes = [f"- {c.name}: {n}" for c in candidates for n in c.notes]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if context:
        lines += ["## Run", ""]
        lines += [
            f"- {key}: {value}"
            for key, value in context.items()
            if key not in ("loadtest", "session_tuning", "counted", "front_end")
        ]
        lines.append("")
    return "\n".join(lines)


def _entity_type_lines(candidates: list[Candidate]) -> list[str]:
    """A tagger's entity F1 per type, each candidate a row: the pooled F1 above can hide a
    type that quantization or pruning lost."""
    typed = [c for c in candidates if c.accuracy and "by_type" in c.accuracy.details]
    if not typed:
        return []
    kinds = typed[0].accuracy.details["by_type"]
    header = [f"{kind} ({found['gold']})" for kind, found in kinds.items()]
    lines = [
        "## Entities by type",
        "",
        "Entity F1 of each type on the ONNX model (in brackets: how many the validation set has).",
        "",
        "| candidate | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for c in typed:
        by_type = c.accuracy.details["by_type"]
        cells = [f"{by_type[k]['f1']:.4f}" if k in by_type else "-" for k in kinds]
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _front_end_lines(front_end: dict | None) -> list[str]:
    """The work before the model (`measure/front_end.py`), which no latency above includes."""
    if not front_end:
        return []
    said = describe_front_end(front_end)
    timing = (
        f"{said[0].upper()}{said[1:]}, the machine that ran this tune: a request costs that "
        "plus the model's latency, which the tables above give alone."
    )
    return ["## Before the model", "", timing, ""]


def front_end_line(model: str, front_end: dict) -> str:
    """The bench table's line under a model whose bundle does work before it."""
    return f"{model}: before the model, {describe_front_end(front_end)}: not in the times above"


def _served_lines(candidates: list[Candidate]) -> list[str]:
    """How the accuracy column was measured, and both ends of a batch-dependent model's
    accuracy (dynamic INT8: activation ranges per batch) where they differ."""
    measured = [c for c in candidates if c.accuracy and c.accuracy.served_as]
    if not measured:
        return []
    lines = [f"Accuracy of each ONNX model as served: {measured[0].accuracy.served_as}.", ""]
    for c in measured:
        load = c.accuracy.under_load
        if load and load["accuracy"] != c.accuracy.accuracy:
            lines.append(
                f"- {c.name}: {c.accuracy.accuracy:.4f} as served, {load['accuracy']:.4f} in "
                f"{load['served_as'].split(',')[0]} under load (paired McNemar p="
                f"{load['p_value']:.2g}): its activation ranges are taken over each batch"
            )
    return lines + [""] if len(lines) > 2 else lines


COUNT_COLUMNS = ("candidate", "params M", "weights MB", "GMACs", "by width", "peak activations MB")


def _counted_lines(candidates: list[Candidate], counted: dict | None) -> list[str]:
    """Each candidate's counted costs at the profile's shape, how well they rank the measured
    p90 here, and the candidates a counted bound dropped before timing."""
    rows = [c for c in candidates if c.counts]
    if not rows and not (counted and counted.get("over_budget")):
        return []
    lines = ["## Counted at the profile's shape", ""]
    if rows:
        lines += [
            "| " + " | ".join(COUNT_COLUMNS) + " |",
            "|" + "|".join("---" for _ in COUNT_COLUMNS) + "|",
        ]
        for c in rows:
            n = c.counts
            widths = ", ".join(f"{w} {m / 1e9:.3g}" for w, m in sorted(n["macs"].items()))
            lines.append(
                f"| {c.name} | {n['params_m']:.2f} | {n['weight_bytes'] / 1e6:.1f} | "
                f"{n['gmacs']:.3g} | {widths} | {n['peak_activation_mb']:.2f} |"
            )
        lines.append("")
    if counted:

        def rho(key: str) -> str:
            value = counted.get(key)
            return f"{value:+.2f}" if value is not None else "n/a (fewer than 3, or all equal)"

        lines += [
            (
                f"How far counting ranks the p90 measured here (Spearman's rho over "
                f"{counted['candidates']} candidates): GMACs {rho('spearman_gmacs_p90')}, "
                f"width-weighted GMACs {rho('spearman_width_weighted_gmacs_p90')}, weight "
                f"bytes {rho('spearman_weight_bytes_p90')}. Near +1: counting alone "
                "would order them as this machine does; near 0 or below: only timing on the "
                "target can."
            ),
            "",
        ]
        for name, broken in counted.get("over_budget", {}).items():
            lines.append(
                f"- {name}: over the profile's counted budget ({'; '.join(broken)}), not timed"
            )
        if counted.get("over_budget"):
            lines.append("")
    return lines


def session_tuning_table(tuning: dict, title: str | None = None) -> Table:
    """A session tuning (`measure/tuning.py`'s JSON) as a rich table: every setting tried."""
    table = Table(title=title or f"session settings: {tuning['reason']}")
    for name in TABLE_COLUMNS:
        table.add_column(name, justify="left" if name == "setting" else "right")
    for row in table_rows(tuning):
        table.add_row(*row)
    return table


def _session_lines(tuning: dict | None) -> list[str]:
    """The report's section on the chosen model's session settings, tuned where it runs."""
    if not tuning:
        return []
    return [
        "## Session settings",
        "",
        (
            f"The chosen bundle runs with **{tuning['chosen']}**: {tuning['reason']}. Rule: "
            f"{tuning['rule']}. Measured on {tuning['machine'].get('cpu') or '?'} "
            f"({tuning['machine'].get('id', '?')})."
        ),
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
        *("| " + " | ".join(row) + " |" for row in table_rows(tuning)),
        "",
    ]


def _machines_line(candidates: list[Candidate], what: str = "latency") -> list[str]:
    """Where the latencies (or accuracies) were measured; several machines are named as such,
    never blended."""
    machines = {}
    for c in candidates:
        measured = getattr(c, what)
        machine = measured.machine if measured else {}
        if machine:
            machines.setdefault(machine.get("id"), (machine, []))[1].append(c.name)
    if not machines:
        return []
    if len(machines) == 1:
        ((machine, _),) = machines.values()
        return [f"**{what.capitalize()} measured on:** {describe(machine)}.", ""]
    parts = [f"{describe(m)}: {', '.join(names)}" for m, names in machines.values()]
    return [
        f"**{what.capitalize()} from different machines (not comparable across):** "
        + "; ".join(parts)
        + ".",
        "",
    ]


def _training_line(train: dict | None) -> list[str]:
    """Which condition ended fine-tuning (budget, early stopping, epochs, steps or target)."""
    if not train or "stopped_by" not in train:
        return []
    epochs = f"{train['epochs']:g} epochs, " if train.get("epochs") else ""
    line = (
        f"**Fine-tuning** stopped by {train['stopped_by']} ({epochs}{train['steps']} steps, "
        f"{train['train_seconds'] / 60:.1f} min)."
    )
    return [line, ""]


def column_names(candidates: list[Candidate]) -> list[str]:
    return [c.format(**vars(scoring_of(candidates))) for c in COLUMNS]


def scoring_of(candidates: list[Candidate]) -> Scoring:
    """How the run's candidates were scored (one task per run)."""
    scored = next((c.accuracy for c in candidates if c.accuracy), None)
    return scored.scoring if scored else SCORINGS["accuracy"]


def _method(candidates: list[Candidate], selection: Selection, profile: Profile) -> list[str]:
    """How the numbers and the choice were reached, in words."""
    lat, scoring = candidates[0].latency, scoring_of(candidates)
    objective = {
        "latency": "the fastest (p90; those not significantly slower, by the paired "
        "p90 ratio over the rounds they shared, are tied with it and the "
        "most accurate of the tie is taken)",
        "size": "the smallest (equal sizes tied: the most accurate of them)",
        "accuracy": "the most accurate",
    }[selection.objective]
    among = (
        ""
        if selection.objective == "accuracy"
        else " of those whose accuracy is not significantly below the most accurate one's "
        f"({scoring.test_words}, p < 0.05 counts as significant)"
    )
    shape = "traffic" if profile.budget_on == "traffic" else "fixed-shape"
    latency = (
        f"- Latency: all candidates timed side by side, each in its own process, in "
        f"interleaved rounds whose order rotates; intervals: {lat.ci_method}. The budget "
        f"is checked on the {shape} p90: `met` when the whole interval is under it, "
        "`missed` when it is all over, `marginal` otherwise (more rounds are run, up to a "
        "cap; a marginal candidate is then judged on its point estimate)."
    )
    traffic = (
        "- Traffic latency: the validation texts at their own token lengths (dynamic "
        f"shapes, batch {profile.batch_size})."
    )
    lines = [
        "## How the choice was made",
        "",
        (
            f"- Objective `{selection.objective}`: among candidates within the budget and the "
            f"accuracy bound, {objective}{among}."
        ),
        latency,
        traffic,
        f"- {scoring.metric[0].upper()}{scoring.metric[1:]} intervals: {scoring.interval}.",
        "",
        "Verdicts:",
        "",
    ]
    return (
        lines + [f"- {c.name}: {c.latency.verdict_note or _verdict(c)}" for c in candidates] + [""]
    )


def write_report(
    out_dir: str | Path,
    candidates: list[Candidate],
    selection: Selection,
    profile: Profile,
    context: dict,
) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_json_atomic(
        json_path,
        {
            "profile": profile.model_dump(),
            "selection": selection.to_json(),
            "candidates": [c.to_json() for c in candidates],
            "run": context,
        },
    )
    write_text_atomic(md_path, render_markdown(candidates, selection, profile, context))
    plot_pareto(candidates, selection, profile, out_dir / "pareto.png")
    return json_path, md_path


def rerender(run_dir: str | Path) -> tuple[Path, Path]:
    """`edgetune report RUN_DIR`: rebuild report.md and pareto.png from report.json."""
    import json

    from edgetune.errors import InputError

    run_dir = Path(run_dir)
    path = run_dir / "report.json"
    if not path.is_file():
        raise InputError(f"{run_dir}: no report.json (is it an edgetune tune --out folder?)")
    try:
        data = json.loads(path.read_text())
        profile = Profile(**data["profile"])
        candidates = [Candidate.from_json(c) for c in data["candidates"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not an edgetune report ({exc})") from None
    selection = choose(
        candidates,
        profile,
        data["run"].get("min_accuracy"),
        data["selection"].get("objective", "latency"),
    )
    return write_report(run_dir, candidates, selection, profile, data["run"])
