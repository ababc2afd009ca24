"""Digits in printed form fields: for each kind of field (box, open frame of one to three sides,
comb, underline), the share of boxed digits read as the same digit on the same page without
its lines is read, with each bundled checkpoint; how many empty fields are not_digit; and what
the form-line search costs per image, with and without its early exit, on plain scan-like digits
and on form fields (CPU time, interleaved), with the digits each gives. Prints figures, asserts
nothing. Run: python bench/bench_form_fields.py [fields per kind] [seed]."""

import copy
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, mnist_test, scan_like  # noqa: E402

from mnist_batch import form_lines, records, synthetic  # noqa: E402
from mnist_batch.model import Inference, bundled_checkpoints  # noqa: E402


def field_and_twin(test, rng, frame: str) -> tuple[Image.Image, Image.Image, int]:
    """A digit in a field of random geometry, the same page without the lines, and the label."""
    index = int(rng.integers(len(test.images)))
    geometry = (float(rng.uniform(-5, 5)), int(rng.integers(0, 61)), int(rng.integers(1, 5)), frame,
                bool(rng.random() < 0.2))
    twin_rng = copy.deepcopy(rng)
    field = synthetic.form_field(test.images[index], rng, *geometry)
    twin = synthetic.form_field(test.images[index], twin_rng, *geometry, lines=False)
    return field, twin, int(test.labels[index])


def digits_of(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    decoded = [records.digit_of(image) for image in images]
    ok = np.array([d.status == records.OK for d in decoded])
    return records.stack_digits([d.digit if d.digit is not None else np.zeros((28, 28), np.uint8)
                                 for d in decoded]), ok


def read_as_unboxed(per_kind: int, seed: int) -> None:
    test, rng = mnist_test(), np.random.default_rng(seed)
    networks = {listed["name"]: Inference(listed["name"], "cpu") for listed in bundled_checkpoints()}
    print(f"\nboxed digits read as the same digit without its lines ({per_kind} per kind, seed {seed}):")
    for frame in synthetic.FRAMES:
        fields, twins, _ = zip(*(field_and_twin(test, rng, frame) for _ in range(per_kind)), strict=True)
        boxed, boxed_ok = digits_of(list(fields))
        plain, _ = digits_of(list(twins))
        figures = []
        for name, network in networks.items():
            every = [True] * per_kind
            same = (network.scores(boxed, every)[0].argmax(1) == network.scores(plain, every)[0].argmax(1)) & boxed_ok
            figures.append(f"{name} {same.mean():.1%}")
        print(f"  {frame}: " + ", ".join(figures))
    empty = [records.digit_of(synthetic.empty_field(rng)).status for _ in range(per_kind)]
    print(f"  empty fields not_digit: {empty.count(records.NOT_DIGIT)} of {per_kind}")


def preprocess_cost(count: int, seed: int) -> None:
    """Per-image CPU time of digitize.preprocess with the early exit and with the search forced."""
    test, rng = mnist_test(), np.random.default_rng(seed + 1)
    scans = [Image.open(io.BytesIO(scan_like(test.images[i % 10_000], rng)[0])).convert("L") for i in range(count)]
    fields = [field_and_twin(test, rng, synthetic.FRAMES[i % 4])[0] for i in range(count)]
    with_exit = form_lines.thin_enough_for_lines
    print(f"\npreprocessing CPU time per image ({count} each, interleaved):")
    for name, images in (("scan-like digits", scans), ("form fields", fields)):
        seconds, differ = {"with the early exit": 0.0, "search forced": 0.0}, 0
        for i, image in enumerate(images):
            outputs = []
            for mode in sorted(seconds, reverse=i % 2 == 1):  # alternate which runs first
                form_lines.thin_enough_for_lines = with_exit if mode == "with the early exit" else lambda mask: True
                started = time.process_time()
                outputs.append(records.digit_of(image))
                seconds[mode] += time.process_time() - started
            first, second = outputs
            differ += first.status != second.status or not np.array_equal(first.digit, second.digit)
        form_lines.thin_enough_for_lines = with_exit
        print(f"  {name}: " + ", ".join(f"{mode} {s / count * 1e3:.3f} ms" for mode, s in seconds.items())
              + f"; digits that differ: {differ}")


def main() -> None:
    per_kind = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    print(f"form fields; {machine()}")
    read_as_unboxed(per_kind, seed)
    preprocess_cost(2_000, seed)


if __name__ == "__main__":
    main()
