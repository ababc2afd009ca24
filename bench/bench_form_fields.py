"""Digits in printed form fields: for each kind of field (box, open frame of one to three sides,
comb, underline), the share of boxed digits read as the same digit on the same page without
its lines is read, with each bundled checkpoint; how many empty fields are not_digit; and what
the form-line search costs per image, with and without its early exit, on plain scan-like digits
and on form fields (CPU time, interleaved), with the digits each gives; and printed styles the
form-field generator does not draw (a caption in the corner, double lines, a shaded cell, a
dropout-red box, dashes, a comb cell cut with slivers of its neighbours); digits on ruled and
squared paper, whose lines cross the digit; and digits in a shadow cast across the field or page.
Prints figures, asserts nothing.
Run: python bench/bench_form_fields.py [fields per kind] [seed]."""

import copy
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, mnist_test, scan_like  # noqa: E402

from mnist_batch import form_lines, records, synthetic  # noqa: E402
from mnist_batch.model import Inference, bundled_checkpoints  # noqa: E402
from mnist_batch.results import DEFAULT_MIN_DIGIT_SCORE  # noqa: E402


def field_and_twin(test, rng, frame: str) -> tuple[Image.Image, Image.Image, int]:
    """A digit in a field of random geometry, the same page without the lines, and the label."""
    index = int(rng.integers(len(test.images)))
    geometry = synthetic.field_geometry(rng, frame)
    twin_rng = copy.deepcopy(rng)
    field = synthetic.form_field(test.images[index], rng, *geometry)
    twin = synthetic.form_field(test.images[index], twin_rng, *geometry, lines=False)
    return field, twin, int(test.labels[index])


