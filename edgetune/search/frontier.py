"""The pruning search's order: which configuration to distil next, from what the earlier ones
showed (the search in `search/pruning.py` asks; this module neither trains nor measures).

Probes give every feasible configuration its cost before any training (the p90 on the profile,
or the parameters when the objective is size); only recovery tells its accuracy, at minutes a
student. No fixed order suits every task: on one news task the most pruned grid point held the
bound, on SST-2 the most pruned ones broke it. So the order is a bisection over cost:

- **next**: the median, by cost, of the configurations still open (the faster of the two
  middles);
- a configuration that **breaks** the accuracy bound closes every open one that prunes at least
  as much on every axis: none of them can be more accurate;
- one that **settles** (holds the bound and is not significantly below the reference by the
  paired test) closes every open one that costs more in its probe (by over `COST_TOLERANCE`):
  the choice goes to the cheapest candidate not significantly below the best, so a dearer
  student could not beat it.
  A student that holds but is significantly below closes nothing: a dearer one may still be
  worth more. With the accuracy objective nothing closes on a hold;
- when nothing is open, the cheapest settled configuration's **more pruned neighbours** (one
  axis a step further: a layer fewer, a quarter more of the heads or the FFN removed) that were
  never probed are proposed (`beyond`), so the search goes past the grid where the task allows.

Each step is logged in `history` for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edgetune.compress.pruning import PruneConfig

FRACTION_STEPS = (0.25, 0.5, 0.75)  # heads / FFN shares removed, beyond the grid
# a settled configuration closes only those dearer by more than this share: one probe's p90s
# differ by a few % from noise on shared cores, and a candidate tied on latency in the final
# rounds may still win the choice by accuracy (select.py's tie rule)
COST_TOLERANCE = 0.05


@dataclass
class Point:
    config: PruneConfig
    cost: float  # what the objective ranks by: probe p90 (ms), or parameters for size
    params: int


def more_pruned_neighbours(config: PruneConfig, num_layers: int) -> list[PruneConfig]:
    """`config` with one axis a step further: a layer fewer, or the next share of heads or FFN
    removed (0.25, 0.5, 0.75)."""
    layers = config.layers or num_layers
    found = [PruneConfig(layers - 1, config.heads, config.ffn)] if layers > 1 else []
    heads = next((f for f in FRACTION_STEPS if f > config.heads), None)
    if heads is not None:
        found.append(PruneConfig(config.layers, heads, config.ffn))
    ffn = next((f for f in FRACTION_STEPS if f > config.ffn), None)
    if ffn is not None:
        found.append(PruneConfig(config.layers, config.heads, ffn))
    return found


class Frontier:
    """Open configurations and what the trained ones showed; see the module docstring."""

    def __init__(self, num_layers: int, close_dearer: bool = True):
        self.num_layers = num_layers
        self.close_dearer = close_dearer  # False for the accuracy objective
        self.points: dict[str, Point] = {}
        self.open: dict[str, Point] = {}
        self.closed: dict[str, str] = {}  # name -> why it is not trained
        self.outcomes: dict[str, str] = {}  # name -> held, settled, broke
        self.seen: set[str] = set()  # probed, feasible or not: never proposed again
        self.history: list[dict] = []

    def offer(self, config: PruneConfig, cost: float, params: int) -> str:
        """A probed, feasible configuration; closed at once (the reason returned) if what is
        known rules it out."""
        point = Point(config, cost, params)
        self.seen.add(config.name)
        self.points[config.name] = point
        reason = self._ruled_out(point)
        if reason:
            self.closed[config.name] = reason
        else:
            self.open[config.name] = point
        return reason

    def saw(self, config: PruneConfig) -> None:
        """A probed configuration that is not feasible (over the budget)."""
        self.seen.add(config.name)

    def next(self) -> PruneConfig | None:
        """The median open configuration by cost, taken off the open set; None: none open."""
        if not self.open:
            return None
        ordered = sorted(self.open.values(), key=lambda p: (p.cost, -p.params))
        chosen = ordered[(len(ordered) - 1) // 2]
        del self.open[chosen.config.name]
        self.history.append(
            {
                "config": chosen.config.name,
                "cost": chosen.cost,
                "params": chosen.params,
                "open": len(ordered),
            }
        )
        return chosen.config

    def order(
        self,
        probe: Callable[[list[PruneConfig]], None],
        may_extend: Callable[[list[PruneConfig]], bool] = lambda beyond: True,
        say: Callable[[str], None] = lambda line: None,
    ) -> Iterator[PruneConfig]:
        """The next configuration each time one is asked for (trained in turn, after the last
        one's outcome was recorded); with nothing open, `probe` (which offers the feasible
        ones) is given the neighbours beyond the grid first, if `may_extend` allows."""
        while True:
            config = self.next()
            if config is None:
                beyond = self.beyond()
                if not beyond or not may_extend(beyond):
                    return
                probe(beyond)
                continue
            say(f"next: {config.name} (the median by cost of {self.history[-1]['open']} open)")
            yield config

    def remaining(self) -> list[PruneConfig]:
        return [p.config for p in self.open.values()]

    def record(self, config: PruneConfig, held: bool, settled: bool) -> dict[str, str]:
        """What `config`'s recovery showed; returns the configurations this closes, with why."""
        outcome = "settled" if held and settled else "held" if held else "broke"
        self.outcomes[config.name] = outcome
        for entry in self.history:
            if entry["config"] == config.name:
                entry["outcome"] = outcome
        closing = {}
        for name, point in list(self.open.items()):
            reason = self._ruled_out(point)
            if reason:
                closing[name] = reason
                self.closed[name] = reason
                del self.open[name]
        return closing

    def beyond(self) -> list[PruneConfig]:
        """With nothing open: the cheapest settled configuration's more pruned neighbours never
        probed and not ruled out by a broken one (empty when there is none)."""
        if self.open:
            return []
        settled = [self.points[n] for n, o in self.outcomes.items() if o == "settled"]
        if not settled or not self.close_dearer:
            return []
        cheapest = min(settled, key=lambda p: p.cost)
        return [
            c
            for c in more_pruned_neighbours(cheapest.config, self.num_layers)
            if c.name not in self.seen and not self._broken_by(c)
        ]

    def _broken_by(self, config: PruneConfig) -> str | None:
        return next(
            (
                name
                for name, outcome in self.outcomes.items()
                if outcome == "broke"
                and config.prunes_at_least(self.points[name].config, self.num_layers)
            ),
            None,
        )

    def _ruled_out(self, point: Point) -> str:
        broken = self._broken_by(point.config)
        if broken:
            return f"prunes at least as much as {broken}, which broke the accuracy bound"
        if not self.close_dearer:
            return ""
        cheaper = [
            name
            for name, outcome in self.outcomes.items()
            if outcome == "settled" and self.points[name].cost * (1 + COST_TOLERANCE) < point.cost
        ]
        if cheaper:
            return (
                f"costs more than {100 * COST_TOLERANCE:g} % more in its probe than {cheaper[0]}, "
                "which held the bound and is not significantly below the reference"
            )
        return ""
