"""Helpers shared by the benches: test data on disk and timing a whole process tree."""

import hashlib
import io
import os
import subprocess
import sys
import time
import zlib
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

BIN = Path(sys.executable).parent
OUT = Path(__file__).parent / "out"


def mnist_test():
    from mnist_batch import data

    return data.load("t10k")


def drawn_by(module) -> str:
    """A digest of the code a set is drawn with: a set drawn before that code changed is drawn again
    (a marker keyed on its size and seed alone kept, say, blots of a generator since changed)."""
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:12]


def write_labelled(folder: Path, key: str, make_files) -> Path:
    """A test set on disk: make_files() yields (label, file name, image as PIL image or encoded
    bytes), written into label folders; a marker file makes a later call reuse the set."""
    marker = folder / f".complete-{key}"
    if marker.exists():
        return folder
    for label, name, image in make_files():
        path = folder / str(int(label)) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(image, bytes):
            path.write_bytes(image)
        else:
            image.save(path)
    marker.touch()
    return folder


def write_mnist_slice(folder: Path, start: int, stop: int) -> None:
    test = mnist_test()
    for i in range(start, stop):
        path = folder / str(int(test.labels[i % 10_000])) / f"{i:06d}.png"
        Image.fromarray(test.images[i % 10_000]).save(path)


def write_mnist_pngs(folder: Path, count: int) -> Path:
    """`count` MNIST test digits as 28x28 PNGs in label folders (reused when already there),
    written on every core: a million files take minutes on one."""
    marker = folder / f".complete-{count}"
    if marker.exists():
        return folder
    for label in range(10):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    slices = [(folder, start, min(start + 10_000, count)) for start in range(0, count, 10_000)]
    with Pool(os.cpu_count()) as pool:
        pool.starmap(write_mnist_slice, slices)
    marker.touch()
    return folder


