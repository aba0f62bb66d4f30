"""Overload of `edgetune serve`: far more clients than it can serve, plus slow and idle sockets.

Starts `edgetune serve BUNDLE` on 127.0.0.1 (its default limits unless `--server-arg` says
otherwise), then for `--burst-seconds` runs, all from this one process:
  - `--clients` closed-loop clients, each posting one text again as soon as it is answered
    (a 503 is retried at once: the worst case, not a polite client);
  - `--slow` slowloris sockets sending request headers a byte every 0.5 s (reconnecting when
    the server closes them);
  - `--idle` sockets that connect and send nothing (reconnecting when closed).
It prints the concurrency, the share of 503s, p50/p99 of the requests served, the server's RSS
before/during/after, the time from the burst's end to the first 200, and the server's counters.
Linux only (RSS from /proc). The load generator shares the machine's cores with the server.

    python benchmarks/overload.py BUNDLE [--clients 1000] [--slow 200] [--idle 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np

from edgetune.jobs.loadtest import local_server

TEXT = "a gripping, beautifully shot film with a weak ending"
HEAD = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def post_once(url: str, timeout: float = 5) -> int | None:
    """One request with no proxy and no redirect; its status (None: no answer)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=json.dumps([TEXT]).encode(), method="POST")
    try:
        with opener.open(request, timeout=timeout) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


async def busy_client(session, url: str, answers: list) -> None:
    loop = asyncio.get_running_loop()
    while True:
        sent = loop.time()
        try:
            async with session.post(url, json=[TEXT], allow_redirects=False) as reply:
                await reply.read()
                answers.append((reply.status, loop.time() - sent))
        except (aiohttp.ClientError, OSError, TimeoutError):
            answers.append((None, loop.time() - sent))
            await asyncio.sleep(0.05)  # a refused connect would otherwise spin


async def slow_socket(host: str, port: int, closed: list) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            for byte in HEAD:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
        except OSError:
            closed.append(1)
            await asyncio.sleep(0.05)


async def idle_socket(host: str, port: int, closed: list) -> None:
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            await reader.read()  # b"" once the server closes it
            writer.close()
        except OSError:
            pass
        closed.append(1)
        await asyncio.sleep(0.05)


async def sample_rss(pid: int, samples: list) -> None:
    while True:
        samples.append(rss_mib(pid))
        await asyncio.sleep(0.25)


async def burst(url: str, pid: int, args) -> dict:
    host, port = url.split("//")[1].split(":")
    answers: list = []
    slow_closed: list = []
    idle_closed: list = []
    rss: list = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as s:
        tasks = [asyncio.create_task(sample_rss(pid, rss))]
        tasks += [
            asyncio.create_task(idle_socket(host, int(port), idle_closed)) for _ in range(args.idle)
        ]
        tasks += [
            asyncio.create_task(slow_socket(host, int(port), slow_closed)) for _ in range(args.slow)
        ]
        tasks += [
            asyncio.create_task(busy_client(s, url + "/v1/predict", answers))
            for _ in range(args.clients)
        ]
        await asyncio.sleep(args.burst_seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "answers": answers,
        "rss": rss,
        "slow_closed": len(slow_closed),
        "idle_closed": len(idle_closed),
    }


def recovery_s(url: str, limit_s: float = 60) -> float | None:
    """Seconds from now to the first 200 (None: none within `limit_s`)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        if post_once(url + "/v1/predict") == 200:
            return time.perf_counter() - start
        time.sleep(0.01)
    return None


def counters(url: str) -> dict[str, float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    text = opener.open(url + "/metrics", timeout=10).read().decode()
    wanted = (
        "edgetune_rejected_total",
        "edgetune_timeouts_total",
        "edgetune_cancelled_total",
        "edgetune_requests_total",
    )
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(wanted)
    }


def summary(run: dict, args, before: float, after: float, recovered: float | None) -> dict:
    statuses = [status for status, _ in run["answers"]]
    served = np.array([seconds for status, seconds in run["answers"] if status == 200]) * 1000
    sent = len(statuses)
    return {
        "concurrency": args.clients + args.slow + args.idle,
        "busy_clients": args.clients,
        "slow_sockets": args.slow,
        "idle_sockets": args.idle,
        "burst_seconds": args.burst_seconds,
        "requests": sent,
        "status_counts": {str(k): statuses.count(k) for k in sorted(set(statuses), key=str)},
        "rate_503": statuses.count(503) / sent if sent else None,
        "served_per_s": len(served) / args.burst_seconds,
        "served_p50_ms": float(np.percentile(served, 50)) if len(served) else None,
        "served_p99_ms": float(np.percentile(served, 99)) if len(served) else None,
        "rss_mib": {"before": before, "during_max": max(run["rss"], default=None), "after": after},
        "recovery_s": recovered,
        "slow_sockets_closed": run["slow_closed"],
        "idle_sockets_closed": run["idle_closed"],
    }


def report(result: dict) -> str:
    rss = result["rss_mib"]
    recovery = result["recovery_s"]
    cores = f"{result['cores']} cores shared with the load generator"
    sockets = (
        f"{result['busy_clients']} busy clients + {result['slow_sockets']} slow + "
        f"{result['idle_sockets']} idle sockets"
    )
    served = (
        f"{result['served_per_s']:.1f}/s, p50 {result['served_p50_ms'] or 0:.1f} ms, "
        f"p99 {result['served_p99_ms'] or 0:.1f} ms"
    )
    memory = (
        f"before {rss['before']:.0f} MiB, during (max) {rss['during_max']:.0f} MiB, "
        f"after {rss['after']:.0f} MiB"
    )
    closed = f"slow {result['slow_sockets_closed']}, idle {result['idle_sockets_closed']}"
    counted = ", ".join(f"{k} {v:g}" for k, v in result["counters"].items())
    lines = [
        f"overload, {result['date']}, {result['cpu']} ({cores})",
        f"concurrency: {sockets} = {result['concurrency']}, {result['burst_seconds']:g} s",
        f"requests: {result['requests']}, by status {result['status_counts']}",
        f"503 rate: {100 * (result['rate_503'] or 0):.1f} %",
        f"served: {served}",
        f"server RSS: {memory}",
        "recovery: first 200 "
        + (f"{1000 * recovery:.0f} ms after the burst" if recovery is not None else "never"),
        f"sockets closed by the server: {closed}",
        f"server counters: {counted}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--burst-seconds", type=float, default=20.0)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra `serve` flag (repeatable), e.g. --server-arg=--max-queue=64",
    )
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the server inherits it
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    processes: list = []
    with local_server(args.bundle, args.server_arg, on_process=processes.append) as url:
        pid = processes[0].pid
        for _ in range(20):  # warm: the first runs are slower
            post_once(url + "/v1/predict")
        before = rss_mib(pid)
        run = asyncio.run(burst(url, pid, args))
        recovered = recovery_s(url)
        time.sleep(2)
        after = rss_mib(pid)
        result = summary(run, args, before, after, recovered)
        result["counters"] = counters(url)
    result.update(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=cpu_name(),
        cores=len(os.sched_getaffinity(0)),
        file_limit=hard,
    )
    print(report(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
