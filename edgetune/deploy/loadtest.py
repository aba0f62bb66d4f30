"""Drive a prediction server with real HTTP traffic and find its capacity at a latency budget.

The plan, bounded in time and in requests: a warm-up; one closed-loop client (single-stream
latency); N closed-loop clients (the throughput the server saturates at); then open-loop
steps of Poisson arrivals at rising rates (fractions of that throughput unless the rates are
given). Open-loop latency counts from each request's *scheduled* send time, so a server that
falls behind is charged for the queue it builds (no coordinated omission). A step is within
budget when its p99 is at most the budget and no request failed (a server that falls behind
builds a queue, which latency from scheduled times shows). Capacity at budget is the highest
rate within budget with every lower rate tried within budget too; after the planned rates, two
bisection steps narrow the edge. aiohttp is the client: one connection pool, one event loop.
Every step, the warm-up included, ends by `max_seconds`. Traffic goes to the URL given and
nowhere else: no redirect is followed (one is an error naming it) and no proxy variable is read.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable

from edgetune.deploy.load_steps import LoadTestResult, Step, capacity, edge, make_step
from edgetune.errors import InputError

OPEN_FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0, 1.2)
REQUEST_TIMEOUT_S = 10.0
REFINE_STEPS = 2  # after the planned rates, bisect between the best rate within and the next over


class Redirected(InputError):
    """The server answered with a redirect: following it could send the load elsewhere."""


def request_body(item: str | list[str] | bytes) -> bytes:
    """What one request sends: a text (or a pair) as a JSON list of one; an audio file (bytes)
    as the body itself, which an audio bundle's server reads as one clip."""
    return item if isinstance(item, bytes) else json.dumps([item]).encode()


async def _post(session, url: str, item: str | list[str] | bytes) -> bool:
    import aiohttp

    body = request_body(item)
    kind = "application/octet-stream" if isinstance(item, bytes) else "application/json"
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": kind}, allow_redirects=False
        ) as response:
            await response.read()
            status, location = response.status, response.headers.get("location")
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False
    if 300 <= status < 400:
        raise Redirected(
            f"{url} answered {status} redirecting to {location or '(no Location)'}: "
            "loadtest follows no redirects; give the server's own loopback URL"
        )
    return status == 200


async def closed_loop(
    session,
    url: str,
    texts: list[str],
    concurrency: int,
    seconds: float,
    max_requests: int,
    kind: str = "closed",
) -> Step:
    """`concurrency` clients, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    errors = 0
    budget = [max_requests]
    start = time.perf_counter()
    stop_at = start + seconds

    async def client(offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            sent = time.perf_counter()
            ok = await _post(session, url, texts[i % len(texts)])
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1
            i += concurrency

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    return make_step(kind, time.perf_counter() - start, latencies, errors, concurrency=concurrency)


async def open_loop(
    session,
    url: str,
    texts: list[str],
    rate: float,
    seconds: float,
    max_requests: int,
    seed: int = 0,
) -> Step:
    """Poisson arrivals at `rate` per second, whatever the server's answers are doing."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    start = loop.time()

    async def one(scheduled: float, text: str) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        ok = await _post(session, url, text)
        if ok:
            latencies.append(loop.time() - scheduled)
        else:
            errors += 1

    tasks, at = [], start
    for i in range(max_requests):
        at += rng.expovariate(rate)
        if at - start > seconds:
            break
        tasks.append(asyncio.ensure_future(one(at, texts[i % len(texts)])))
    await asyncio.gather(*tasks)
    # served per second of the arrival window: the same denominator as the offered rate
    return make_step("open", seconds, latencies, errors, offered_rps=round(rate, 2))