def scan_like(digit: np.ndarray, rng) -> tuple[bytes, str]:
    """An MNIST digit as dark ink on light, noisy paper: random size (100-400 px), position,
    stroke darkness, RGB tint; half JPEG, half PNG."""
    size = int(rng.integers(100, 401))
    side = int(size * rng.uniform(0.3, 0.8))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), np.float32) / 255
    paper = rng.uniform(190, 245) + rng.normal(0, rng.uniform(2, 10), (size, size))
    paper += np.linspace(0, rng.uniform(-20, 20), size)[None, :]  # uneven lighting
    top, left = rng.integers(0, size - side + 1, 2)
    paper[top : top + side, left : left + side] *= 1 - ink * rng.uniform(0.6, 0.95)
    gray = paper.clip(0, 255).astype(np.uint8)
    tint = rng.uniform(0.9, 1.0, 3)
    rgb = Image.fromarray((gray[..., None] * tint).clip(0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        rgb.save(buffer, "JPEG", quality=int(rng.integers(60, 95)))
        return buffer.getvalue(), "jpg"
    rgb.save(buffer, "PNG")
    return buffer.getvalue(), "png"


def write_scans(folder: Path, count: int, seed: int = 0) -> Path:
    def files():
        test, rng = mnist_test(), np.random.default_rng(seed)
        for i in range(count):
            data, ext = scan_like(test.images[i % 10_000], rng)
            yield test.labels[i % 10_000], f"{i:06d}.{ext}", data

    return write_labelled(folder, f"{count}-{seed}", files)


def run_measured(command: list, env=None) -> dict:
    """Run a command; wall time and peak RSS summed over its whole process tree."""
    started = time.perf_counter()
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 3):
        raise SystemExit(f"{command} failed ({process.returncode}): {stderr[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": peak / 2**20, "stdout": stdout, "stderr": stderr}


def machine() -> str:
    return f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def load_optdigits():
    """UCI optdigits as scikit-learn ships it inside its wheel: 1,797 8x8 digits (0-16) by
    writers MNIST does not have."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def render_optdigit(image: np.ndarray, side: int = 32, light_on_dark: bool = False) -> Image.Image:
    """An 8x8 optdigit as a person would scan it: dark ink on white, upscaled to side x side."""
    ink = (image / 16.0 * 255).clip(0, 255).astype(np.uint8)
    big = Image.fromarray(ink).resize((side, side), Image.BICUBIC)
    return big if light_on_dark else Image.fromarray(255 - np.asarray(big))


def write_optdigits(folder: Path, light_on_dark: bool = False, side: int = 32) -> Path:
    """optdigits as PNG files in label folders (reused when already there)."""

    def files():
        images, targets = load_optdigits()
        for i, (image, target) in enumerate(zip(images, targets, strict=True)):
            yield target, f"{i:04d}.png", render_optdigit(image, side, light_on_dark)

    return write_labelled(folder, f"{side}-{light_on_dark}", files)


RESAMPLINGS = (Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)


def scanned_optdigit(image: np.ndarray, rng) -> bytes:
    """An 8x8 optdigit as a scanner would give it: upsampled to 24-47 px by a random interpolation,
    strokes thickened or thinned, turned up to 12 degrees, blurred, pressed with uneven darkness onto
    a larger noisy page (unevenly lit, tinted) at any offset, saved as a low-quality JPEG."""
    from PIL import ImageFilter

    side = int(rng.integers(24, 48))
    ink = Image.fromarray((image / 16.0 * 255).clip(0, 255).astype(np.uint8))
    ink = ink.resize((side, side), RESAMPLINGS[int(rng.integers(len(RESAMPLINGS)))])
    stroke, kernel = int(rng.integers(-1, 2)), 3 if side < 36 else 5
    if stroke:
        ink = ink.filter(ImageFilter.MaxFilter(kernel) if stroke > 0 else ImageFilter.MinFilter(kernel))
    ink = ink.rotate(float(rng.uniform(-12, 12)), Image.BICUBIC, expand=True)
    ink = np.asarray(ink.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5)))), np.float32) / 255
    height, width = ink.shape
    size = int(rng.integers(max(height, width) + 4, max(height, width) * 3))
    paper = rng.uniform(170, 240) + rng.normal(0, rng.uniform(3, 14), (size, size))
    paper += np.linspace(0, rng.uniform(-40, 40), size)[:, None] + np.linspace(0, rng.uniform(-40, 40), size)[None, :]
    top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
    paper[top : top + height, left : left + width] *= 1 - ink * rng.uniform(0.45, 0.9)
    gray = paper.clip(0, 255).astype(np.uint8)
    rgb = Image.fromarray((gray[..., None] * rng.uniform(0.8, 1.0, 3)).clip(0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=int(rng.integers(30, 85)))
    return buffer.getvalue()


def write_scanned_optdigits(folder: Path, seed: int = 7) -> Path:
    """optdigits' 1,797 digits (13 writers MNIST does not have) as scans (scanned_optdigit), in two
    halves: even-numbered digits in folder/adapt, odd ones in folder/held-out, each in label folders.
    Adapting on the first half and reading the second measures images never adapted on."""
    images, targets = load_optdigits()

    def half(parity: int):
        def files():
            rng = np.random.default_rng(seed)  # one stream over all digits: both halves draw it whole
            for i, (image, target) in enumerate(zip(images, targets, strict=True)):
                data = scanned_optdigit(image, rng)
                if i % 2 == parity:
                    yield target, f"{i:04d}.jpg", data

        return files

    write_labelled(folder / "adapt", str(seed), half(0))
    write_labelled(folder / "held-out", str(seed), half(1))
    return folder


def write_thin_pen(folder: Path, count: int = 2_000) -> Path:
    """MNIST test digits as if written with a fine pen: cropped to the ink, upscaled 3x, the
    strokes thinned with a 5x5 minimum filter, dark on white. MNIST's own pens are all broad."""
    from PIL import ImageFilter

    def files():
        test = mnist_test()
        for i in range(count):
            digit = test.images[i]
            rows, cols = np.flatnonzero(digit.max(axis=1) > 40), np.flatnonzero(digit.max(axis=0) > 40)
            ink = Image.fromarray(np.ascontiguousarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]))
            ink = ink.resize((ink.width * 3, ink.height * 3), Image.BICUBIC).filter(ImageFilter.MinFilter(5))
            yield test.labels[i], f"{i:05d}.png", Image.fromarray(255 - np.pad(np.asarray(ink), 8))

    return write_labelled(folder, str(count), files)


