"""The run's report: `report.json` for machines, `report.md` and a rich table for people."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from edgetune.fsutil import write_json_atomic, write_text_atomic
from edgetune.profiles import Profile
from edgetune.select import Candidate, Selection

COLUMNS = ("candidate", "precision", "accuracy", "macro-F1", "p50 ms", "p90 ms", "p99 ms",
           "items/s", "size MB", "peak RSS MB", "budget")


def _row(c: Candidate, selection: Selection | None) -> list[str]:
    mark = ""
    if selection is not None and selection.winner is c:
        mark = " (chosen)"
    verdict = "met" if c.meets_budget else ("over p90" if not c.meets_latency else "over size")
    return [c.name + mark, c.precision, f"{c.accuracy.accuracy:.4f}", f"{c.accuracy.macro_f1:.4f}",
            f"{c.latency.p50_ms:.2f}", f"{c.latency.p90_ms:.2f}", f"{c.latency.p99_ms:.2f}",
            f"{c.latency.throughput_items_per_s:.1f}", f"{c.size_mb:.1f}",
            f"{c.latency.peak_rss_mb:.0f}", verdict]


def candidates_table(candidates: list[Candidate], selection: Selection | None, title: str) -> Table:
    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("candidate", "precision", "budget") else "right")
    for c in candidates:
        table.add_row(*_row(c, selection))
    return table


def render_markdown(candidates: list[Candidate], selection: Selection, profile: Profile,
                    context: dict) -> str:
    lines = [
        "# edgetune report", "",
        f"Profile **{profile.name}**: {profile.device}, {profile.threads} threads, batch "
        f"{profile.batch_size}, sequence {profile.sequence_length}, budget p90 <= "
        f"{profile.latency_budget_ms:g} ms"
        + (f", size <= {profile.max_model_size_mb:g} MB" if profile.max_model_size_mb else "") + ".",
        "",
        f"**Choice:** {selection.reason}.", "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_row(c, selection)) + " |" for c in candidates]
    lines += ["", f"Pareto frontier (accuracy vs p90): {', '.join(selection.pareto)}.", ""]
    notes = [f"- {c.name}: {n}" for c in candidates for n in c.notes]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if context:
        lines += ["## Run", ""]
        lines += [f"- {key}: {value}" for key, value in context.items()]
        lines.append("")
    return "\n".join(lines)


def write_report(out_dir: str | Path, candidates: list[Candidate], selection: Selection,
                 profile: Profile, context: dict) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_json_atomic(json_path, {
        "profile": profile.model_dump(), "selection": selection.to_json(),
        "candidates": [c.to_json() for c in candidates], "run": context,
    })
    write_text_atomic(md_path, render_markdown(candidates, selection, profile, context))
    return json_path, md_path
