"""Inputs for any ONNX model, read from its graph: for timing models that have no tokenizer.

Each graph input gets an array of its declared dtype. Its shape is the one `--shape
name=1x3x224x224` gives, else the declared dimensions with the symbolic ones filled from the
profile (the first from `batch_size`, a name with "seq"/"length"/"token" from
`sequence_length`); any other unknown dimension is an error that names the input and the flag
to use. Values are sensible for the kind of input: normal noise for floats, ones for masks,
zeros for token types, and token ids drawn inside the vocabulary (read from the embedding
table the ids index, 100 if none is found).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgetune.errors import InputError
from edgetune.profiles import Profile

SEQUENCE_WORDS = ("seq", "length", "token")
PASS_THROUGH = {"Cast", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten"}


def _fed_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs a caller feeds (older exporters also list weights as inputs)."""
    weights = {init.name for init in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def graph_inputs(model_path: str | Path) -> list[str]:
    return [i.name for i in _fed_inputs(onnx.load(str(model_path), load_external_data=False).graph)]


def graph_input_specs(model_path: str | Path) -> dict[str, tuple[np.dtype, list[int | None]]]:
    """Each fed input's declared NumPy dtype and dimensions (None where symbolic)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return {
        i.name: (
            np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)),
            [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in i.type.tensor_type.shape.dim
            ],
        )
        for i in _fed_inputs(graph)
    }


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    """`["pixel_values=1x3x224x224"]` -> {"pixel_values": [1, 3, 224, 224]}."""
    shapes = {}
    for value in values:
        name, _, dims = value.partition("=")
        try:
            shape = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            shape = []
        if not name or not shape or min(shape) < 1:
            raise InputError(
                f"--shape {value}: use NAME=DxDx... with positive whole numbers, "
                "e.g. pixel_values=1x3x224x224"
            )
        shapes[name] = shape
    return shapes


def _vocab_size(graph: onnx.GraphProto, input_name: str) -> int:
    """Rows of the first 2-D weight table a node reading the ids (after casts and reshapes)
    also reads: Gather's data, or the word embedding of ORT's fused EmbedLayerNormalization;
    100 if there is none."""
    tables = {init.name: init.dims for init in graph.initializer}
    names = {input_name}
    for _ in range(4):  # through a few casts and reshapes to the node that indexes a table
        for node in graph.node:
            if names & set(node.input):
                table = next((n for n in node.input if len(tables.get(n, ())) == 2), None)
                if table is not None:
                    return int(tables[table][0])
                if node.op_type in PASS_THROUGH:
                    names |= set(node.output)
    return 100


def _named_sizes(inputs: list[onnx.ValueInfoProto], given: dict[str, list[int]]) -> dict[str, int]:
    """Symbolic dimension name -> size, from the shapes given (so `--shape input_ids=1x64`
    also sizes `attention_mask`, which shares its dimension names); ranks checked."""
    sizes: dict[str, int] = {}
    for value in inputs:
        if value.name not in given:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and len(dims) != len(given[value.name]):
            raise InputError(
                f"--shape {value.name}: {len(given[value.name])} dimensions given, the "
                f"input has {len(dims)}"
            )
        for dim, size in zip(dims, given[value.name]):
            if dim.dim_param:
                sizes.setdefault(dim.dim_param, size)
    return sizes


def _shape(
    value: onnx.ValueInfoProto, profile: Profile, given: dict[str, list[int]], sizes: dict[str, int]
) -> list[int]:
    if value.name in given:
        return given[value.name]
    shape = []
    for index, dim in enumerate(value.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif dim.dim_param in sizes:
            shape.append(sizes[dim.dim_param])
        elif index == 0:
            shape.append(profile.batch_size)
        elif any(word in dim.dim_param.lower() for word in SEQUENCE_WORDS):
            shape.append(profile.sequence_length)
        elif "channel" in dim.dim_param.lower() and profile.channels:
            shape.append(profile.channels)
        elif dim.dim_param.lower() in ("height", "width") and profile.image_size:
            shape.append(profile.image_size)
        else:
            raise InputError(
                f"input '{value.name}' has an unknown dimension "
                f"'{dim.dim_param or index}'; give its shape: --shape "
                f"{value.name}=" + "x".join(["N"] * len(value.type.tensor_type.shape.dim))
            )
    return shape


def synthetic_feed(
    model_path: str | Path, profile: Profile, shapes: dict[str, list[int]], seed: int = 0
) -> dict[str, np.ndarray]:
    """One input array per graph input (see the module docstring)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    inputs = _fed_inputs(graph)
    unknown = set(shapes) - {i.name for i in inputs}
    if unknown:
        raise InputError(
            f"--shape names {sorted(unknown)}, which {Path(model_path).name} does not "
            f"take (its inputs: {', '.join(i.name for i in inputs)})"
        )
    rng = np.random.default_rng(seed)
    feed = {}
    sizes = _named_sizes(inputs, shapes)
    for value in inputs:
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        shape = _shape(value, profile, shapes, sizes)
        name = value.name.lower()
        if np.issubdtype(dtype, np.floating):
            feed[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_ or "mask" in name:
            feed[value.name] = np.ones(shape, dtype=dtype)
        elif "type" in name or "segment" in name:
            feed[value.name] = np.zeros(shape, dtype=dtype)
        else:
            feed[value.name] = rng.integers(0, _vocab_size(graph, value.name), shape).astype(dtype)
    return feed
