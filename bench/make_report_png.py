"""docs/report.png, the README's picture of `report --html`: about 2,000 MNIST test digits, 600
scan-like images, a few broken files and a few non-digits, labels from the folder names; the page
is rendered by headless Chromium and stored as a 256-colour PNG (under 1 MB).
Run: python bench/make_report_png.py [CHROMIUM] (default: chromium on the PATH)."""

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, mnist_test, write_mnist_pngs, write_scans  # noqa: E402

from mnist_batch import synthetic  # noqa: E402

DOCS = Path(__file__).parent.parent / "docs"
WIDTH, TALLEST = 1200, 16_000  # px: the window; the page is cut below its last content


def write_broken(folder: Path) -> None:
    """Files named like images that are not: they show in the report's failed inputs."""
    (folder / "3").mkdir(parents=True, exist_ok=True)
    (folder / "5").mkdir(parents=True, exist_ok=True)
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "5" / "notes.jpg").write_text("meeting notes, not a scan")
    (folder / "3" / "empty.png").write_bytes(b"")


def write_not_digits(folder: Path, per_kind: int = 2, seed: int = 7) -> None:
    """Two of each kind the "not a digit" output knows: letters, pairs, scribbles, empty fields..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, mnist = np.random.default_rng(seed), mnist_test()
    for kind in synthetic.KINDS:
        for i in range(per_kind):
            synthetic.non_digit(rng, kind, mnist.images, mnist.labels).save(folder / f"{kind}-{i}.png")


def screenshot(page: Path, png: Path, chromium: str) -> None:
    shot = page.with_suffix(".full.png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={WIDTH},{TALLEST}", f"--screenshot={shot}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    ink = np.asarray(image.convert("L")) < 250
    bottom = int(np.nonzero(ink.any(axis=1))[0].max()) + 24  # the page's last content, and a margin
    trimmed = image.crop((0, 0, WIDTH, min(bottom, image.height)))
    buffer = io.BytesIO()
    trimmed.quantize(256, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    png.write_bytes(buffer.getvalue())
    print(f"{png}: {trimmed.width}x{trimmed.height}, {len(buffer.getvalue()):,} bytes")


def main(chromium: str = "chromium") -> None:
    work = OUT / "report-png"
    inbox = work / "inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    write_mnist_pngs(inbox / "mnist", 2_000)
    write_scans(inbox / "scans", 600)
    write_broken(inbox / "mnist")
    write_not_digits(inbox / "not-digits")
    preds, page = work / "preds.parquet", work / "report.html"
    command = [BIN / "mnist-batch", "classify", inbox.name, "--out", preds.name, "--overwrite", "--quiet"]
    classified = subprocess.run(command, cwd=work)
    assert classified.returncode in (0, 3), "classify failed"  # 3: the broken files, as intended
    subprocess.run([BIN / "mnist-batch", "report", preds.name, "--labels-from-dirs", "--html", page.name],
                   cwd=work, check=True, stdout=subprocess.DEVNULL)  # the page is what matters
    screenshot(page, DOCS / "report.png", chromium)


if __name__ == "__main__":
    main(*sys.argv[1:])
