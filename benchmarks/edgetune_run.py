"""`edgetune` commands run in this process by the benchmark scripts, each timed in one line."""

from __future__ import annotations

import time

NO_CANDIDATE_MET = 3  # `tune`'s exit code when nothing met the budget (the report is written)


def run(*args: object, accept: tuple[int, ...] = (0,)) -> str:
    """`edgetune ARGS`: its output; a `# edgetune CMD: exit N, S s` line; past `accept`, the
    output's tail and that exit code."""
    from click.testing import CliRunner

    from edgetune.cli import cli

    start = time.perf_counter()
    result = CliRunner().invoke(cli, [str(a) for a in args])
    print(f"# edgetune {args[0]}: exit {result.exit_code}, {time.perf_counter() - start:.0f} s")
    if result.exit_code not in accept:
        print(result.output[-3000:])
        raise SystemExit(result.exit_code)
    return result.output