def write_dusty_scans(folder: Path, count: int = 2_000, seed: int = 2) -> Path:
    """Scan-like digits with one to three dark specks of dust or dirt (2-4 px) anywhere on the page."""

    def files():
        test, rng = mnist_test(), np.random.default_rng(seed)
        for i in range(count):
            data, _ = scan_like(test.images[i], rng)
            page = np.asarray(Image.open(io.BytesIO(data)).convert("L")).copy()
            height, width = page.shape
            for _ in range(rng.integers(1, 4)):
                y, x, side = rng.integers(0, height - 4), rng.integers(0, width - 4), rng.integers(2, 5)
                page[y : y + side, x : x + side] = rng.integers(20, 80)
            yield test.labels[i], f"{i:05d}.png", Image.fromarray(page)

    return write_labelled(folder, f"{count}-{seed}", files)


def write_faint(folder: Path, count: int = 2_000, seed: int = 5) -> Path:
    """MNIST test digits in faint writing (a light pencil, a weak pen, a dim photo): ink only 22-45
    grey levels darker than grainy paper, the digit 20-80% of the page's side anywhere on it, a third
    of them with the stroke broken by the pencil's grain, saved as JPEG."""

    def files():
        test, rng = mnist_test(), np.random.default_rng(seed)
        for i in range(count):
            side = int(rng.integers(60, 300))
            size = int(side * rng.uniform(0.2, 0.8))
            ink = np.asarray(Image.fromarray(test.images[i]).resize((size, size), Image.BICUBIC), np.float32) / 255
            if rng.random() < 1 / 3:
                ink = ink * (rng.random(ink.shape) < rng.uniform(0.6, 0.9))
            page = rng.uniform(170, 245) + rng.normal(0, rng.uniform(1, 6), (side, side))
            top, left = rng.integers(0, side - size + 1, 2)
            page[top : top + size, left : left + size] -= rng.uniform(22, 45) * ink
            encoded = io.BytesIO()
            Image.fromarray(page.clip(0, 255).astype(np.uint8)).save(encoded, "JPEG", quality=int(rng.integers(50, 95)))
            yield test.labels[i], f"{i:05d}.jpg", encoded.getvalue()

    return write_labelled(folder, f"{count}-{seed}", files)


def write_dithered(folder: Path, count: int = 2_000, seed: int = 6) -> Path:
    """Scan-like digits saved as 1-bit PNGs, their greys dithered to dots (Floyd-Steinberg), as a
    1-bit scanner or a fax gives them."""

    def files():
        test, rng = mnist_test(), np.random.default_rng(seed)
        for i in range(count):
            data, _ = scan_like(test.images[i], rng)
            encoded = io.BytesIO()
            Image.open(io.BytesIO(data)).convert("L").convert("1").save(encoded, "PNG")
            yield test.labels[i], f"{i:05d}.png", encoded.getvalue()

    return write_labelled(folder, f"{count}-{seed}", files)


def write_non_digits(folder: Path, images: np.ndarray, labels: np.ndarray, per_kind: int = 150,
                     seed: int = 1234) -> Path:
    """Things that are not one digit, in folders by kind (synthetic.KINDS: letters, handwritten
    letters, signs, pairs of digits, halves of digits, scribbles, scratch-outs, crossed-out digits,
    stamps, drawn shapes, hatching, ticks, crosses, blots, underlines, empty form fields, noise),
    drawn from the given MNIST digits (`images`, `labels`) with fonts and a seed that training never uses."""
    from mnist_batch import synthetic

    generator = drawn_by(synthetic)
    for kind in synthetic.KINDS:
        marker = folder / kind / f".complete-{per_kind}-{seed}-{generator}"
        if marker.exists():
            continue
        for stale in marker.parent.glob(".complete-*"):
            stale.unlink()
        rng = np.random.default_rng([seed, zlib.crc32(kind.encode())])  # adding a kind redraws no other
        marker.parent.mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            synthetic.non_digit(rng, kind, images, labels, synthetic.HELD_OUT_FONTS).save(
                folder / kind / f"{i:04d}.png")
        marker.touch()
    return folder


