"""Named modes: presets of ONNX pass chains, and the one function that builds them.

`dynamic-int8` is `ort-fusion` then `dynamic-int8(per_channel=True)`; `static-int8-percentile`
is `static-int8(method=percentile)`. The names are what users type (`--modes`, `--mode`,
`export --quantize`); the steps are what is built, cached and recorded. A chain's prefix is
built once per call, so five modes that start from the fused model fuse it once.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.compress.passes import PassContext, Step, get_pass
from edgetune.errors import InputError
from edgetune.onnxfile import check_onnx


@dataclass(frozen=True)
class Mode:
    """A named chain of ONNX passes; `default_on` lists the devices whose default menu has it."""

    name: str
    steps: tuple[Step, ...]
    description: str
    default_on: frozenset[str] = frozenset()

    @property
    def precision(self) -> str:
        return get_pass(self.steps[-1].pass_name).precision if self.steps else "fp32"

    @property
    def needs_calibration(self) -> bool:
        return any(get_pass(s.pass_name).needs_calibration for s in self.steps)

    @property
    def batch_dependent(self) -> bool:
        return any(get_pass(s.pass_name).batch_dependent for s in self.steps)

    def suits(self, device: str) -> bool:
        return all(device in get_pass(s.pass_name).devices for s in self.steps)

    def to_json(self) -> dict:
        return {"name": self.name, "steps": [s.to_json() for s in self.steps]}


def _mode(name: str, description: str, default_on: str, *steps: tuple[str, dict]) -> Mode:
    return Mode(
        name,
        tuple(Step.of(p, **cfg) for p, cfg in steps),
        description,
        frozenset(default_on.split()),
    )


FUSE = ("ort-fusion", {})
MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        _mode("fp32", "the exported model as is", "cpu cuda"),
        _mode(
            "optimized-fp32",
            "ORT transformer fusions (attention, LayerNorm, GELU)",
            "cpu cuda",
            FUSE,
        ),
        _mode(
            "dynamic-int8",
            "fused + dynamic INT8, per-channel weights",
            "cpu cuda",
            FUSE,
            ("dynamic-int8", {"per_channel": True}),
        ),
        _mode(
            "dynamic-int8-per-tensor",
            "fused + dynamic INT8, per-tensor weights",
            "cpu",
            FUSE,
            ("dynamic-int8", {"per_channel": False}),
        ),
        _mode(
            "static-int8-minmax",
            "static INT8 (QDQ), MinMax calibration",
            "cpu",
            ("static-int8", {"method": "minmax"}),
        ),
        _mode(  # by name: the scheme QAT trains for (compress/qat_recover.py), post-training
            "static-int8-minmax-linear",
            "static INT8 (QDQ), MinMax, weighted MatMul/Gemm only: attention products in fp32",
            "",
            ("static-int8", {"method": "minmax", "activation_products": False}),
        ),
        _mode(
            "static-int8-entropy",
            "static INT8 (QDQ), Entropy calibration",
            "",
            ("static-int8", {"method": "entropy"}),
        ),
        _mode(  # not in the default menu: it lost 0.9-4.9 points in every BBC News demo run
            # here (MinMax 0-0.45) and 2.52 on SST-2 (benchmarks/RESULTS.md); by name it runs
            "static-int8-percentile",
            "static INT8 (QDQ), 99.99th percentile calibration",
            "",
            ("static-int8", {"method": "percentile"}),
        ),
        _mode(
            "fp16",
            "fused + FP16 weights and compute, fp32 IO (for GPUs)",
            "cuda",
            FUSE,
            ("fp16", {}),
        ),
        _mode(
            "int4", "INT4 weight-only MatMulNBits (block 32)", "cpu", ("int4", {"block_size": 32})
        ),
    )
}


def unfused(mode: Mode, model_type: str) -> Mode:
    """`mode` without its graph-fusion step, for a family ONNX Runtime has no fusion recipe for
    (the rest of the chain, e.g. dynamic INT8, applies to any graph)."""
    steps = tuple(s for s in mode.steps if s.pass_name != "ort-fusion")
    return Mode(
        mode.name,
        steps,
        f"{mode.description} (unfused: no ORT fusion recipe for {model_type})",
        mode.default_on,
    )


def resolve_modes(names: list[str] | None) -> list[Mode] | None:
    """Mode names (as typed by a user) -> presets; `none` is the export's word for fp32."""
    if names is None:
        return None
    unknown = [n for n in names if n not in MODES and n != "none"]
    if unknown:
        raise InputError(f"unknown mode(s) {', '.join(unknown)}: use {', '.join(MODES)}")
    return [MODES["fp32" if n == "none" else n] for n in names]


