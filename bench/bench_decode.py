"""The workers' decoding: Pillow alone (as before the `fast` extra) against the fast path
(pyspng for small PNGs, simplejpeg for JPEG), same files, same process. Prints figures,
asserts nothing.

rates: images per CPU-second on one core, by format and size, for the decode to grey
(reading.decode) and for the whole worker step (records.load: decode and digit), old and new
interleaved, CPU time (time.process_time), median of the rounds.
accuracy: the digits each path gives for MNIST test (as PNG, and as colour JPEG) and for the
scan-like set of bench_classify.py's accuracy section, how many are identical, and the bundled
checkpoint's accuracy on each.
draft: accuracy and rate of JPEG draft rules (how far large JPEGs are reduced while decoded).

    python bench/bench_decode.py [rates] [accuracy] [draft] [--count N]
"""

import io
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from statistics import median

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, mnist_test, scan_like  # noqa: E402

from mnist_batch import reading, records  # noqa: E402

ROUNDS = 5


@contextmanager
def pillow_only():
    """Decoding as before the fast path: Pillow reads every file."""
    saved = reading.pyspng, reading.simplejpeg
    reading.pyspng = reading.simplejpeg = None
    try:
        yield
    finally:
        reading.pyspng, reading.simplejpeg = saved


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def scans(count: int, kind: str, seed: int = 0) -> list[bytes]:
    """`count` scan-like images (100-400 px) of one kind ("png" or "jpg")."""
    test, rng, found = mnist_test(), np.random.default_rng(seed), []
    while len(found) < count:
        data, ext = scan_like(test.images[len(found) % 10_000], rng)
        if ext == kind:
            found.append(data)
    return found


def page(digit: np.ndarray, width: int, rng) -> bytes:
    """A digit on a width x (3/4 width) noisy page, about a third of its height, as JPEG."""
    height, side = width * 3 // 4, width // 4
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), np.float32) / 255
    paper = rng.uniform(200, 240) + rng.normal(0, 4, (height, width))
    top, left = rng.integers(0, height - side), rng.integers(0, width - side)
    paper[top : top + side, left : left + side] *= 1 - 0.8 * ink
    return encoded(Image.fromarray(paper.clip(0, 255).astype(np.uint8)).convert("RGB"), "JPEG", quality=85)


def rate_sets() -> dict[str, list[bytes]]:
    test, rng = mnist_test(), np.random.default_rng(0)
    digits = [Image.fromarray(image) for image in test.images[:2000]]
    return {
        "PNG 28x28 grey (MNIST), 2,000": [encoded(digit, "PNG") for digit in digits],
        "JPEG 28x28 colour, 2,000": [encoded(digit.convert("RGB"), "JPEG", quality=90) for digit in digits],
        "JPEG 28x28 grey, 2,000": [encoded(digit, "JPEG", quality=90) for digit in digits],
        "JPEG 256x256 colour scan, 300": [encoded(Image.open(io.BytesIO(data)).convert("RGB").resize((256, 256)),
                                                  "JPEG", quality=85) for data in scans(300, "jpg")],
        "scan-like JPEG 100-400 px, 500": scans(500, "jpg"),
        "scan-like PNG 100-400 px (read by Pillow either way), 300": scans(300, "png"),
        "JPEG page 1,200-2,400 px (drafted to 1/2), 40": [page(test.images[i], 1200 + 30 * i, rng)
                                                             for i in range(40)],
    }


def cpu_rate(function, items: list[bytes]) -> float:
    started = time.process_time()
    for item in items:
        function(item)
    return len(items) / (time.process_time() - started)


def rates() -> None:
    print(f"images per CPU-second, one core; old = Pillow alone, new = fast path; median of {ROUNDS} interleaved "
          f"rounds; {machine()}")
    for name, items in rate_sets().items():
        measured = {key: [] for key in ("decode old", "decode new", "step old", "step new")}
        for round_number in range(ROUNDS):
            for new in (round_number % 2 == 0, round_number % 2 == 1):  # alternate which goes first
                label = "new" if new else "old"
                with nullcontext() if new else pillow_only():
                    measured[f"decode {label}"].append(cpu_rate(reading.decode, items))
                    measured[f"step {label}"].append(cpu_rate(records.load, items))
        m = {key: median(values) for key, values in measured.items()}
        print(f"  {name}: decode {m['decode old']:,.0f} -> {m['decode new']:,.0f}/s "
              f"({m['decode new'] / m['decode old']:.2f}x); decode + digit {m['step old']:,.0f} -> "
              f"{m['step new']:,.0f}/s ({m['step new'] / m['step old']:.2f}x)")


