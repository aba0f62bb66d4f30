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

The students' order is a policy of the executor too (`schedule`): here they are trained one
after another, each planned just before it starts, so what the earlier ones showed (a bound
broken, minutes left unused) shapes it; on Ray they are all planned up front and trained side
by side, where no result can change a later plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Literal

from edgetune.errors import InputError

Work = Literal["measure", "train"]
MAX_RETRIES = 3


@dataclass
class Known:
    """A plan's answer for an item that needs no run: its result is already known (cached),
    or None (skipped)."""

    result: object = None


# plan(index, item, in_turn) -> a task for `run`, a Known, or None: stop (no later item runs).
# in_turn: the items before it have finished, and their results were seen by the caller.
Plan = Callable[[int, object, bool], object]
Scheduled = Iterator[tuple[object, object, bool]]  # item, result, whether it was run now


class LocalExecutor:
    """In this process: the default, and what needs no cluster. With several agents
    (`measurers` > 1), that many probes at once, each measured by a free agent (their builds
    take turns: `measure.bench.HOST_WORK`); otherwise one after another."""

    name = "local"
    policy = "students trained one after another, each planned when the last is done"

    def __init__(self, measurers: int = 1):
        self.measurers = measurers

    def shippable(self, model: object, path: str) -> object:
        """What a task gets for a loaded model: here, the object itself."""
        return model

    def schedule(self, items: list, plan: Plan, run: Callable) -> Scheduled:
        """One after another, each planned when the ones before it are done (lazily: the
        caller sees each result before the next item is planned)."""
        for index, item in enumerate(items):
            task = plan(index, item, True)
            if task is None:
                return
            if isinstance(task, Known):
                yield item, task.result, False
            else:
                yield item, run(task), True

    def map(self, fn: Callable, items: list, work: Work) -> Iterator[tuple[object, object]]:
        if work != "measure" or self.measurers < 2 or len(items) < 2:
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
    policy = "students planned up front and trained side by side as parallel tasks"

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

    def shippable(self, model: object, path: str) -> object:
        """What a task gets for a loaded model: its path (each worker loads it)."""
        return path

    def schedule(self, items: list, plan: Plan, run: Callable) -> Scheduled:
        """All planned up front, the ones to run trained side by side as `train` tasks; the
        results come back in the items' order."""
        planned = []
        for index, item in enumerate(items):
            task = plan(index, item, False)
            if task is None:
                break
            planned.append((item, task))
        tasks = [task for _, task in planned if not isinstance(task, Known)]
        results = (result for _, result in self.map(run, tasks, "train"))
        for item, task in planned:
            if isinstance(task, Known):
                yield item, task.result, False
            else:
                yield item, next(results), True

    def options(self, work: Work) -> dict:
        if work == "measure":
            return {"num_cpus": 1, "resources": {self.resource: 1}, "max_retries": MAX_RETRIES}
        return {"num_cpus": 1, "num_gpus": 1 if self.gpus else 0, "max_retries": MAX_RETRIES}

    def map(self, fn: Callable, items: list, work: Work) -> Iterator[tuple[object, object]]:
        if not items:
            return
        task = self.ray.remote(**self.options(work))(_call)
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
