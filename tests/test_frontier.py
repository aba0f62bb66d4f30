"""The pruning search's adaptive order on a stub of recovery outcomes: which configurations are
trained, in what order, when one holds and when one breaks, and when it goes past the grid."""

from __future__ import annotations

import dataclasses

from edgetune.compress.pruning import PruneConfig
from edgetune.search.frontier import Frontier, more_pruned_neighbours
from edgetune.search.pruning import default_prune_configs

LAYERS = 6


def cost(cfg: PruneConfig) -> float:
    """A stub probe p90: what is left of the model (layers x the kept heads/FFN share)."""
    kept = (cfg.layers or LAYERS) / LAYERS
    return round(100 * kept * (1 - 0.3 * cfg.heads - 0.6 * cfg.ffn), 3)


def explore(holds, configs=None, budget_ms: float = 1e9):
    """Drive the frontier as `run_search` does: probe, train each config it hands out, record
    `holds(cfg)` (held and settled together), probe what it proposes past the grid."""
    frontier = Frontier(LAYERS)

    def probe(batch):
        for cfg in batch:
            if cost(cfg) <= budget_ms:
                frontier.offer(cfg, cost(cfg), int(1000 * cost(cfg)))
            else:
                frontier.saw(cfg)

    probe(configs if configs is not None else default_prune_configs(LAYERS))
    trained = []
    for cfg in frontier.order(probe):
        trained.append(cfg.name)
        frontier.record(cfg, holds(cfg), holds(cfg))
    return trained, frontier


def test_when_everything_holds_it_goes_past_the_grid_to_the_cheapest_that_holds():
    trained, frontier = explore(lambda cfg: True)
    grid = {c.name for c in default_prune_configs(LAYERS)}
    assert len([n for n in trained if n in grid]) <= 4  # bisection, not the grid's 10
    beyond = [n for n in trained if n not in grid]
    assert beyond, "the search went past the grid"
    cheapest = min(trained, key=lambda n: cost(PruneConfig.parse(n)))
    assert PruneConfig.parse(cheapest).layers == 1  # down to one layer
    assert frontier.outcomes[cheapest] == "settled"
    # every config dearer than one that settled was closed without training
    assert all("more in its probe than" in why for why in frontier.closed.values())


def test_when_the_pruned_ones_break_it_goes_back_toward_less_pruned_ones():
    def holds(cfg):  # only light pruning recovers (as on SST-2)
        return (cfg.layers or LAYERS) >= 4 and cfg.heads <= 0.25 and cfg.ffn <= 0.25

    trained, frontier = explore(holds)
    assert frontier.outcomes[trained[0]] == "broke"  # the median of the grid breaks
    assert any(outcome == "settled" for outcome in frontier.outcomes.values())
    # nothing pruning at least as much as a broken config is trained after it broke
    for i, name in enumerate(trained):
        for earlier in trained[:i]:
            if frontier.outcomes[earlier] == "broke":
                assert not PruneConfig.parse(name).prunes_at_least(
                    PruneConfig.parse(earlier), LAYERS
                )
    # the cheapest trained config that holds is the cheapest config that holds at all
    holding = [n for n, o in frontier.outcomes.items() if o == "settled"]
    every_holding = [
        c
        for c in [*default_prune_configs(LAYERS), PruneConfig(5), PruneConfig(4, 0.25)]
        if holds(c)
    ]
    best = min(cost(PruneConfig.parse(n)) for n in holding)
    assert best <= min(cost(c) for c in every_holding if c.name in frontier.seen)


def test_the_order_is_a_bisection_by_cost():
    configs = [PruneConfig(k) for k in (5, 4, 3, 2, 1)]  # cost falls with each layer dropped
    trained, _ = explore(lambda cfg: cfg.layers >= 3, configs)
    # median L3 holds -> L4, L5 closed; of {L2, L1} the cheaper middle: L1 breaks; L2 prunes
    # less than L1, so it is tried and breaks; then L3's own neighbours past the grid (heads,
    # FFN), which hold here, and theirs
    assert trained[:3] == ["L3", "L1", "L2"]
    assert trained[3:] and all(PruneConfig.parse(n).layers == 3 for n in trained[3:])


def test_a_hold_significantly_below_the_reference_closes_nothing_dearer():
    frontier = Frontier(LAYERS)
    for k in (5, 4, 3):
        frontier.offer(PruneConfig(k), float(k), k)
    first = frontier.next()
    assert first.name == "L4"
    assert frontier.record(first, held=True, settled=False) == {}
    assert {c.name for c in frontier.remaining()} == {"L5", "L3"}
    closed = frontier.record(frontier.next(), held=True, settled=True)  # L3 is next, cheaper
    assert set(closed) == {"L5"}


def test_the_accuracy_objective_closes_nothing_on_a_hold_and_never_extends():
    frontier = Frontier(LAYERS, close_dearer=False)
    for k in (5, 3):
        frontier.offer(PruneConfig(k), float(k), k)
    trained = []
    for cfg in frontier.order(lambda batch: None):
        trained.append(cfg.name)
        frontier.record(cfg, True, True)
    assert sorted(trained) == ["L3", "L5"] and frontier.beyond() == []


def test_neighbours_step_one_axis_each():
    names = [c.name for c in more_pruned_neighbours(PruneConfig(2, 0.5, 0.75), LAYERS)]
    assert names == ["L1-H0.5-F0.75", "L2-H0.75-F0.75"]
    assert [c.name for c in more_pruned_neighbours(PruneConfig(1, 0.75, 0.75), LAYERS)] == []


def test_students_judge_progress_on_a_fixed_stratified_subset():
    import datasets

    from edgetune.data.labels import evaluation_subset

    labels = [0] * 900 + [1] * 100
    validation = datasets.Dataset.from_dict(
        {"text": [str(i) for i in range(1000)], "label": labels}
    )
    validation = validation.cast_column("label", datasets.ClassLabel(names=["a", "b"]))

    @dataclasses.dataclass
    class Rows:
        validation: object

    first = evaluation_subset(Rows(validation), 200).validation
    again = evaluation_subset(Rows(validation), 200).validation
    assert len(first) == 200 and first["text"] == again["text"]  # fixed
    assert sum(first["label"]) == 20  # stratified: the 10 % minority stays 10 %
    assert evaluation_subset(Rows(validation), 5000).validation is validation


def test_siblings_reuse_only_what_was_left_to_auto_and_only_valid_values():
    from edgetune.search.pruning import recovery_choices
    from edgetune.train.settings import TrainConfig

    def record(train):
        return {"candidates": [{"settings": {"pruning": {"train": train}}}]}

    found = {"batch_size": {"chosen": 16}, "learning_rate": 3e-4}
    assert recovery_choices(record(found), TrainConfig()) == {
        "batch_size": 16,
        "learning_rate": 3e-4,
    }
    assert recovery_choices(record(found), TrainConfig(batch_size=8)) == {"learning_rate": 3e-4}
    assert recovery_choices(record({"batch_size": {"chosen": "x"}}), TrainConfig()) == {}
    assert recovery_choices({"candidates": [{"settings": None}]}, TrainConfig()) == {}