def default_modes(device: str, precisions: list[str]) -> list[Mode]:
    """The menu `tune` tries: the presets meant for the device, in the profile's precisions."""
    return [m for m in MODES.values() if device in m.default_on and m.precision in precisions]


def build_variants(
    fp32: str | Path,
    out_dir: str | Path,
    modes: list[Mode],
    ctx: PassContext,
    skip_inapplicable: bool = False,
) -> dict[str, tuple[Path, dict]]:
    """Build each mode from `fp32` into `out_dir/<name>.onnx`; returns paths and settings.

    Settings are the steps run (pass + config) and what each chose, keyed by the mode's name.
    A mode whose quantizer finds nothing to quantize in this graph is refused, or with
    `skip_inapplicable` (a default menu, not modes asked for by name) left out and logged.
    """
    from edgetune.compress.onnx_passes import NothingToQuantize
    from edgetune.console import console

    check_onnx(fp32, validate=True)
    fp32, out_dir = Path(fp32).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    prefixes: dict[tuple[Step, ...], tuple[Path, list[dict]]] = {(): (fp32, [])}
    built: dict[str, tuple[Path, dict]] = {}
    for mode in modes:
        try:
            _build_prefixes(mode, prefixes, out_dir, ctx)
        except NothingToQuantize as exc:
            if not skip_inapplicable:
                raise
            console.log(f"modes: {mode.name} left out ({exc})")
            continue
        path, record = prefixes[mode.steps]
        final = out_dir / f"{mode.name}.onnx"
        shutil.copy2(path, final)
        built[mode.name] = (final, settings_of(mode, record))
    for leftover in out_dir.glob("*.step*.onnx"):
        leftover.unlink()
    return built


def _build_prefixes(mode: Mode, prefixes: dict, out_dir: Path, ctx: PassContext) -> None:
    """Run the steps of `mode` not built yet, each from its built prefix."""
    for i in range(1, len(mode.steps) + 1):
        if mode.steps[:i] in prefixes:
            continue
        source, done = prefixes[mode.steps[: i - 1]]
        step = mode.steps[i - 1]
        target = out_dir / f"{mode.name}.step{i}.onnx"
        chosen = get_pass(step.pass_name).run(source, target, step.config, ctx)
        prefixes[mode.steps[:i]] = (target, [*done, {**step.to_json(), "chose": chosen}])


def settings_of(mode: Mode, record: list[dict]) -> dict:
    """What the bundle records: the mode, its steps, and the last quantizer's choice on top."""
    settings: dict = {"mode": mode.name, "steps": record}
    for step in record:
        settings.update(step["chose"])
    return settings


def trimmed(mode: Mode, reserve: int = 0) -> Mode:
    """`mode` with `vocab-trim` after its fusion (so ORT still fuses the embedding) and before
    any quantization (which then sees only the rows kept)."""
    trim = Step.of("vocab-trim", reserve=reserve)
    fused = sum(1 for s in mode.steps[:1] if s.pass_name == "ort-fusion")
    return Mode(
        f"{mode.name}+vocab-trim",
        (*mode.steps[:fused], trim, *mode.steps[fused:]),
        f"{mode.description}, word embeddings of the training text's tokens only",
    )