async def _run(
    url: str,
    texts: list[str],
    budget_ms: float,
    concurrency: int,
    step_seconds: float,
    rates: list[float],
    max_seconds: float,
    max_requests: int,
    log: Callable[[str], None],
) -> LoadTestResult:
    try:
        import aiohttp
    except ImportError:
        raise InputError(
            "loadtest needs the 'serve' extra (aiohttp is missing): pip install 'edgetune[serve]'"
        ) from None

    started = time.perf_counter()
    left = [max_requests]

    def spend(step: Step) -> Step:
        left[0] = max(0, left[0] - step.sent)
        return step

    def seconds_left(planned: float) -> float:
        return max(0.0, min(planned, max_seconds - (time.perf_counter() - started)))

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        warm = spend(
            await closed_loop(
                session, url, texts, 1, seconds_left(min(2.0, step_seconds)), left[0], "warm-up"
            )
        )
        single = spend(
            await closed_loop(session, url, texts, 1, seconds_left(step_seconds), left[0])
        )
        log(f"single stream: {single.throughput_rps:.0f} req/s, p99 {single.p99_ms} ms")
        saturated = spend(
            await closed_loop(session, url, texts, concurrency, seconds_left(step_seconds), left[0])
        )
        log(
            f"{concurrency} clients: {saturated.throughput_rps:.0f} req/s, p99 "
            f"{saturated.p99_ms} ms"
        )
        plan = rates or [round(f * saturated.throughput_rps, 1) for f in OPEN_FRACTIONS]
        steps, misses, stopped = [warm, single, saturated], 0, "every planned rate was run"
        if seconds_left(step_seconds) == 0:
            stopped = f"time bound ({max_seconds:g} s) reached"

        async def try_rate(rate: float) -> Step | None:
            nonlocal stopped
            if time.perf_counter() - started + step_seconds > max_seconds:
                stopped = f"time bound ({max_seconds:g} s) reached"
                return None
            if left[0] < rate * step_seconds:  # a cut-short step would be judged on a burst
                stopped = "request bound reached"
                return None
            step = spend(
                await open_loop(session, url, texts, rate, step_seconds, left[0], len(steps))
            )
            step.within_budget = (
                step.errors == 0 and step.p99_ms is not None and step.p99_ms <= budget_ms
            )
            steps.append(step)
            log(
                f"open loop {rate:.1f} req/s: served {step.throughput_rps:.1f}, p99 "
                f"{step.p99_ms} ms, "
                f"{step.errors} errors -> {'within' if step.within_budget else 'over'} budget"
            )
            return step

        for rate in (r for r in plan if r > 0):
            if (step := await try_rate(rate)) is None:
                break
            misses = 0 if step.within_budget else misses + 1
            if misses == 2:
                stopped = "two rates in a row were over budget"
                break
        for _ in range(0 if rates else REFINE_STEPS):  # halve the gap at the capacity's edge
            low, high = edge(steps)
            if (
                low is None
                or high is None
                or (step := await try_rate(round((low + high) / 2, 1))) is None
            ):
                break
    found = capacity(steps)
    result = LoadTestResult(url, budget_ms, steps, found, single, saturated, stopped)
    above = sorted(
        s.offered_rps
        for s in steps
        if s.kind == "open" and s.within_budget and (found is None or s.offered_rps > found)
    )
    if above:
        result.notes.append(
            f"rates above a rate over budget were within it too ({above} req/s): "
            "noise near the edge, so the capacity is the conservative one; "
            "longer --step-seconds narrow it"
        )
    return result


def run_load_test(
    url: str,
    texts: list[str],
    budget_ms: float,
    concurrency: int = 8,
    step_seconds: float = 5.0,
    rates: list[float] | None = None,
    max_seconds: float = 180.0,
    max_requests: int = 200_000,
    log: Callable[[str], None] = lambda line: None,
) -> LoadTestResult:
    return asyncio.run(
        _run(
            url,
            texts,
            budget_ms,
            concurrency,
            step_seconds,
            list(rates or []),
            max_seconds,
            max_requests,
            log,
        )
    )
