"""Mixed precision that meets the accuracy bound: a static INT8 candidate that lost too much gets
a variant with its most sensitive nodes kept in fp32.

A static INT8 candidate is repaired when it loses more than the bound (`--max-accuracy-drop`
points) against the fp32 ONNX model on the validation rows, or significantly by the paired
McNemar test. Its quantized nodes are ranked by the noise each adds (`compress/sensitivity.py`)
and kept in fp32 from the top. The first variant keeps half of the quantized nodes (past that
the model is nearly fp32): when even it breaks the bound the error is spread too widely, and one
build says so. Otherwise the fewest nodes holding half of the added noise are tried, then twice
as many, and the first within the bound (not significantly below fp32 either) joins the
candidates as `<mode>+keep-fp32-<k>`, with the kept nodes in its steps. Variants reuse their
mode's calibrated ranges (`PassContext.range_cache`): each costs a quantization and an accuracy
run, not a calibration. Every repaired candidate
gets a note: how much it lost, its top sensitive nodes, and what the remedy gave.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgetune.compress.sensitivity import NodeNoise
from edgetune.search.record import Candidate
from edgetune.search.select import ALPHA, paired_test

SHOWN = 3  # sensitive nodes named in a note


@dataclass
class Loss:
    points: float  # accuracy points below fp32
    p_value: float | None

    def breaks(self, bound: float) -> bool:
        significant = self.p_value is not None and self.p_value < ALPHA and self.points > 0
        return self.points > bound or significant

    def text(self) -> str:
        p = f" (McNemar p={self.p_value:.2g})" if self.p_value is not None else ""
        return f"{self.points:.2f} points{p}"


def loss_against(reference: Candidate, c: Candidate) -> Loss:
    points = round(
        100 * (reference.accuracy.accuracy - c.accuracy.accuracy), 6
    )  # 1.0, not 1.0000000000000009
    test = paired_test(reference, c)
    return Loss(points, test.p_value if test else None)


def keep_counts(ranked: list[NodeNoise]) -> list[int]:
    """How many top nodes each variant keeps in fp32, in the order they are tried: first the cap
    (half of the quantized nodes; if even that breaks the bound, nothing smaller will do, and
    one build says so), then from the fewest holding half of the added noise, doubling, below
    the cap."""
    cap = max(1, len(ranked) // 2)
    total = sum(max(0.0, n.added_noise) for n in ranked)
    first, held = 1, 0.0
    for i, node in enumerate(ranked, 1):
        held += max(0.0, node.added_noise)
        if total > 0 and held >= total / 2:
            first = i
            break
    counts, k = [cap], first
    while k < cap:
        counts.append(k)
        k *= 2
    return counts


def repair(
    c: Candidate,
    reference: Candidate,
    bound: float,
    ranked: list[NodeNoise],
    build: Callable[[list[str], int], Candidate],
) -> Candidate | None:
    """The variant of `c` within the bound that keeps the fewest nodes tried (None if even the
    cap breaks it); notes on `c` either way. `build(nodes, k)` makes the variant that keeps
    `nodes` (the top `k`) in fp32."""
    lost = loss_against(reference, c)
    top = ", ".join(f"{n.node} (+{n.added_noise:.2g})" for n in ranked[:SHOWN])
    heading = f"lost {lost.text()} against fp32 (bound {bound:g}); most sensitive nodes: {top}"
    cap, *smaller = keep_counts(ranked)
    widest = build([n.node for n in ranked[:cap]], cap)
    tried = [f"{widest.name}: {loss_against(reference, widest).text()}"]
    if loss_against(reference, widest).breaks(bound):
        c.notes.append(f"{heading}; remedy tried: {tried[0]}: not within the bound, so no fewer")
        return None
    for k in smaller:
        variant = build([n.node for n in ranked[:k]], k)
        kept = loss_against(reference, variant)
        tried.append(f"{variant.name}: {kept.text()}")
        if not kept.breaks(bound):
            c.notes.append(
                f"{heading}; remedy: {'; '.join(tried)}: {variant.name} within the bound"
            )
            return variant
    c.notes.append(f"{heading}; remedy: {'; '.join(tried)}: {widest.name} within the bound")
    return widest
