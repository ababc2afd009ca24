"""Regenerate sample_inputs/: MNIST test digits as PNG, scan-like images, labels.csv.
Run: python bench/make_sample_inputs.py (needs $MNIST_BATCH_DATA)."""

import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import mnist_test, scan_like  # noqa: E402

ROOT = Path(__file__).parent.parent / "sample_inputs"


def main():
    test = mnist_test()
    rng = np.random.default_rng(2026)
    rows = []
    for i in range(20):
        path = Path("mnist") / f"test-{i:04d}.png"
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(ROOT / path)
        rows.append((path.as_posix(), int(test.labels[i])))
    for n, i in enumerate(range(100, 120)):
        data, _ = scan_like(test.images[i], rng)
        image, buffer = Image.open(io.BytesIO(data)), io.BytesIO()
        # Mostly JPEG, as phones and scanners write; one in four PNG.
        ext = "png" if n % 4 == 0 else "jpg"
        image.save(buffer, "PNG" if ext == "png" else "JPEG", quality=85)
        data = buffer.getvalue()
        path = Path("scans") / f"scan-{n:02d}.{ext}"
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_bytes(data)
        rows.append((path.as_posix(), int(test.labels[i])))
    with open(ROOT / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