def digits_of(items: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) digits, zeros where not OK, and the OK mask."""
    loaded = [records.load(item) for item in items]
    ok = np.array([item.status == records.OK for item in loaded])
    digits = np.zeros((len(items), 28, 28), np.uint8)
    digits[ok] = [item.digit for item in loaded if item.digit is not None]
    return digits, ok


def accuracy(count: int) -> None:
    from mnist_batch.model import Inference, predict_log_probs

    inference = Inference(None, "cpu")
    test, rng = mnist_test(), np.random.default_rng(1)
    sets = {
        f"MNIST test as PNG, {count:,}": [encoded(Image.fromarray(image), "PNG") for image in test.images[:count]],
        f"MNIST test as colour JPEG (quality 90), {count:,}":
            [encoded(Image.fromarray(image).convert("RGB"), "JPEG", quality=90) for image in test.images[:count]],
        f"scan-like (bench_classify.py accuracy's set), {count:,}":
            [scan_like(test.images[i % 10_000], rng)[0] for i in range(count)],
    }
    labels = test.labels[:count]
    print(f"accuracy of the bundled checkpoint ({inference.name}) on the digits of each path; {machine()}")
    for name, items in sets.items():
        with pillow_only():
            old, old_ok = digits_of(items)
        new, new_ok = digits_of(items)
        same = int(((old == new).all(axis=(1, 2)) & (old_ok == new_ok)).sum())
        scores = [np.where(ok, predict_log_probs(inference.model, digits, inference.device)[:, :10].argmax(1).numpy(),
                           -1) for digits, ok in ((old, old_ok), (new, new_ok))]
        print(f"  {name}: identical digits {same:,}/{len(items):,}; accuracy Pillow {(scores[0] == labels).mean():.2%}"
              f", fast path {(scores[1] == labels).mean():.2%}")


def predictions(inference, items: list[bytes]) -> np.ndarray:
    from mnist_batch.model import predict_log_probs

    digits, ok = digits_of(items)
    return np.where(ok, predict_log_probs(inference.model, digits, inference.device)[:, :10].argmax(1).numpy(), -1)


# (shorter side at least, largest DCT scale) of the JPEG draft; None: decoded at full size.
DRAFT_RULES = ((112, 2), (112, 4), (112, 8), (80, 2), (56, 2), None)


def draft(count: int) -> None:
    """JPEG draft rules: large JPEGs are decoded at a reduced scale so that their shorter side
    stays at least reading.WORK_SIDE (112: what preprocessing reduces a large image to anyway), at
    most 1/reading.MAX_DRAFT_SCALE (2). Accuracy and decode + digit rate with other rules."""
    from mnist_batch.model import Inference

    inference = Inference(None, "cpu")
    test, rng = mnist_test(), np.random.default_rng(1)
    scan_jpegs, labels = [], []
    for i in range(count):
        data, kind = scan_like(test.images[i % 10_000], rng)
        if kind == "jpg":
            scan_jpegs.append(data)
            labels.append(test.labels[i % 10_000])
    pages = [page(test.images[i], int(rng.integers(1200, 2400)), rng) for i in range(count // 12)]
    sets = {f"scan-like JPEGs (100-400 px), {len(scan_jpegs):,}": (scan_jpegs, np.array(labels)),
            f"page JPEGs (1,200-2,400 px, the digit a quarter of the width), {len(pages):,}":
                (pages, test.labels[: len(pages)])}
    print(f"JPEG draft rules: accuracy of {inference.name}, decode + digit per CPU-second; {machine()}")
    chosen = reading.WORK_SIDE, reading.MAX_DRAFT_SCALE
    for name, (items, truth) in sets.items():
        print(f"  {name}")
        for rule in DRAFT_RULES:
            reading.WORK_SIDE, reading.MAX_DRAFT_SCALE = rule or (10**9, 1)
            started = time.process_time()
            predicted = predictions(inference, items)
            seconds = time.process_time() - started
            label = f"shorter side >= {rule[0]}, at most 1/{rule[1]}" if rule else "full size"
            print(f"    {label}{' (chosen)' if rule == chosen else ''}: accuracy {(predicted == truth).mean():.2%}, "
                  f"{len(items) / seconds:,.0f}/s")
        reading.WORK_SIDE, reading.MAX_DRAFT_SCALE = chosen


if __name__ == "__main__":
    args = sys.argv[1:]
    count = int(args[args.index("--count") + 1]) if "--count" in args else 10_000
    sections = [a for a in args if a in ("rates", "accuracy", "draft")] or ["rates", "accuracy", "draft"]
    if "rates" in sections:
        rates()
    if "accuracy" in sections:
        accuracy(count)
    if "draft" in sections:
        draft(count)
