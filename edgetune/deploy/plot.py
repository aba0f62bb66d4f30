"""pareto.png: every candidate with its 95 % intervals, the frontier, the budget line, the choice.

Points are numbered (the numbers of the report's table) and named in a legend beside the plot,
so labels never overlap however close the candidates sit.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.profiles import Profile
from edgetune.search.record import Candidate
from edgetune.search.select import Selection


def _error(value: float, ci: list[float], scale: float = 1.0) -> list[float]:
    if not ci:
        return [0.0, 0.0]
    return [max(0.0, (value - ci[0]) * scale), max(0.0, (ci[1] - value) * scale)]


def _save(fig, path: Path) -> Path:
    """Write the figure under a temp name, then rename: a reader never sees half a PNG."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_pareto(
    candidates: list[Candidate], selection: Selection, profile: Profile, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, legend_ax) = plt.subplots(1, 2, figsize=(10, 4.8), width_ratios=[2.4, 1])
    for i, c in enumerate(candidates, 1):
        x, y = c.latency.p90_ms, 100 * c.accuracy.accuracy
        ax.errorbar(
            [x],
            [y],
            xerr=[[e] for e in _error(x, c.latency.p90_ci)],
            yerr=[[e] for e in _error(c.accuracy.accuracy, c.accuracy.ci, 100)],
            fmt="o",
            color="tab:gray",
            ecolor="lightgray",
            capsize=2,
            zorder=2,
        )
        ax.annotate(str(i), (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
    by_name = {c.name: c for c in candidates}
    front = [by_name[n] for n in selection.pareto]
    ax.plot(
        [c.latency.p90_ms for c in front],
        [100 * c.accuracy.accuracy for c in front],
        "-",
        color="tab:blue",
        label="Pareto frontier",
        zorder=3,
    )
    ax.axvline(
        profile.latency_budget_ms,
        color="tab:red",
        linestyle="--",
        label=f"budget {profile.latency_budget_ms:g} ms",
    )
    if selection.winner is not None:
        w = selection.winner
        ax.scatter(
            [w.latency.p90_ms],
            [100 * w.accuracy.accuracy],
            s=160,
            facecolors="none",
            edgecolors="tab:green",
            linewidths=2,
            label=f"chosen: {w.name}",
            zorder=4,
        )
    ax.set_xlabel(
        f"p90 latency, ms (batch {profile.batch_size}, seq {profile.sequence_length}); "
        "bars: 95 % CI"
    )
    ax.set_ylabel("accuracy on validation, % (ONNX)")
    ax.set_title(f"edgetune candidates on {profile.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    legend_ax.axis("off")
    rows = [f"{i:>2}  {c.name}" for i, c in enumerate(candidates, 1)]
    legend_ax.text(
        0.0,
        1.0,
        "\n".join(rows),
        va="top",
        family="monospace",
        fontsize=max(5, 9 - len(rows) // 12),
    )
    return _save(fig, path)


def plot_load(result, path: Path) -> Path:
    """loadtest.png: p50/p90/p99 against the offered rate, the budget line, the capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(
        (s for s in result.steps if s.kind == "open" and s.p99_ms is not None),
        key=lambda s: s.offered_rps,
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rates = [s.offered_rps for s in steps]
    for name, style in (("p50_ms", "o-"), ("p90_ms", "s-"), ("p99_ms", "^-")):
        ax.plot(rates, [getattr(s, name) for s in steps], style, label=name.replace("_ms", ""))
    ax.axhline(
        result.budget_ms, color="tab:red", linestyle="--", label=f"budget {result.budget_ms:g} ms"
    )
    if result.capacity_rps is not None:
        ax.axvline(
            result.capacity_rps,
            color="tab:green",
            linestyle=":",
            label=f"capacity {result.capacity_rps:g} req/s",
        )
    ax.set_xlabel("offered rate, requests/s (Poisson arrivals, one text each)")
    ax.set_ylabel("latency, ms (from scheduled send)")
    ax.set_yscale("log")
    ax.set_title(f"load test: capacity at p99 <= {result.budget_ms:g} ms", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)
