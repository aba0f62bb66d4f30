"""Where the search's independent pieces run: here, one after another, or as Ray tasks.

The search (search/pruning.py) decides *what* to run and keeps the cache; an executor only
runs a function over items and hands back each item's result, in order. Two kinds of work:
- `measure`: latency probes. On Ray they ask for one unit of the custom resource
  `profile:<name>`, which only nodes of the profile's hardware declare, one unit per node, so
  measurements land on the right machines and never two at once on a node.
- `train`: a pruned student's recovery (and its export/quantize/accuracy). On Ray: one CPU,
  or one GPU when the cluster has GPUs.
Ray retries a task whose worker died (`max_retries`); a task's own exception is not retried
(it would fail the same way) and reaches the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Literal

from edgetune.errors import InputError

Kind = Literal["measure", "train"]
MAX_RETRIES = 3


class LocalExecutor:
    """In this process: the default, and what needs no cluster. With several agents
    (`measurers` > 1), that many probes at once, each measured by a free agent (their builds
    take turns: `measure.bench.HOST_WORK`); otherwise one after another."""

    name = "local"
    remote = False

    def __init__(self, measurers: int = 1):
        self.measurers = measurers

    def map(self, fn: Callable, items: list, kind: Kind) -> Iterator[tuple[object, object]]:
        if kind != "measure" or self.measurers < 2 or len(items) < 2:
            for item in items:
                yield item, fn(item)
            return
        with ThreadPoolExecutor(min(self.measurers, len(items))) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            failed = None
            for future in as_completed(futures):  # as each is done: the caller caches it
                if future.exception() is not None:  # the others still finish (and are cached)
                    failed = failed or future.exception()
                    continue
                yield futures[future], future.result()
            if failed is not None:
                raise failed


class RayExecutor:
    """Each item a Ray task on the cluster at `address` (None: a local Ray instance)."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None, profile_name: str):
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'edgetune[ray]'") from None
        self.ray = ray
        self.resource = f"profile:{profile_name}"
        if not ray.is_initialized():
            # a new local instance is this machine: it measures for the profile it is run for
            local = {"resources": {self.resource: 1}} if address is None else {}
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False, **local)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot reach a Ray cluster at '{address}': {exc}") from None
        resources = ray.cluster_resources()
        if resources.get(self.resource, 0) < 1:
            raise InputError(
                f"no Ray node declares the resource '{self.resource}', so latency cannot be "
                f"measured on the profile's hardware; start such nodes with "
                f"ray start ... --resources='{{\"{self.resource}\": 1}}'"
            )
        self.gpus = resources.get("GPU", 0) >= 1

    def options(self, kind: Kind) -> dict:
        if kind == "measure":
            return {"num_cpus": 1, "resources": {self.resource: 1}, "max_retries": MAX_RETRIES}
        return {"num_cpus": 1, "num_gpus": 1 if self.gpus else 0, "max_retries": MAX_RETRIES}

    def map(self, fn: Callable, items: list, kind: Kind) -> Iterator[tuple[object, object]]:
        if not items:
            return
        task = self.ray.remote(**self.options(kind))(_call)
        refs = [task.remote(fn, item) for item in items]
        for item, ref in zip(items, refs):  # in order, each as it is done: the caller caches it
            yield item, self.ray.get(ref)


def _call(fn: Callable, item: object) -> object:
    """The one remote function: `fn` (a partial of module-level functions) travels pickled."""
    return fn(item)


def make_executor(
    name: str, address: str | None, profile_name: str, measurers: int = 1
) -> LocalExecutor | RayExecutor:
    """`measurers`: the agents measuring for the profile (the local executor's probes at once)."""
    if name == "ray":
        return RayExecutor(None if address in (None, "local") else address, profile_name)
    return LocalExecutor(measurers)
