"""The shape of the package, checked: imports point down the layers, thin commands, one registry."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgetune"
# The layers, lowest first (docs/ARCHITECTURE.md): a module may import its own layer and those
# below it, never one above. Top-level modules not named here are the base (errors, fsutil, ...).
LAYERS = [
    "base",
    "data",
    "measure",
    "train",
    "exporter",
    "compress",
    "search",
    "deploy",
    "modality",
    "jobs",
    "cli",
]
TOP_LEVEL_LAYER = {
    "edgetune.config": "jobs",
    "edgetune": "cli",
    "edgetune.__main__": "cli",
    "edgetune.cli": "cli",
}
# What a command module may import from edgetune: the API, its configs, and printing helpers.
CLI_MAY_IMPORT = {
    "edgetune",
    "edgetune._version",
    "edgetune.config",
    "edgetune.errors",
    "edgetune.profiles",
    "edgetune.defaults",
    "edgetune.deploy.report",
    "edgetune.compress.modes",
    "edgetune.compress.passes",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """edgetune modules imported anywhere in the file (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgetune")}
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgetune")
        ):
            for alias in node.names:  # `from edgetune import api` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name in MODULES}


GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_catches_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert len(GRAPH) > 30 and GRAPH["edgetune.jobs.tune"]  # the real graph was read


def layer_of(module: str) -> str:
    """The layer a module belongs to: its sub-package, or the base for top-level modules."""
    if module in TOP_LEVEL_LAYER:
        return TOP_LEVEL_LAYER[module]
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else "base"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, as `importer -> imported`."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return [
        f"{name} -> {dep}"
        for name, deps in sorted(graph.items())
        for dep in sorted(deps)
        if rank[layer_of(dep)] > rank[layer_of(name)]
    ]


def test_imports_only_point_down_the_layers():
    assert upward_imports(GRAPH) == []


def test_the_layer_check_catches_an_upward_import():
    graph = {
        "edgetune.train.loop": {"edgetune.search.select", "edgetune.data.text"},
        "edgetune.errors": {"edgetune.config"},
        "edgetune.jobs.tune": {"edgetune.train.loop"},
    }
    assert upward_imports(graph) == [
        "edgetune.errors -> edgetune.config",
        "edgetune.train.loop -> edgetune.search.select",
    ]


def test_nothing_imports_the_package_root_but_the_command_line():
    """The root re-exports the API; a library module importing it would close a loop."""
    importers = {name for name, deps in GRAPH.items() if "edgetune" in deps}
    assert all(name.startswith("edgetune.cli") for name in importers), importers


def test_command_modules_only_parse_call_the_api_and_print():
    for name, deps in GRAPH.items():
        if name.startswith("edgetune.cli"):
            extra = {d for d in deps if not d.startswith("edgetune.cli")} - CLI_MAY_IMPORT
            assert not extra, f"{name} reaches into {extra}"


def test_measure_and_onnx_passes_do_not_import_torch():
    """Benching and ONNX quantization run where torch is not installed (and start fast)."""
    for name in (
        "edgetune.measure.latency",
        "edgetune.measure.bench",
        "edgetune.compress.onnx_passes",
        "edgetune.compress.modes",
    ):
        text = MODULES[name].read_text()
        assert "import torch" not in text and "from torch" not in text, name


def test_every_registered_pass_declares_itself():
    from edgetune.compress.passes import PASSES, PassConfig, get_pass

    for name in PASSES:
        p = get_pass(name)
        assert p.name == name and issubclass(p.Config, PassConfig) and p.description
        assert p.stage in ("torch", "onnx") and p.devices <= {"cpu", "cuda"}


def test_the_public_api_is_exported_from_the_package():
    import edgetune

    assert set(edgetune.__all__) == {"__version__", *edgetune._EXPORTS}
    for name in ("tune", "export", "quantize", "prune", "bench", "load_bundle"):
        assert callable(getattr(edgetune, name)), name


@pytest.mark.skipif(
    shutil.which("ruff", path=str(Path(sys.executable).parent)) is None
    and shutil.which("ruff") is None,
    reason="ruff is in the dev extra",
)
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_the_code_is_linted_and_formatted(command):
    """`make lint` in the suite: ruff's rules with E501 (100 characters) and its format."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    root = PACKAGE.parent
    done = subprocess.run(
        [ruff, *command, "edgetune", "tests", "benchmarks"],
        cwd=root,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


KIND_BRANCH = re.compile(
    r"kind ==|isinstance\([^)]*Image|manifest\.task ==|is_image_model|\.kind\b"
)


def test_no_job_or_search_module_picks_a_behaviour_by_input_kind():
    """What text or images need is the modality's to say (`edgetune/modality/`): a job or the
    search that asks "is this an image?" again is where the copies used to disagree."""
    for branch in ('if inputs.kind == "image":', "isinstance(dataset, ImageDataset)"):
        assert KIND_BRANCH.search(branch), branch  # the check would catch one
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for name, path in MODULES.items()
        if name.startswith(("edgetune.jobs", "edgetune.search"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if KIND_BRANCH.search(line) and "executor" not in name
    ]
    assert not found, "\n".join(found)
