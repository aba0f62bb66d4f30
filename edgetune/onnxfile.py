"""An ONNX file on disk: is it one, and which opset. One check for every layer that takes one."""

from __future__ import annotations

from pathlib import Path

from edgetune.errors import InputError


def check_onnx(path: str | Path, validate: bool = False) -> None:
    """`path` parses as an ONNX model (external data not read); with `validate`, it also passes
    onnx's checker (what a pass is about to transform must be a well-formed graph)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InputError(f"{path}: not an ONNX model (could not parse it)") from None
    if validate:
        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:  # noqa: BLE001 - checker and parser errors alike
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise InputError(f"{path}: not a valid ONNX model ({first})") from None


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset the model declares (0 if none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
