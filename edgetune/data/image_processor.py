"""A bundle's `preprocessor_config.json` applied with Pillow and numpy, without transformers.

A deployment target runs `predict`, `bench` and `serve` on the runtime-only install, so the
pixels an image bundle takes are made here from the config its training saved: resize (to a
height x width, or the shortest edge; ConvNeXt's shortest edge / crop_pct), centre crop if the
config says so, rescale, normalise, channels first. The steps follow transformers' image
processors of the families edgetune trains (ViT/DeiT/Swin, ConvNeXt/ResNet, MobileNet and the
plain-module processor), and `tests/test_image_processor.py` checks the pixels agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.errors import InputError

CONFIG_NAME = "preprocessor_config.json"
# Processors whose steps are the ones below (the Fast ones read the same config).
KNOWN_TYPES = (
    "ViTImageProcessor",
    "DeiTImageProcessor",
    "ConvNextImageProcessor",
    "MobileNetV1ImageProcessor",
    "MobileNetV2ImageProcessor",
)
# ConvNeXt warps to a square at and above this size instead of cropping (as transformers does).
CONVNEXT_WARP_SIZE = 384
BILINEAR = 2  # PIL's code, transformers' default `resample`


@dataclass(frozen=True)
class ImageProcessor:
    """The preprocessing steps of one config; called like transformers' processors."""

    kind: str
    size: dict[str, int] | None  # None: no resize
    resample: int
    crop: tuple[int, int] | None  # (height, width) of the centre crop; None: no crop
    crop_pct: float | None  # ConvNeXt: the shortest edge goes to size / crop_pct, then a crop
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_config(cls, config: dict) -> ImageProcessor:
        kind = _kind(config)
        size = config.get("size") if config.get("do_resize", True) else None
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if size is not None and not ({"height", "width"} <= set(size) or "shortest_edge" in size):
            raise ValueError(f"size {size}")
        crop = config.get("crop_size") if config.get("do_center_crop", False) else None
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        normalise = config.get("do_normalize", True)
        return cls(
            kind=kind,
            size=size,
            resample=int(config.get("resample", BILINEAR)),
            crop=(crop["height"], crop["width"]) if crop else None,
            crop_pct=config.get("crop_pct") if kind == "ConvNextImageProcessor" else None,
            rescale=float(config.get("rescale_factor", 1 / 255))
            if config.get("do_rescale", True)
            else None,
            mean=tuple(config["image_mean"]) if normalise else None,
            std=tuple(config["image_std"]) if normalise else None,
        )

    def __call__(self, images: Sequence, return_tensors: str = "np") -> dict[str, np.ndarray]:
        """`{"pixel_values": float32 N x C x H x W}` for PIL images already in the model's mode."""
        return {"pixel_values": np.stack([self.one(image) for image in images])}

    def one(self, image) -> np.ndarray:
        image = self._resized(image)
        pixels = np.asarray(image)
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        if self.crop is not None:
            pixels = center_crop(pixels, *self.crop)
        if (
            self.crop_pct is not None
            and self.size
            and self.size["shortest_edge"] < CONVNEXT_WARP_SIZE
        ):
            pixels = center_crop(pixels, self.size["shortest_edge"], self.size["shortest_edge"])
        out = pixels.astype(np.float64) * self.rescale if self.rescale else pixels
        out = out.astype(np.float32)
        if self.mean is not None and self.std is not None:
            out = (out - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)

    def _resized(self, image):
        if self.size is None:
            return image
        if "shortest_edge" not in self.size:
            return image.resize((self.size["width"], self.size["height"]), self.resample)
        edge = self.size["shortest_edge"]
        if self.crop_pct is not None:
            if edge >= CONVNEXT_WARP_SIZE:
                return image.resize((edge, edge), self.resample)
            edge = int(edge / self.crop_pct)
        width, height = image.size
        short, long = sorted((width, height))
        new_short, new_long = edge, int(edge * long / short)
        new = (new_short, new_long) if width <= height else (new_long, new_short)
        return image.resize(new, self.resample)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centre `height` x `width` of H x W x C pixels, zero-padded where the image is smaller
    (the offsets transformers' `center_crop` takes)."""
    rows, cols = pixels.shape[:2]
    if rows < height or cols < width:
        padded = np.zeros((max(rows, height), max(cols, width), pixels.shape[2]), pixels.dtype)
        top, left = -(-(padded.shape[0] - rows) // 2), -(-(padded.shape[1] - cols) // 2)
        padded[top : top + rows, left : left + cols] = pixels
        pixels, rows, cols = padded, *padded.shape[:2]
    top, left = (rows - height) // 2, (cols - width) // 2
    return pixels[top : top + height, left : left + width]


def load_image_processor(folder: str | Path):
    """The folder's image processor: ours for the known families; transformers' for another
    type when it is installed (else one line naming the type and the extra)."""
    path = Path(folder) / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"no image processor in {folder} ({CONFIG_NAME})") from None
    kind = _kind(config)
    if kind in KNOWN_TYPES:
        try:
            return ImageProcessor.from_config(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: a setting it needs is missing or odd ({exc})") from None
    try:
        from transformers import AutoImageProcessor
    except ModuleNotFoundError:
        raise InputError(
            f"{path}: the image processor {kind or '(no type)'} needs transformers: "
            "pip install 'edgetune[tune]'"
        ) from None
    try:
        return AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError, TypeError):
        raise InputError(f"no image processor in {folder} ({CONFIG_NAME})") from None


def _kind(config: dict) -> str:
    return str(config.get("image_processor_type", "")).removesuffix("Fast")


def as_loaded(processor):
    """The processor a bundle saved with transformers' `processor` gets at runtime
    (`load_image_processor`): ours for the known families, else that one."""
    config = processor.to_dict()
    return ImageProcessor.from_config(config) if _kind(config) in KNOWN_TYPES else processor
