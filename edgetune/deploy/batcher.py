"""Micro-batching: concurrent requests share one ONNX Runtime run.

A request's texts wait in a queue; the batcher takes the first waiting request, then keeps
taking more until the batch holds `max_batch` texts or `max_wait_s` has passed since the
first, and runs them together on one worker thread (the event loop never blocks on the
model). A request that would overflow the batch waits for the next one, so a batch exceeds
`max_batch` only when one request alone is larger. Why: on CPU a batch of 8 short texts costs
far less than 8 runs of one, so under load the server holds more traffic at the same p99.

The queue is bounded (`max_queue` texts waiting): past it `submit` raises `QueueFull` at once,
so a burst costs a fast refusal instead of memory and a queue no deadline can be met from.
A request whose caller gave up (its future cancelled: the client left, or its deadline passed)
is dropped from its batch before the session runs, and `on_drop` says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


class QueueFull(Exception):
    """More texts are waiting than the queue holds: the caller should answer 503."""


@dataclass
class _Waiting:
    texts: list[str]
    future: asyncio.Future
    deadline: float | None  # loop time after which nobody waits for the answer


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[list[str]], list],
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
        max_queue: int | None = None,
        on_drop: Callable[[str], None] = lambda reason: None,
    ):
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.on_batch, self.max_queue, self.on_drop = on_batch, max_queue, on_drop
        self.queued_texts = 0  # submitted, not yet in a running batch
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._held: _Waiting | None = None  # overflowed the last batch: first in the next
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgetune-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """After the server stopped taking requests: cancel, and fail anything still waiting
        (only after a graceful-shutdown timeout) rather than leave it hanging."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        left = [self._held] if self._held else []
        while self._queue is not None and not self._queue.empty():
            left.append(self._queue.get_nowait())
        for waiting in left:
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], deadline: float | None = None) -> list:
        """The results for `texts`; `deadline` (loop time) lets the batcher skip them once
        nobody waits. An empty queue takes any request, so one larger than the bound runs."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if (
            self.max_queue is not None
            and self.queued_texts
            and self.queued_texts + len(texts) > self.max_queue
        ):
            raise QueueFull(
                f"{self.queued_texts} texts are waiting; the queue holds {self.max_queue}"
            )
        future = asyncio.get_running_loop().create_future()
        self.queued_texts += len(texts)
        self._queue.put_nowait(_Waiting(texts, future, deadline))
        return await future

    async def _next_batch(self) -> list[_Waiting]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], len(first.texts)
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            try:
                waiting = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    waiting = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(waiting.texts) > self.max_batch:
                self._held = waiting
                break
            batch.append(waiting)
            size += len(waiting.texts)
        return batch

    def _still_wanted(self, batch: list[_Waiting]) -> list[_Waiting]:
        """The requests someone still waits for; the others are dropped, and counted."""
        now = asyncio.get_running_loop().time()
        self.queued_texts -= sum(len(w.texts) for w in batch)
        kept = []
        for waiting in batch:
            expired = waiting.deadline is not None and now >= waiting.deadline
            if waiting.future.cancelled():
                self.on_drop("deadline" if expired else "client_left")
            elif expired:
                waiting.future.set_exception(TimeoutError("the request's deadline passed"))
                self.on_drop("deadline")
            else:
                kept.append(waiting)
        return kept

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._still_wanted(await self._next_batch())
            if not batch:
                continue
            texts = [t for w in batch for t in w.texts]
            self.on_batch(len(texts))
            try:
                results = list(await loop.run_in_executor(self._executor, self.run, texts))
                if len(results) != len(texts):
                    raise RuntimeError(f"{len(results)} results for {len(texts)} texts")
            except Exception as exc:  # noqa: BLE001 - the model failed: every request in the batch learns why
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue  # the loop goes on: later requests are served
            start = 0
            for w in batch:
                if not w.future.done():
                    w.future.set_result(results[start : start + len(w.texts)])
                start += len(w.texts)
