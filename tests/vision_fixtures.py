"""Tiny random-init image models of every supported family, and a generated image set.

The images are learnable on purpose: class `bright` images are light, class `dark` ones are
dark, with noise, so a few training steps move accuracy above chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SIZE = 32
LABELS = ("bright", "dark")

# A plain PyTorch image model (`plain_models:small_cnn` once written as plain_models.py).
PLAIN_MODULE = """
import torch
from torch import nn


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10))


small_cnn.image_size = 32
small_cnn.image_mean = [0.5, 0.5, 0.5]
small_cnn.image_std = [0.5, 0.5, 0.5]
"""


def write_image_folder(root: Path, per_class: int = 24, seed: int = 0, size: int = 40) -> Path:
    """`root/<label>/NNN.png` RGB images (a size other than the models' on purpose)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = 190 if label == "bright" else 60
            pixels = np.clip(rng.normal(base, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i:03d}.png")
    return root


def _config(family: str):
    """A tiny config of `family` taking IMAGE_SIZE px RGB images, two labels."""
    import transformers as t

    common = {"num_labels": 2, "image_size": IMAGE_SIZE, "num_channels": 3}
    if family in ("vit", "deit"):
        cls = t.ViTConfig if family == "vit" else t.DeiTConfig
        return cls(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=8,
            **common,
        )
    if family == "swin":
        return t.SwinConfig(
            embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=2, patch_size=4, **common
        )
    if family == "resnet":
        return t.ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            layer_type="basic",
            num_channels=3,
            num_labels=2,
        )
    if family == "convnext":
        return t.ConvNextConfig(
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_stages=2,
            num_channels=3,
            num_labels=2,
            image_size=IMAGE_SIZE,
        )
    if family == "mobilenet_v2":
        return t.MobileNetV2Config(
            depth_multiplier=0.35, num_channels=3, num_labels=2, image_size=IMAGE_SIZE
        )
    raise ValueError(family)


IMAGE_FAMILIES = ("vit", "deit", "swin", "resnet", "convnext", "mobilenet_v2")
PROCESSORS = {
    "vit": "ViTImageProcessor",
    "deit": "ViTImageProcessor",
    "swin": "ViTImageProcessor",
    "resnet": "ConvNextImageProcessor",
    "convnext": "ConvNextImageProcessor",
    "mobilenet_v2": "MobileNetV2ImageProcessor",
}


def write_tiny_image_model(folder: Path, family: str) -> Path:
    """A random-init `family` classifier + its image processor, saved as a model folder."""
    import torch
    import transformers as t

    torch.manual_seed(0)
    config = _config(family)
    model_class = (
        t.DeiTForImageClassification if family == "deit" else t.AutoModelForImageClassification
    )
    model = model_class(config) if family == "deit" else model_class.from_config(config)
    model.save_pretrained(folder)
    processor_cls = getattr(t, PROCESSORS[family])
    if family in ("resnet", "convnext"):
        processor = processor_cls(size={"shortest_edge": IMAGE_SIZE}, crop_pct=1.0)
    elif family == "mobilenet_v2":
        processor = processor_cls(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        )
    else:
        processor = processor_cls(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(folder)
    return folder
