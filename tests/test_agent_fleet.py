"""Several agents for one profile: they share the search's probes, must be alike machines, and
one that dies mid-run is replaced by another (or the run stops in one line and `--resume`
continues); `--accuracy-on target` scores the agent's predictions as the host's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from test_agent import FAST, SHIPPED, TOKEN, call, run, start_agent

from edgetune.errors import InputError
from edgetune.measure.fleet import Fleet

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out

# probes only: a search budget under half a minute trains no student
PROBES_ONLY = [
    "--epochs",
    "2",
    "--lr",
    "3e-3",
    "--batch-size",
    "16",
    "--modes",
    "fp32",
    "--prune-search",
    "--prune-configs",
    "L1,F0.5,L1-F0.5",
    "--search-modes",
    "fp32",
    "--search-budget-minutes",
    "0.2",
]
ENV = {"EDGETUNE_AGENT_TOKEN": TOKEN}
needs_two_cores = pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2,
    reason="needs taskset and two cores",
)


class Agents:
    """Agent processes started by a test, each with its own store; all stopped at the end."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, {}

    def start(self, name: str, pin_core: bool = False) -> str:
        proc, url = start_agent(self.tmp / name, pin_core=pin_core)
        self.procs[url] = proc
        return url

    def signal(self, url: str, name: str) -> None:
        self.procs[url].send_signal(getattr(signal, name))
        if name == "SIGKILL":
            self.procs[url].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a frozen one too
                proc.terminate()
                proc.wait(timeout=30)


@pytest.fixture
def agents(tmp_path):
    started = Agents(tmp_path)
    yield started
    started.stop()


def kill_when_busy(
    agents: Agents, url: str, episode: int = 1, signal_name: str = "SIGKILL"
) -> threading.Thread:
    """Kill (or with SIGSTOP, freeze) the agent at `url` during its `episode`-th measurement
    (seen on /healthz)."""

    def watch() -> None:
        seen, was_busy = 0, False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                busy = call(url, "GET", "/healthz")[1]["busy"]
            except OSError:
                return
            if busy and not was_busy:
                seen += 1
                if seen == episode:
                    agents.signal(url, signal_name)
                    return
            was_busy = busy
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def kept_models(store: Path) -> set[str]:
    return {p.stem for p in (store / "models").glob("*.onnx")}


def probe_models(out: Path) -> set[str]:
    return {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (out / "work" / "search" / "probes").rglob("*.onnx")
    }


def tune(out: Path, model: Path, data: Path, profile: Path, *args: object):
    from conftest import tune_tiny

    return tune_tiny(out, model, data, profile, *PROBES_ONLY, *args)


def test_two_agents_share_the_search_probes(
    agents, tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile, monkeypatch
):
    monkeypatch.setenv("EDGETUNE_AGENT_TOKEN", TOKEN)
    a, b = agents.start("a"), agents.start("b")
    out = tmp_path / "run"
    result = tune(
        out,
        tiny_model_dir,
        tiny_data_csv,
        tiny_profile,
        "--target",
        a,
        "--target",
        b,
        "--accuracy-on",
        "target",
    )
    assert result.exit_code == 0, result.output
    assert "**Accuracy measured on:**" in (out / "report.md").read_text()
    probes = probe_models(out)
    assert len(probes) == 3
    for store in (tmp_path / "a", tmp_path / "b"):  # each agent measured some probe
        assert kept_models(store) & probes, store


@needs_two_cores
def test_agents_of_different_machines_are_refused_unless_allowed(agents):
    whole, one_core = agents.start("whole"), agents.start("one", pin_core=True)
    result = run("bench", SHIPPED, "--target", whole, "--target", one_core, *FAST, env=ENV)
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert whole in line and one_core in line and "cores" in line
    mixed = run(
        "bench",
        SHIPPED,
        "--target",
        whole,
        "--target",
        one_core,
        "--allow-mixed-targets",
        "--json",
        *FAST,
        env=ENV,
    )
    assert mixed.exit_code == 0, mixed.output
    report = json.loads(mixed.output)  # each machine's numbers apart
    cores = [
        r["results"][0]["latency"]["machine"]["cores"] for r in (report, *report["other_machines"])
    ]
    assert len(cores) == 2 and cores[1] == 1 and cores[0] > 1


def test_an_agent_killed_mid_measurement_is_replaced_by_another(agents, tmp_path):
    victim, survivor = agents.start("victim"), agents.start("survivor")
    profile = tmp_path / "fleet.toml"  # the agents named by the profile, not on the command line
    profile.write_text(
        f'name = "fleet"\nlatency_budget_ms = 100.0\ntargets = ["{victim}", "{survivor}"]\n'
    )
    watcher = kill_when_busy(agents, victim)
    slow = ["--rounds", "4", "--min-runs", "4", "--min-seconds", "2"]
    result = run("bench", SHIPPED, "--profile", profile, "--json", *slow, env=ENV)
    watcher.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert agents.procs[victim].poll() is not None  # it was killed during the run
    assert "redone on another agent" in result.output
    assert kept_models(tmp_path / "survivor")


