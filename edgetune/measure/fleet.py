"""Several agents for one profile: a small fleet of identical boxes that shares the work.

Each measurement (one set of interleaved rounds: its systems must be timed side by side on
one machine) and each accuracy run goes to ONE agent, the free one that has done the least;
concurrent callers (the search's probes) thus spread over the agents. An agent that does not
answer, or stops answering mid-call, is left out and the call is redone whole on another;
with none left, the run stops with one line naming the agent (what finished is cached).

Agents whose fingerprints differ (CPU, flags, cores, memory, OS/arch, onnxruntime version or
providers) would blend numbers of different machines into one decision, so they are refused
unless the user allows it; then each number still carries the one machine it came from.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np

from edgetune.console import console
from edgetune.errors import InputError
from edgetune.hardware import machine_id
from edgetune.measure.latency import LatencyResult, LatencySettings, System
from edgetune.measure.remote import AgentUnreachable, Target, read_token
from edgetune.profiles import Profile

KIND_FIELDS = ("cpu", "flags", "cores", "memory_gb", "os", "arch", "onnxruntime", "providers")


class Fleet:
    """The agents of one profile; the same `measure_interleaved` as a single `Target`."""

    def __init__(self, targets: list[Target], allow_mixed: bool = False):
        self.machines: dict[str, dict] = {}  # url -> fingerprint, of the agents that answered
        last: AgentUnreachable | None = None
        for target in targets:
            try:
                self.machines[target.url] = target.fingerprint()
            except AgentUnreachable as exc:
                last = exc
                console.log(f"{exc}; left out of the profile's agents")
        if not self.machines:
            raise last or InputError("no agent given")
        if not allow_mixed:
            check_same_kind(self.machines)
        self.live = [t for t in targets if t.url in self.machines]
        self.kinds = sorted({machine_id(m) for m in self.machines.values()})
        self._setup()

    def _setup(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[str] = set()
        self._done = {t.url: 0 for t in self.live}

    def __getstate__(self) -> dict:  # a Ray task takes a copy: locks are made anew there
        return {k: v for k, v in self.__dict__.items() if k not in ("_cond", "_busy", "_done")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def by_kind(self) -> list[Fleet]:
        """One fleet per kind of machine, the first-named agent's kind first: with
        `--allow-mixed-targets`, `bench` measures on each and keeps their numbers apart."""
        kind_of = {t.url: machine_id(self.machines[t.url]) for t in self.live}
        parts = []
        for kind in dict.fromkeys(kind_of.values()):
            part = copy.copy(self)
            part.live = [t for t in self.live if kind_of[t.url] == kind]
            part.kinds = [kind]
            part._setup()
            parts.append(part)
        return parts

    @property
    def size(self) -> int:
        """Agents still answering: how many measurements can run at once."""
        return len(self.live)

    def _acquire(self) -> Target | None:
        """The free live agent that has done the least (waits while all are busy); None when
        no agent is left."""
        with self._cond:
            while True:
                if not self.live:
                    return None
                free = [t for t in self.live if t.url not in self._busy]
                if free:
                    target = min(free, key=lambda t: self._done[t.url])
                    self._busy.add(target.url)
                    return target
                self._cond.wait()

    def _release(self, target: Target, lost: bool) -> None:
        with self._cond:
            self._busy.discard(target.url)
            self._done[target.url] += 1
            if lost and target in self.live:
                self.live.remove(target)
            self._cond.notify_all()

    def _on_one(self, call):
        """`call(target)` on one agent; redone whole on another if that one stops answering."""
        lost: AgentUnreachable | None = None
        while True:
            target = self._acquire()
            if target is None:
                raise InputError(
                    f"{lost or 'every agent of the profile stopped answering'}; no other agent "
                    "of the profile is left (`tune --resume` continues from the measurements "
                    "that finished)"
                )
            gone = False
            try:
                return call(target)  # any other error (a refusal) would be the same anywhere
            except AgentUnreachable as exc:
                lost, gone = exc, True
            finally:  # always freed: a caller waiting for an agent must not wait forever
                self._release(target, lost=gone)
            if self.live:
                console.log(f"{lost}; its measurement is redone on another agent")

    def measure_interleaved(
        self,
        systems: list[System],
        profile: Profile,
        settings: LatencySettings | None = None,
        budget_ms: float | None = None,
    ) -> dict[str, LatencyResult]:
        """As `measure.latency.measure_interleaved`, all systems on one agent of the fleet."""
        return self._on_one(lambda t: t.measure_interleaved(systems, profile, settings, budget_ms))

    def predict(
        self, model_path: Path, batches: list[dict[str, np.ndarray]], profile: Profile
    ) -> tuple[np.ndarray, int, dict]:
        """As `Target.predict`, on one agent of the fleet."""
        return self._on_one(lambda t: t.predict(model_path, batches, profile))


def check_same_kind(machines: dict[str, dict]) -> None:
    """One line naming the agents and the fields that differ, if any do."""
    (first_url, first), *others = machines.items()
    for url, found in others:
        differ = [f for f in KIND_FIELDS if found.get(f) != first.get(f)]
        if differ:
            shown = ", ".join(_difference(f, first.get(f), found.get(f)) for f in differ)
            raise InputError(
                f"agents {first_url} and {url} are different machines ({shown}); one profile's "
                "agents must be alike: drop one, or give --allow-mixed-targets to keep "
                "each one's numbers apart"
            )


def _difference(field: str, a: object, b: object) -> str:
    """`cores 2 vs 1`; for lists (flags, providers) only what one has and the other lacks."""
    if isinstance(a, list) and isinstance(b, list):
        only_a, only_b = sorted(set(a) - set(b))[:5], sorted(set(b) - set(a))[:5]
        return f"{field} {only_a or '[]'} vs {only_b or '[]'}"
    return f"{field} {a} vs {b}"


def fleet_for(
    urls: list[str], profile: Profile, token_file: str | None, allow_mixed: bool
) -> Fleet | None:
    """The agents named on the command line, else the profile's `targets`; None: none."""
    urls = urls or profile.targets
    if not urls:
        return None
    token = read_token(token_file)
    return Fleet([Target(url, token) for url in dict.fromkeys(urls)], allow_mixed)
