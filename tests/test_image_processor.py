"""The runtime-only install's preprocessing agrees with transformers': a bundle's
`preprocessor_config.json` through data/image_processor.py gives the pixels transformers'
processor gives (every family edgetune trains, at its own size and at a profile's), and a
`tokenizer.json` through data/tokenizer.py gives the ids transformers' tokenizer gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vision_fixtures import PROCESSORS

from edgetune.data.image_processor import ImageProcessor, load_image_processor
from edgetune.data.pixels import pixel_values, sized_processor
from edgetune.data.tokenizer import JsonTokenizer, load_tokenizer
from edgetune.errors import InputError


def _images() -> list:
    """Noise images of odd shapes (wide, tall, smaller than the crop) and one grey image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [(50, 37), (29, 61), (20, 20), (224, 300)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in shapes]
    return [*images, Image.new("RGB", (40, 40), (128, 128, 128))]


def _processors():
    """(name, transformers processor) for every family's processor as the fixtures make it,
    its library defaults, a profile size set on it, and the plain-module processor."""
    import transformers as t

    made = {
        "vit": t.ViTImageProcessor(size={"height": 32, "width": 32}),
        "resnet": t.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0),
        "convnext-defaults": t.ConvNextImageProcessor(),
        "convnext-crop": t.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875),
        "convnext-warp": t.ConvNextImageProcessor(size={"shortest_edge": 384}),
        "mobilenet_v2": t.MobileNetV2ImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        "mobilenet_v2-defaults": t.MobileNetV2ImageProcessor(),
        "deit-defaults": t.DeiTImageProcessor(),
        "plain": t.ViTImageProcessor(
            size={"height": 48, "width": 48}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4]
        ),
    }
    for family in ("vit", "convnext", "mobilenet_v2"):
        processor = getattr(t, PROCESSORS[family])()
        made[f"{family}-at-48"] = sized_processor(processor, 48)
    return list(made.items())


PROCESSOR_CASES = _processors()


@pytest.mark.parametrize("name, processor", PROCESSOR_CASES, ids=[n for n, _ in PROCESSOR_CASES])
def test_bundle_pixels_match_transformers_processor(tmp_path, name, processor):
    processor.save_pretrained(tmp_path)
    ours = load_image_processor(tmp_path)
    assert isinstance(ours, ImageProcessor), type(ours)
    images = _images()
    expected = pixel_values(processor, images)
    got = pixel_values(ours, images)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_one_channel_images_come_out_channels_first(tmp_path):
    from PIL import Image

    config = {
        "image_processor_type": "ViTImageProcessor",
        "size": {"height": 8, "width": 8},
        "image_mean": [0.5],
        "image_std": [0.5],
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    pixels = pixel_values(load_image_processor(tmp_path), [Image.new("RGB", (5, 9))], channels=1)
    assert pixels.shape == (1, 1, 8, 8) and np.allclose(pixels, -1.0)


def test_a_missing_or_broken_processor_config_is_one_line(tmp_path):
    with pytest.raises(InputError, match="no image processor"):
        load_image_processor(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "ViTImageProcessor", "size": {"longest_edge": 9}})
    )
    with pytest.raises(InputError, match="missing or odd"):
        load_image_processor(tmp_path)


def test_tokenizer_json_gives_transformers_ids(tiny_model_dir):
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ours = load_tokenizer(tiny_model_dir)
    assert isinstance(ours, JsonTokenizer)
    texts = ["a good movie", "the plot was awful and very very sad " * 3, "happy"]
    seconds = ["great film", "bad", "the actor was fine"]
    for args in ((texts,), (texts, seconds)):
        for padding in (True, "max_length"):
            kwargs = {"padding": padding, "truncation": True, "max_length": 12}
            expected = theirs(*args, return_tensors="np", **kwargs)
            got = ours(*args, return_tensors="np", **kwargs)
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{key} {args}")