def test_an_agent_that_stops_answering_is_given_up_after_a_bounded_wait(agents, monkeypatch):
    from edgetune.measure import remote

    monkeypatch.setattr(remote, "measure_timeout", lambda systems, settings: 30.0)
    monkeypatch.setenv("EDGETUNE_AGENT_TOKEN", TOKEN)
    frozen, survivor = agents.start("frozen"), agents.start("survivor")
    watcher = kill_when_busy(agents, frozen, signal_name="SIGSTOP")
    slow = ["--rounds", "4", "--min-runs", "4", "--min-seconds", "1"]
    started = time.monotonic()
    result = run("bench", SHIPPED, "--target", frozen, "--target", survivor, "--json", *slow)
    watcher.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert "timed out" in result.output and "redone on another agent" in result.output
    assert time.monotonic() - started < 120


class RefusingAgent:
    """Stands in for a `Target` whose agent answers with a refusal (a bad model, say)."""

    def __init__(self, url: str):
        self.url, self.calls = url, 0

    def fingerprint(self) -> dict:
        return {"cores": 1}

    def measure_interleaved(self, *args):
        self.calls += 1
        raise InputError(f"agent {self.url}: measuring m0: no such provider")


def test_a_refusal_is_not_retried_elsewhere_and_frees_the_agent():
    first, second = RefusingAgent("http://a"), RefusingAgent("http://b")
    fleet = Fleet([first, second])
    for _ in range(3):  # would wait forever if a refusal left its agent taken
        with pytest.raises(InputError, match="no such provider"):
            fleet.measure_interleaved([], None)
    assert first.calls + second.calls == 3 and fleet.size == 2


def test_the_last_agent_lost_stops_in_one_line_and_resume_reuses_the_cache(
    agents, tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile, monkeypatch
):
    monkeypatch.setenv("EDGETUNE_AGENT_TOKEN", TOKEN)
    victim = agents.start("victim")
    watcher = kill_when_busy(agents, victim, episode=2)  # the first probe finishes, not the 2nd
    out = tmp_path / "run"
    result = tune(out, tiny_model_dir, tiny_data_csv, tiny_profile, "--target", victim)
    watcher.join(timeout=30)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert victim in result.output and "--resume" in result.output
    cached = list((out / "work" / "search" / "cache").glob("*.json"))
    assert len(cached) == 1  # the finished probe

    live = agents.start("live")
    again = tune(out, tiny_model_dir, tiny_data_csv, tiny_profile, "--target", live, "--resume")
    assert again.exit_code == 0, again.output
    search = json.loads((out / "report.json").read_text())["run"]["search"]
    assert search["from_cache"] == 1 and len(search["probes"]) == 3


def test_accuracy_on_the_target_equals_the_hosts(agents, tuned_run, tiny_data_csv, tiny_profile):
    out, _ = tuned_run
    agent_url = agents.start("one")
    args = ["bench", out / "candidates" / "fp32", "--data", tiny_data_csv, "--json", *FAST]
    args += ["--profile", tiny_profile, "--target", agent_url]
    host = run(*args, env=ENV)
    target = run(*args, "--accuracy-on", "target", env=ENV)
    assert host.exit_code == 0 and target.exit_code == 0, host.output + target.output
    on_host = json.loads(host.output)["accuracy"]
    on_target = json.loads(target.output)["accuracy"]
    assert on_target["correct"] == on_host["correct"] and on_target["examples"] > 0
    assert on_target["accuracy"] == on_host["accuracy"]
    assert on_target["machine"]["id"] and on_host["machine"]["id"]


def test_accuracy_on_target_refused_where_it_does_not_apply_and_a_down_agent_left_out(agents):
    agent_url = agents.start("one")
    alone = run("bench", SHIPPED, "--accuracy-on", "target", *FAST)
    assert alone.exit_code == 2 and "needs an agent" in alone.output
    no_data = run(
        "bench", SHIPPED, "--accuracy-on", "target", "--target", agent_url, *FAST, env=ENV
    )
    assert no_data.exit_code == 2 and "labelled --data" in no_data.output
    dead_first = run(
        "bench", SHIPPED, "--target", "http://127.0.0.1:9", "--target", agent_url, *FAST, env=ENV
    )
    assert dead_first.exit_code == 0 and "left out" in dead_first.output  # the others measure


def test_targets_come_from_a_list_or_one_url_and_stay_out_of_the_profiles_dump(tmp_path):
    from edgetune.config import BenchConfig, TuneConfig
    from edgetune.profiles import load_profile

    assert TuneConfig(target="http://a:1").target == ["http://a:1"]  # a recipe before fleets
    assert BenchConfig(models=["m"], target=["http://a:1", "http://b:1"]).target[1] == "http://b:1"
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\nlatency_budget_ms = 5.0\ntargets = ["http://a:1"]\n')
    profile = load_profile(path)
    assert profile.targets == ["http://a:1"]
    assert "targets" not in profile.model_dump()  # never in cache keys, bundles or requests
