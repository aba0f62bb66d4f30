"""Session settings tuned where the model runs (Olive's `tune-session-params`, but cheaper).

The trials: the default session (the one every measurement used before), then each setting
changed alone: intra-op threads 1, 2, 4, ... below the profile's, thread spinning off, graph
optimization extended and basic, parallel execution. They are timed side by side in the
interleaved rounds `bench` uses (one worker process per setting, rotating order), on the
target's agent when there is one, so each ratio to the default pairs rounds that shared drift.

A change wins only if its paired p90 ratio to the default (95 % interval, bootstrapped over the
shared rounds, `measure/stats.py`) lies wholly below 1. p90, not p50: the budget and the choice
are judged on p90, and a setting that speeds the median but stretches the tail (spinning off,
fewer threads) gains nothing there. Winners are timed again in a fresh, confirming pass, with
their combination when more than one kind of setting won; the fastest confirmed one is
recorded, else the default is kept. So one lucky pass is not enough, a full cartesian product
is never run, and when nothing wins (the usual case) the cost is one pass over 1 + k settings
(k = 4 on a 2-thread profile). No torch here, on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgetune.measure.bench import Subject, fixed_feed
from edgetune.measure.latency import LatencySettings, System, measure_interleaved
from edgetune.measure.session import SessionSettings
from edgetune.measure.stats import Interval, ratio_interval
from edgetune.profiles import Profile

RULE = (
    "a setting wins only if its paired p90 ratio to the default (95 % interval over the "
    "rounds they shared) lies wholly below 1, in the first pass and again in a confirming pass"
)
DEFAULT = SessionSettings()
# settings -> (raw times per round of each, by label; the fingerprint of where they ran)
Measure = Callable[[list[SessionSettings]], tuple[dict[str, list[np.ndarray]], dict]]


@dataclass
class Trial:
    """One setting's times against the default's, from the same pass."""

    settings: SessionSettings
    stage: int  # 1: one change at a time; 2: the winners again (and their combination)
    p50_ms: float
    p90_ms: float
    p50_ratio: Interval  # this setting's percentile over the default's
    p90_ratio: Interval

    @property
    def faster(self) -> bool:
        return self.settings != DEFAULT and self.p90_ratio.high < 1.0

    def to_json(self) -> dict:
        return {
            "setting": self.settings.label(),
            "changes": self.settings.changes(),
            "stage": self.stage,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p50_ratio": self.p50_ratio.to_json(),
            "p90_ratio": self.p90_ratio.to_json(),
            "faster": self.faster,
        }


@dataclass
class SessionTuning:
    chosen: SessionSettings
    reason: str
    trials: list[Trial]
    machine: dict = field(default_factory=dict)  # where it was measured

    def to_json(self) -> dict:
        return {
            "chosen": self.chosen.label(),
            "settings": self.chosen.model_dump(),
            "reason": self.reason,
            "rule": RULE,
            "trials": [t.to_json() for t in self.trials],
            "machine": self.machine,
        }

    def summary(self) -> dict:
        """What a manifest keeps of it: the choice, why, and where it was measured."""
        return {
            "chosen": self.chosen.label(),
            "reason": self.reason,
            "machine": self.machine.get("id"),
        }


def thread_counts(threads: int) -> list[int]:
    """1, 2, 4, ... below the profile's own count (which the default already uses)."""
    return [n for n in (2**i for i in range(threads.bit_length())) if n < threads]


def single_changes(profile: Profile) -> list[tuple[str, SessionSettings]]:
    """(kind, settings) with one setting changed from the default. Threads and spinning are
    the CPU's: on a CUDA profile only the graph and execution settings are tried."""
    changes: list[tuple[str, SessionSettings]] = []
    if profile.device == "cpu":
        changes += [
            ("threads", SessionSettings(intra_op_threads=n)) for n in thread_counts(profile.threads)
        ]
        changes.append(("spinning", SessionSettings(allow_spinning=False)))
    changes += [
        ("optimization", SessionSettings(graph_optimization=level))
        for level in ("extended", "basic")
    ]
    # two inter-op threads: the fewest that run two independent branches at once
    changes.append(("execution", SessionSettings(execution_mode="parallel", inter_op_threads=2)))
    return changes