def digits_of(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    decoded = [records.digit_of(image) for image in images]
    ok = np.array([d.status == records.OK for d in decoded])
    return records.stack_digits([d.digit if d.digit is not None else np.zeros((28, 28), np.uint8)
                                 for d in decoded]), ok


def read_alike(networks: dict, fields: list[Image.Image], twins: list[Image.Image]) -> tuple[str, int]:
    """Each network's share of `fields` read as the same digit as their twins, as "name share, ...";
    and how many fields preprocessing did not give a digit for."""
    printed, printed_ok = digits_of(fields)
    plain, _ = digits_of(twins)
    every = [True] * len(fields)
    figures = []
    for name, network in networks.items():
        same = network.scores(printed, every)[0].argmax(1) == network.scores(plain, every)[0].argmax(1)
        figures.append(f"{name} {(same & printed_ok).mean():.1%}")
    return ", ".join(figures), int((~printed_ok).sum())


def read_as_unboxed(networks: dict, per_kind: int, seed: int) -> None:
    test, rng = mnist_test(), np.random.default_rng(seed)
    print(f"\nboxed digits read as the same digit without its lines ({per_kind} per kind, seed {seed}):")
    for frame in synthetic.FRAMES:
        fields, twins, _ = zip(*(field_and_twin(test, rng, frame) for _ in range(per_kind)), strict=True)
        print(f"  {frame}: " + read_alike(networks, list(fields), list(twins))[0])
    empty = [records.digit_of(synthetic.empty_field(rng)).status for _ in range(per_kind)]
    print(f"  empty fields not_digit: {empty.count(records.NOT_DIGIT)} of {per_kind}")
    for frame in ("box", "open", "comb"):  # a page cut at the frame leaves a tick or a side on its edge
        cut = [synthetic.form_field(None, rng, float(rng.uniform(-5, 5)), int(rng.integers(0, 2)),
                                    int(rng.integers(1, 5)), frame) for _ in range(per_kind)]
        print(f"  empty {frame} fields cut at their frame (0-1 px margin) read as a digit: "
              f"{read_as_digits(networks, cut)} of {per_kind}")
    thick = [np.asarray(synthetic.box_cut_at_its_frame(None, rng)) for _ in range(per_kind)]
    for name, pages in (("dark on light", thick), ("light on dark", [255 - page for page in thick])):
        print(f"  empty boxes of 4-7 px lines cut at their frame, {name}, read as a digit: "
              f"{read_as_digits(networks, [Image.fromarray(page) for page in pages])} of {per_kind}")


STYLES = ("caption", "double", "shaded", "dropout red", "dashed", "round", "neighbours", "next field's side")


def styled_field(digit: np.ndarray, rng, style: str, printed: bool, neighbours: np.ndarray) -> Image.Image:
    """A digit written in blue in a 90 px box of `style`, turned up to 4 degrees (the neighbours'
    comb cell is cut out of a row, untilted), as classify reads it (grey); `printed=False`: the
    same page and digit without the printed parts."""
    box, pad = 90, 14
    side = box + 2 * pad
    page = Image.new("RGB", (side + (2 * box if style == "neighbours" else 0), side), (246, 245, 240))
    draw = ImageDraw.Draw(page)
    a, b = pad, pad + box
    if printed and style == "caption":
        draw.rectangle([a, a, b, b], outline=(40, 40, 40), width=2)
        font = ImageFont.truetype(synthetic.font_path("DejaVuSans"), int(rng.integers(9, 13)))
        draw.text((a + 4, a + 3), ("Qty", "Age", "No.", "Day")[rng.integers(4)], fill=(60, 60, 60), font=font)
    elif printed and style == "double":
        draw.rectangle([a - 4, a - 4, b + 4, b + 4], outline=(40, 40, 40), width=2)
        draw.rectangle([a, a, b, b], outline=(40, 40, 40), width=1)
    elif style == "shaded":  # the shade is drawn on both: the twin has only the frame taken away
        draw.rectangle([a, a, b, b], fill=(190, 190, 190), outline=(40, 40, 40) if printed else None, width=2)
    elif printed and style == "dropout red":
        draw.rectangle([a, a, b, b], outline=(235, 110, 110), width=3)
    elif style == "next field's side":  # drawn either way, so that a field and its twin match
        offset, level = int(rng.integers(0, 7)), int(rng.integers(20, 90))
        if printed:  # its own box too faint to be ink, the next one's side dark along the page's edge
            draw.rectangle([a, a, b, b], outline=(225, 224, 219), width=2)
            x = side - 3 - offset if offset % 2 else offset
            draw.line([(x, 0), (x, side)], fill=(level, level, level), width=2)
    elif printed and style == "round":  # a circle around the box's middle, clear of the digit
        draw.ellipse([a - 8, a - 8, b + 8, b + 8], outline=(40, 40, 40), width=2)
    elif printed and style == "dashed":
        for start in range(a, b, 8):
            for dash in ([(start, a), (start + 4, a)], [(start, b), (start + 4, b)],
                         [(a, start), (a, start + 4)], [(b, start), (b, start + 4)]):
                draw.line(dash, fill=(40, 40, 40), width=2)
    cells = [(a, digit)]
    if style == "neighbours":
        cells = [(a, neighbours[0]), (a + box, digit), (a + 2 * box, neighbours[1])]
        if printed:
            for x in range(a, a + 3 * box + 1, box):
                draw.line([(x, a), (x, b)], fill=(40, 40, 40), width=2)
            draw.line([(a, b), (a + 3 * box, b)], fill=(40, 40, 40), width=2)
    pixels = np.asarray(page, np.float32)
    for left, written in cells:  # the neighbours written large: their ink may show in the cut
        size = int(box * (rng.uniform(0.6, 0.8) if written is digit else rng.uniform(0.95, 1.1)))
        ink = np.asarray(Image.fromarray(written).resize((size, size), Image.BICUBIC), np.float32)[..., None] / 255
        y, x = max(a + (box - size) // 2, 0), left + (box - size) // 2
        pixels[y : y + size, x : x + size] = pixels[y : y + size, x : x + size] * (1 - ink) + ink * (30, 40, 140)
    page = Image.fromarray(pixels.astype(np.uint8))
    if style == "neighbours":
        cut = int(rng.integers(4, 15))
        return page.crop((a + box - cut, 0, a + 2 * box + cut, side)).convert("L")
    return page.rotate(float(rng.uniform(-4, 4)), resample=Image.BICUBIC, fillcolor=(246, 245, 240)).convert("L")


def read_in_styled_fields(networks: dict, per_kind: int, seed: int) -> None:
    """Digits in fields of each style read as without its printed parts; and the same fields left
    empty (their own draws: the digits' figures stay as they were), which must not be a digit."""
    test, rng, empty_rng = mnist_test(), np.random.default_rng(seed + 2), np.random.default_rng(seed + 5)
    nothing = np.zeros((28, 28), np.uint8)
    print(f"\ndigits in other printed styles read as without them ({per_kind} per style, seed {seed}):")
    for style in STYLES:
        fields, twins = [], []
        for _ in range(per_kind):
            index, neighbours = int(rng.integers(10_000)), test.images[rng.integers(10_000, size=2)]
            twin_rng = copy.deepcopy(rng)
            fields.append(styled_field(test.images[index], rng, style, True, neighbours))
            twins.append(styled_field(test.images[index], twin_rng, style, False, neighbours))
        figures, not_ok = read_alike(networks, fields, twins)
        pairs = test.images[empty_rng.integers(10_000, size=(per_kind, 2))]
        empty = read_as_digits(networks, [styled_field(nothing, empty_rng, style, True, pair) for pair in pairs])
        print(f"  {style}: {figures}; not ok {not_ok} of {per_kind}; empty ones read as a digit: {empty} of {per_kind}")


def read_in_light_grey_fields(networks: dict, per_kind: int, seed: int) -> None:
    """Small digits in fields printed light grey, unevenly (synthetic.light_grey_field), read as on
    the same page without the lines: the lines break up at the ink threshold."""
    test, rng = mnist_test(), np.random.default_rng(seed + 6)
    fields, twins = [], []
    for index in rng.integers(len(test.images), size=per_kind):
        twin_rng = copy.deepcopy(rng)
        fields.append(synthetic.light_grey_field(test.images[index], rng))
        twins.append(synthetic.light_grey_field(test.images[index], twin_rng, lines=False))
    figures, not_ok = read_alike(networks, fields, twins)
    print(f"\nsmall digits in light grey printed fields read as without the lines ({per_kind}, seed {seed}): "
          f"{figures}; not ok {not_ok} of {per_kind}")


def read_on_ruled_paper(networks: dict, per_kind: int, seed: int) -> None:
    """Digits on a notebook's ruled paper and on squared paper (synthetic.ruled_page), read as on
    the same page without the ruling; and empty pages of each, which must not be a digit."""
    test, rng = mnist_test(), np.random.default_rng(seed + 3)
    print(f"\ndigits on ruled paper read as without its lines ({per_kind} per kind, seed {seed}):")
    for squared in (False, True):
        pages, twins = [], []
        for index in rng.integers(len(test.images), size=per_kind):
            twin_rng = copy.deepcopy(rng)
            pages.append(synthetic.ruled_page(test.images[index], rng, squared))
            twins.append(synthetic.ruled_page(test.images[index], twin_rng, squared, lines=False))
        figures, not_ok = read_alike(networks, pages, twins)
        empty = read_as_digits(networks, [synthetic.ruled_page(None, rng, squared) for _ in range(per_kind)])
        print(f"  {'squared' if squared else 'ruled'}: {figures}; not ok {not_ok} of {per_kind}; "
              f"empty pages read as a digit: {empty} of {per_kind}")


def read_as_digits(networks: dict, images: list[Image.Image]) -> str:
    """How many of `images` (with no digit) each network reads as a digit, as "name count, ..."."""
    digits, ok = digits_of(images)
    counts = []
    for name, network in networks.items():
        score = network.scores(digits, [True] * len(images))[1]
        taken = ok if score is None else ok & (score >= DEFAULT_MIN_DIGIT_SCORE)
        counts.append(f"{name} {taken.sum()}")
    return ", ".join(counts)


def read_in_shadow(networks: dict, per_kind: int, seed: int) -> None:
    """Digits in form fields and on plain pages with a shadow across them (synthetic.in_shadow),
    read as on the same page without it; and empty fields and pages in shadow, which must not be a
    digit."""
    test, rng = mnist_test(), np.random.default_rng(seed + 4)

    def page(kind: str, digit: np.ndarray | None, i: int) -> Image.Image:
        if kind == "plain pages":
            return synthetic.ruled_page(digit, rng, False, lines=False)
        return synthetic.form_field(digit, rng, *synthetic.field_geometry(rng, synthetic.FRAMES[i % 4]))

    print(f"\ndigits in shadow read as without it ({per_kind} per kind, seed {seed}):")
    for kind in ("form fields", "plain pages"):
        indices = rng.integers(len(test.images), size=per_kind)
        pages = [page(kind, test.images[index], i) for i, index in enumerate(indices)]
        figures, not_ok = read_alike(networks, [synthetic.in_shadow(shown, rng) for shown in pages], pages)
        empty = read_as_digits(networks, [synthetic.in_shadow(page(kind, None, i), rng) for i in range(per_kind)])
        print(f"  {kind}: {figures}; not ok {not_ok} of {per_kind}; empty ones read as a digit: {empty} of {per_kind}")


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
    networks = {listed["name"]: Inference(listed["name"], "cpu") for listed in bundled_checkpoints()}
    read_as_unboxed(networks, per_kind, seed)
    read_in_styled_fields(networks, per_kind, seed)
    read_in_light_grey_fields(networks, per_kind, seed)
    read_on_ruled_paper(networks, per_kind, seed)
    read_in_shadow(networks, per_kind, seed)
    preprocess_cost(2_000, seed)


if __name__ == "__main__":
    main()
