"""The run's report: `report.json` for machines, `report.md` and a rich table for people."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from edgetune.fsutil import write_json_atomic, write_text_atomic
from edgetune.profiles import Profile
from edgetune.search.record import Candidate
from edgetune.search.select import Selection, choose

COLUMNS = ("candidate", "precision", "accuracy", "macro-F1", "p50 ms", "p90 ms", "p99 ms",
           "items/s", "size MB", "peak RSS MB", "budget")


def _row(c: Candidate, selection: Selection | None) -> list[str]:
    mark = ""
    if selection is not None and selection.winner is not None and selection.winner.name == c.name:
        mark = " (chosen)"
    verdict = "met" if c.meets_budget else ("over p90" if not c.meets_latency else "over size")
    if not c.within_accuracy_bound:
        verdict += ", accuracy below bound"
    return [c.name + mark, c.precision, f"{c.accuracy.accuracy:.4f}", f"{c.accuracy.macro_f1:.4f}",
            f"{c.latency.p50_ms:.2f}", f"{c.latency.p90_ms:.2f}", f"{c.latency.p99_ms:.2f}",
            f"{c.latency.throughput_items_per_s:.1f}", f"{c.size_mb:.1f}",
            f"{c.latency.peak_rss_mb:.0f}", verdict]


def candidates_table(candidates: list[Candidate], selection: Selection | None, title: str) -> Table:
    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("candidate", "precision", "budget") else "right",
                         no_wrap=name in ("candidate", "budget"))
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
    lines += ["", f"Pareto frontier (accuracy vs p90): {', '.join(selection.pareto)}.", "",
              "![accuracy vs p90 latency](pareto.png)", ""]
    search = context.get("search")
    if search:
        lines += ["## Pruning search", "",
                  (f"Trained {search['trained']} configuration(s), {search['from_cache']} from cache; "
                  f"accuracy bound {context.get('min_accuracy', 0):.4f}."), ""]
        lines += [f"- {line}" for line in search["lines"]]
        lines.append("")
    notes = [f"- {c.name}: {n}" for c in candidates for n in c.notes]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if context:
        lines += ["## Run", ""]
        lines += [f"- {key}: {value}" for key, value in context.items()]
        lines.append("")
    return "\n".join(lines)


def plot_pareto(candidates: list[Candidate], selection: Selection, profile: Profile,
                path: Path) -> Path:
    """All candidates, the frontier, the budget line and the chosen one, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [c.latency.p90_ms for c in candidates]
    ys = [100 * c.accuracy.accuracy for c in candidates]
    ax.scatter(xs, ys, c="tab:gray", label="candidates", zorder=2)
    for c, x, y in zip(candidates, xs, ys):
        ax.annotate(c.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    by_name = {c.name: c for c in candidates}
    front = [by_name[n] for n in selection.pareto]
    ax.plot([c.latency.p90_ms for c in front], [100 * c.accuracy.accuracy for c in front],
            "-o", color="tab:blue", label="Pareto frontier", zorder=3)
    ax.axvline(profile.latency_budget_ms, color="tab:red", linestyle="--",
               label=f"budget {profile.latency_budget_ms:g} ms")
    if selection.winner is not None:
        w = selection.winner
        ax.scatter([w.latency.p90_ms], [100 * w.accuracy.accuracy], s=160, facecolors="none",
                   edgecolors="tab:green", linewidths=2, label=f"chosen: {w.name}", zorder=4)
    ax.set_xlabel(f"p90 latency, ms (batch {profile.batch_size}, seq {profile.sequence_length})")
    ax.set_ylabel("accuracy on validation, % (ONNX)")
    ax.set_title(f"edgetune candidates on {profile.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(out_dir: str | Path, candidates: list[Candidate], selection: Selection,
                 profile: Profile, context: dict) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_json_atomic(json_path, {
        "profile": profile.model_dump(), "selection": selection.to_json(),
        "candidates": [c.to_json() for c in candidates], "run": context,
    })
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
    selection = choose(candidates, profile, data["run"].get("min_accuracy"))
    return write_report(run_dir, candidates, selection, profile, data["run"])