def compare(rounds: dict[str, list[np.ndarray]], stage: int, tried: list[SessionSettings]):
    """Each setting's percentiles and paired ratios to the default of the same pass."""
    default = rounds[DEFAULT.label()]
    trials = []
    for settings in tried:
        own = rounds[settings.label()]
        pooled = np.concatenate(own)
        trials.append(
            Trial(
                settings,
                stage,
                float(np.percentile(pooled, 50)),
                float(np.percentile(pooled, 90)),
                ratio_interval(default, own, 50),
                ratio_interval(default, own, 90),
            )
        )
    return trials


def _ratio(trial: Trial) -> str:
    r = trial.p90_ratio
    return f"p90 x{r.value:.3f} [{r.low:.3f}, {r.high:.3f}] of the default's"


def tune_session(profile: Profile, measure: Measure) -> SessionTuning:
    """Vary one setting at a time, confirm the winners (and their combination), keep the
    default unless a confirmed one is faster beyond its interval (see the module docstring)."""
    changes = single_changes(profile)
    first = [DEFAULT, *(s for _, s in changes)]
    rounds, machine = measure(first)
    trials = compare(rounds, 1, first)
    best: dict[str, Trial] = {}
    for (kind, _), trial in zip(changes, trials[1:]):
        if trial.faster and (
            kind not in best or trial.p90_ratio.value < best[kind].p90_ratio.value
        ):
            best[kind] = trial
    if not best:
        reason = "no setting was faster than the default beyond its interval: default kept"
        return SessionTuning(DEFAULT, reason, trials, machine)
    again = [t.settings for t in best.values()]
    if len(again) > 1:
        again.append(SessionSettings(**{k: v for s in again for k, v in s.changes().items()}))
    rounds, machine = measure([DEFAULT, *again])
    confirming = compare(rounds, 2, [DEFAULT, *again])
    trials += confirming
    won = [t for t in confirming if t.faster]
    if not won:
        names = ", ".join(s.label() for s in again)
        reason = f"{names} won the first pass but not the confirming one: default kept"
        return SessionTuning(DEFAULT, reason, trials, machine)
    winner = min(won, key=lambda t: t.p90_ratio.value)
    reason = f"{winner.settings.label()}: {_ratio(winner)} in the confirming pass"
    return SessionTuning(winner.settings, reason, trials, machine)


def measure_settings(
    subject: Subject, profile: Profile, texts: list[str] | None, settings: LatencySettings
) -> Measure:
    """The real `Measure`: the subject's fixed-shape batch under each session setting, in
    interleaved rounds here or on `settings.target`."""
    feed = fixed_feed(subject, profile, texts)

    def measure(tried: list[SessionSettings]) -> tuple[dict[str, list[np.ndarray]], dict]:
        systems = [System(s.label(), subject.model_path, feed, session=s) for s in tried]
        run = settings.target.measure_interleaved if settings.target else measure_interleaved
        results = run(systems, profile, settings)
        return {s.name: s.rounds for s in systems}, results[systems[0].name].machine

    return measure


def table_rows(tuning: dict) -> list[list[str]]:
    """Rows of a tuning's JSON (`SessionTuning.to_json`) for a table: setting, pass, p50, p90,
    the ratios to the default with their intervals, whether it was faster, and the choice."""

    def ratio(r: list[float]) -> str:
        return f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]"

    return [
        [
            t["setting"],
            str(t["stage"]),
            f"{t['p50_ms']:.3f}",
            f"{t['p90_ms']:.3f}",
            ratio(t["p50_ratio"]),
            ratio(t["p90_ratio"]),
            "yes" if t["faster"] else "-",
            "chosen" if t["setting"] == tuning["chosen"] and t["stage"] == last else "",
        ]
        for last in [max(t["stage"] for t in tuning["trials"])]
        for t in tuning["trials"]
    ]


TABLE_COLUMNS = (
    "setting",
    "pass",
    "p50 ms",
    "p90 ms",
    "p50 vs default [95% CI]",
    "p90 vs default [95% CI]",
    "faster",
    "",
)