def write_tight_letters(folder: Path, count: int = 600, seed: int = 11) -> Path:
    """Bold printed letters in a pen 0-8 px wider, cropped to their ink with 0-2 px of margin, odd
    ones dark on light and even ones light on dark, in fonts training never uses: half ink, so which
    side is the paper is a close call, and the paper between a letter's legs or inside its bowl,
    read as ink, is a 1 or a 0."""
    from PIL import ImageDraw, ImageFilter, ImageFont

    from mnist_batch import synthetic

    marker = folder / f".complete-{count}-{seed}"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    fonts = [ImageFont.truetype(synthetic.font_path(name), 64) for name in ("STIXGeneralBol", "cmss10", "cmr10")]
    rng = np.random.default_rng(seed)
    for i in range(count):
        page = Image.new("L", (120, 120), 0)
        letter = "nuhHUNMADQRPabdegpqBEFKkmrwxyz"[rng.integers(30)]
        ImageDraw.Draw(page).text((60, 60), letter, fill=255, font=fonts[rng.integers(3)], anchor="mm")
        ink = np.asarray(page.filter(ImageFilter.MaxFilter(2 * int(rng.integers(0, 5)) + 1)))
        rows, cols = np.flatnonzero(ink.max(axis=1) > 40), np.flatnonzero(ink.max(axis=0) > 40)
        ink = np.pad(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], int(rng.integers(0, 3)))
        Image.fromarray(255 - ink if i % 2 else ink).save(folder / f"{i:04d}.png")
    marker.touch()
    return folder


def write_form_fields(folder: Path, mnist_images: np.ndarray, mnist_labels: np.ndarray, per_frame: int = 150,
                      seed: int = 99) -> Path:
    """MNIST test digits written into printed form fields (box, open frame, comb, underline),
    turned -5 to +5 degrees, 0-60 px from the page's edge, lines 1-4 px, a fifth of them
    touching the frame; in label folders, named FRAME-NNNN.png."""
    from mnist_batch import synthetic

    def files():
        rng = np.random.default_rng(seed)
        for frame in synthetic.FRAMES:
            for i in range(per_frame):
                index = int(rng.integers(len(mnist_images)))
                image = synthetic.form_field(mnist_images[index], rng, *synthetic.field_geometry(rng, frame))
                yield mnist_labels[index], f"{frame}-{i:04d}.png", image

    return write_labelled(folder, f"{per_frame}-{seed}-{drawn_by(synthetic)}", files)


def write_thick_pen(folder: Path, count: int = 1_000, seed: int = 3) -> Path:
    """MNIST test digits in a marker pen, cropped to their ink: cropped, upscaled 2-4x, strokes
    widened by 2-4 px on each side, cropped again with 0-2 px of margin; odd-numbered ones dark on
    light, even ones light on dark. The ink holds much of the crop and of its edge."""
    from PIL import ImageFilter

    def ink_crop(ink: np.ndarray, margin: int) -> np.ndarray:
        rows, cols = np.flatnonzero(ink.max(axis=1) > 40), np.flatnonzero(ink.max(axis=0) > 40)
        return np.pad(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], margin)

    def files():
        test, rng = mnist_test(), np.random.default_rng(seed)
        for i in range(count):
            scale, radius, margin = int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(0, 3))
            digit = Image.fromarray(ink_crop(test.images[i], 0))
            digit = digit.resize((digit.width * scale, digit.height * scale), Image.BICUBIC)
            ink = ink_crop(np.asarray(digit.filter(ImageFilter.MaxFilter(2 * radius + 1))), margin)
            yield test.labels[i], f"{i:05d}.png", Image.fromarray(255 - ink if i % 2 else ink)

    return write_labelled(folder, f"{count}-{seed}", files)
