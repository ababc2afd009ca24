"""Other writers: checkpoints by name, weight checks, fine-tuning on the user's own digits."""

import csv
import itertools
import json

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mnist_batch import digitize, records, synthetic
from mnist_batch.checkpoints import WEIGHTS, file_sha256


def one_line_error(result, *fragments):
    assert result.exit_code not in (0, None), result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]

LENET = WEIGHTS / "lenet.safetensors"


def metadata_of(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in f.metadata().items()}


@pytest.mark.parametrize("poison, message", [
    (lambda t: t.fill_(float("nan")), "NaN or infinite"),
    (lambda t: t.fill_(float("inf")), "NaN or infinite"),
    (lambda t: t.to(torch.int32), "torch.int32"),
])
def test_non_finite_or_integer_weights_are_refused(cli, tmp_path, mnist_dir, poison, message):
    tensors = load_file(LENET)
    tensors["conv1.weight"] = poison(tensors["conv1.weight"].clone())
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"architecture": json.dumps("lenet")})
    one_line_error(cli("evaluate", "--checkpoint", bad, "--data-dir", mnist_dir), "conv1.weight", message)


def test_checkpoint_by_bundled_name(cli, tmp_path, mnist_test):
    Image.fromarray(mnist_test.images[0]).save(tmp_path / "a.png")
    out = tmp_path / "p.parquet"
    assert cli("classify", tmp_path / "a.png", "--out", out, "--checkpoint", "lenet", "--quiet").exit_code == 0

    row = pl.read_parquet(out).row(0, named=True)
    assert row["checkpoint"] == "lenet.safetensors" and row["checkpoint_sha256"] == file_sha256(LENET)
    one_line_error(cli("classify", tmp_path / "a.png", "--out", tmp_path / "q.parquet", "--checkpoint", "nosuch"),
                   "nosuch", "not found")


def test_checkpoints_lists_the_bundled_ones(cli):
    result = cli("checkpoints", "--json")
    assert result.exit_code == 0, result.stderr
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert listed["lenet"]["parameters"] == 60_074 and listed["lenet"]["mnist_test_accuracy"] >= 0.99
    table = cli("checkpoints")
    assert "lenet" in table.stdout and "60,074" in table.stdout


@pytest.fixture
def my_digits(tmp_path, mnist_test):
    """Scan-like digits of 'my writers' with a labels file holding a missing file, a broken
    image, a label that is no digit, and two rows left unlabelled (as a review file leaves them)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    rows = []
    for i in range(30):
        name = f"d{i:02d}.png"
        Image.fromarray(255 - mnist_test.images[100 + i]).resize((64, 64)).save(folder / name)
        rows.append((name, str(mnist_test.labels[100 + i])))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rows += [("gone.png", "3"), ("broken.png", "4"), ("d00.png", "seven"), ("d01.png", ""), ("d02.png", " ")]
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows[:27], *rows[30:], *rows[27:30]])
    return folder, labels


def test_fine_tuning_skips_bad_rows_and_records_provenance(cli, tmp_path, mnist_dir, my_digits):
    folder, labels = my_digits
    out = tmp_path / "tuned"
    result = cli("train", "--from", "lenet", "--extra", labels, "--extra-root", folder, "--out", out,
                 "--dry-run", "--data-dir", mnist_dir, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "gone.png: missing" in result.stderr and "broken.png: " in result.stderr
    assert "'seven' is not a digit" in result.stderr
    # 4 digits held back: each accuracy with its interval, and no claim of a gain
    assert "your held-back digits (4): 100.00% (95% CI 51.0%-100.0%) -> " in result.stdout
    assert "the gain cannot be measured: fewer than 100 digits held back" in result.stdout
    assert not (out / "lenet.safetensors").exists()  # the tuned network is named apart from its base
    meta = metadata_of(out / "lenet-tuned.safetensors")
    assert result.stdout.strip().splitlines()[0].endswith("lenet-tuned.safetensors")
    assert meta["base_checkpoint"]["sha256"] == file_sha256(LENET)
    (source,) = meta["extra"]["labels_files"]
    # 35 rows: 30 good, 2 unlabelled, 3 bad (a missing file, a broken image, a label that is no digit)
    assert source == {"file": "labels.csv", "sha256": file_sha256(labels), "rows": 35, "used": 30, "skipped": 3,
                      "duplicates": 0, "unlabelled": 2}
    assert meta["extra"]["train_digits"] + meta["extra"]["holdout_digits"] == source["used"]
    assert meta["extra"]["holdout_accuracy_after"] is not None
    # fine-tuning's own defaults: a gentle rate, small mixed batches
    assert meta["hyperparameters"]["holdout"] == 0.2 and meta["hyperparameters"]["lr"] == 0.001
    assert meta["hyperparameters"]["batch_size"] == 128
    assert meta["hyperparameters"]["extra_augment"] == "affine"  # lenet was trained with the affine jitter
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["extra"]["holdout_accuracy_before"] is not None


def test_fine_tuning_that_costs_lenet_its_mnist_keeps_99_percent(cli, tmp_path, mnist_dir, my_digits):
    """A rate far too high for fine-tuning stands in for labels far from MNIST's writers: the
    network written still reads MNIST test at 99.0% or more, and says how."""
    folder, labels = my_digits
    out = tmp_path / "tuned"
    result = cli("train", "--from", "lenet", "--extra", labels, "--extra-root", folder, "--out", out,
                 "--lr", "0.05", "--holdout", "0", "--data-dir", mnist_dir, "--device", "cpu", "--threads", "1",
                 "--quiet")
    assert result.exit_code == 0, result.stderr
    meta = metadata_of(out / "lenet-tuned.safetensors")
    floor = meta["mnist_floor"]
    assert floor["test_accuracy_fine_tuned"] < floor["floor"] == 0.99  # the rate did cost MNIST
    assert floor["fine_tuned_share"] < 1 and meta["test_accuracy"] >= 0.99
    assert "below 99.0%: kept" in result.stderr
    evaluated = cli("evaluate", "--checkpoint", out / "lenet-tuned.safetensors", "--data-dir", mnist_dir,
                    "--device", "cpu", "--json")
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-4)


@pytest.mark.parametrize("digits, before, after, measured", [
    (78, 1.0, 1.0, False),  # the 100.00% -> 100.00%: nothing learnt about a gain
    (80, 0.80, 0.99, False),  # far apart, but too few digits to trust
    (400, 0.95, 0.96, False),  # enough digits, but the intervals overlap
    (400, 0.80, 0.97, True),
    (400, 0.97, 0.80, True),  # a measured loss is measured too
    (78, None, 1.0, None),  # trained from scratch: no before
])
def test_the_gain_on_held_back_digits_is_claimed_only_when_measurable(digits, before, after, measured):
    from mnist_batch.train import holdout_gain

    gain = holdout_gain(digits, before, after)
    assert gain["gain_measured"] is measured
    low, high = gain["holdout_ci95_after"]
    assert low <= after <= high and (high - low > 0.04 if digits < 100 else True)
    assert (gain["holdout_ci95_before"] is None) == (before is None)


def test_a_labels_file_with_no_usable_row_is_a_usage_error(cli, tmp_path, mnist_dir):
    labels = tmp_path / "empty.csv"
    labels.write_text("path,label\ngone.png,3\nother.png,\n")
    result = cli("train", "--from", "lenet", "--extra", labels, "--out", tmp_path / "t", "--dry-run",
                 "--data-dir", mnist_dir)
    assert result.exit_code == 2
    assert "no usable row" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("share, counts, expected_holdout", [
    (0.2, {0: 10, 1: 10}, {0: 2, 1: 2}),
    (0.2, {0: 1, 1: 5}, {0: 0, 1: 1}),  # a digit seen once stays for training
    (0.5, {0: 2, 1: 3}, {0: 1, 1: 2}),
    (0.0, {0: 5}, {0: 0}),
])
def test_holdout_is_stratified_where_counts_allow(share, counts, expected_holdout):
    from mnist_batch.train import stratified_split

    targets = np.concatenate([np.full(n, digit) for digit, n in counts.items()])
    train, holdout = stratified_split(targets, share, seed=1)
    assert sorted(np.concatenate([train, holdout])) == list(range(len(targets)))
    assert {d: int((targets[holdout] == d).sum()) for d in counts} == expected_holdout


def tight_crop(digit: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(digit.max(axis=1) > 40), np.flatnonzero(digit.max(axis=0) > 40)
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def upscale(ink: np.ndarray, factor: int) -> np.ndarray:
    return np.asarray(Image.fromarray(ink).resize((ink.shape[1] * factor, ink.shape[0] * factor), Image.BICUBIC))


def thicker(ink: np.ndarray) -> np.ndarray:
    from PIL import ImageFilter

    return np.asarray(Image.fromarray(ink).filter(ImageFilter.MaxFilter(3)))


def thinner(ink: np.ndarray) -> np.ndarray:
    from PIL import ImageFilter

    return np.asarray(Image.fromarray(upscale(ink, 3)).filter(ImageFilter.MinFilter(5)))


def on_paper(ink: np.ndarray, paper: float, pen: float) -> np.ndarray:
    """Ink (0-255) drawn in `pen` grey on `paper` grey, with a margin."""
    padded = np.pad(ink, 12).astype(np.float32) / 255
    return (paper + (pen - paper) * padded).clip(0, 255).astype(np.uint8)


# Each case: MNIST test digits made to look like another source's digits (truth known).
POLARITY_CASES = {
    "tight crop, dark on light": lambda d: 255 - tight_crop(d),
    "tight crop, light on dark": lambda d: tight_crop(d),
    "tight crop, thick pen, dark on light": lambda d: 255 - thicker(tight_crop(d)),
    "tight crop, thick pen, light on dark": lambda d: thicker(tight_crop(d)),
    "thin pen, dark on light": lambda d: 255 - thinner(tight_crop(d)),
    "dim scan: grey paper below mid-grey": lambda d: on_paper(upscale(d, 3), paper=90, pen=10),
    "light ink on a grey board": lambda d: on_paper(upscale(d, 3), paper=140, pen=250),
}


@pytest.mark.parametrize("case", list(POLARITY_CASES))
def test_polarity_of_other_sources(tmp_path, mnist_test, case):
    """Written as PNG files and classified as classify does: none comes out blank, and the digits
    are read. (The bundled lenet scores 98-99% on these digits as they are; a pen much thicker
    than MNIST's costs it accuracy, which is the network's limit, not the polarity's. A thin pen's
    strokes are widened by the preprocessing.) The network's own "not a digit" is left out (minimum
    digit score 0): an odd MNIST 4 scores near the default threshold however it is drawn."""
    import mnist_batch

    count = 60
    paths = []
    for i in range(count):
        path = tmp_path / f"{i:03d}.png"
        Image.fromarray(POLARITY_CASES[case](mnist_test.images[i])).save(path)
        paths.append(str(path))
    frame = mnist_batch.Classifier(device="cpu", min_digit_score=0.0).predict(paths)
    if "thick" in case:
        # Strokes a quarter of the digit's size: a 7 whose ink holds three corners of its crop, or a
        # 1 that is a bar of ink, may be "not a digit" rather than a guess; what is read, is read right.
        assert set(frame["status"]) <= {"ok", "not_digit"} and (frame["status"] == "ok").mean() >= 0.95
        ok = frame.filter(pl.col("status") == "ok")
        assert (ok["pred"].to_numpy() == mnist_test.labels[:count][frame["status"].to_numpy() == "ok"]).mean() >= 0.85
        return
    assert frame["status"].to_list() == ["ok"] * count
    accuracy = (frame["pred"].to_numpy() == mnist_test.labels[:count]).mean()
    assert accuracy >= 0.9, accuracy


def read_pages(folder, pages: list[np.ndarray]) -> pl.DataFrame:
    """Grey pages (any float values: clipped to 0-255) written as PNG files into `folder`, in
    order, and classified by the Python API with the default checkpoint."""
    import mnist_batch

    paths = [str(folder / f"{i:03d}.png") for i in range(len(pages))]
    for path, page in zip(paths, pages, strict=True):
        Image.fromarray(page.clip(0, 255).astype(np.uint8)).save(path)
    return mnist_batch.Classifier(device="cpu").predict(paths)


def test_digits_on_an_unevenly_lit_page_are_read_as_on_even_paper(tmp_path, mnist_test):
    """A phone photo or a scan's shaded edge: the paper 40-80 grey levels darker on one side. Before
    the light was levelled, the dark side was taken for ink: 67% read at 40 levels, 2% at 80."""
    rng = np.random.default_rng(5)
    count, pages = 150, []
    for i in range(count):
        step, angle = rng.uniform(40, 80), rng.uniform(0, 2 * np.pi)
        ramp = np.linspace(-step / 2, step / 2, 120)
        page = 215 + rng.normal(0, 5, (120, 120)) + np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
        ink = np.asarray(Image.fromarray(mnist_test.images[i]).resize((40, 40), Image.BICUBIC), np.float32) / 255
        y, x = rng.integers(10, 70, 2)
        page[y : y + 40, x : x + 40] *= 1 - ink * 0.5
        pages.append(page)
    frame = read_pages(tmp_path, pages)
    assert (frame["status"] == "ok").mean() >= 0.98
    assert (frame["pred"].to_numpy() == mnist_test.labels[:count]).mean() >= 0.97


def test_a_28x28_digit_on_a_grey_or_grainy_background_is_read_as_on_black(tmp_path, mnist_test):
    """MNIST-form images from another pipeline: light ink on a grey field (20-100) with some grain.
    They were passed to the network as they were, the grey taken for faint ink: 24-76% read."""
    rng = np.random.default_rng(8)
    pages = []
    for i in range(200):
        background = rng.uniform(20, 100)
        digit = background + mnist_test.images[i] * (255 - background) / 255 + rng.normal(0, 3, (28, 28))
        pages.append(digit)
    frame = read_pages(tmp_path, pages)
    assert (frame["pred"].to_numpy() == mnist_test.labels[:200]).mean() >= 0.97


def test_a_small_faint_digit_on_a_grainy_page_is_read_as_ink_on_paper(tmp_path, mnist_test):
    """Pale pencil, a small digit on a large grainy page: the ink is a sliver of the pixels, so
    Otsu's split fell inside the paper's grain, the corners were chance, and half the pages were
    read light-on-dark: the page itself became the "digit" (a grey square, not a digit)."""
    rng = np.random.default_rng(11)
    count, pages = 120, []
    for i in range(count):
        side, size = int(rng.integers(24, 40)), int(rng.integers(100, 150))
        page = rng.uniform(150, 210) + rng.normal(0, rng.uniform(6, 11), (size, size))
        ink = np.asarray(Image.fromarray(mnist_test.images[i]).resize((side, side), Image.BICUBIC), np.float32) / 255
        y, x = rng.integers(0, size - side, 2)
        page[y : y + side, x : x + side] -= ink * rng.uniform(55, 75)
        pages.append(page)
    frame = read_pages(tmp_path, pages)
    assert (frame["status"] == "ok").mean() >= 0.95
    assert (frame["pred"].to_numpy() == mnist_test.labels[:count]).mean() >= 0.9


@pytest.mark.parametrize("ink, paper, corner_light", [(100, 95, -50), (-80, 150, 50)])
def test_a_shadow_or_a_glare_over_one_corner_is_neither_the_ink_nor_the_paper(tmp_path, mnist_test, ink,
                                                                               paper, corner_light):
    """Light ink on dark paper with a shadow over one corner, or dark ink with light spilling into
    one: the shadow (glare) outnumbered a small digit's ink on the far side of the paper's level
    and was taken for the ink, or Otsu's split fell between it and the paper and the paper became
    the digit. 0-2% of these were read, none right; now 99-100%."""
    rng = np.random.default_rng(21)
    count, pages = 100, []
    for i in range(count):
        side, size = int(rng.integers(28, 40)), int(rng.integers(110, 150))
        page = paper + rng.uniform(-15, 15) + rng.normal(0, rng.uniform(3, 6), (size, size))
        y, x = np.mgrid[:size, :size] / size
        corner_y, corner_x = rng.integers(0, 2, 2)
        reach = rng.uniform(0.35, 0.5)  # of the page's side, fading over the last third
        page += corner_light * np.clip((reach - np.hypot(y - corner_y, x - corner_x)) / (0.3 * reach), 0, 1)
        digit = np.asarray(Image.fromarray(mnist_test.images[i]).resize((side, side), Image.BICUBIC), np.float32)
        top, left = (size - side) // 2 + rng.integers(-10, 11, 2)
        page[top : top + side, left : left + side] += digit / 255 * ink
        pages.append(page)
    frame = read_pages(tmp_path, pages)
    assert (frame["status"] == "ok").mean() >= 0.95
    assert (frame["pred"].to_numpy() == mnist_test.labels[:count]).mean() >= 0.9


def test_a_page_lit_from_one_point_is_levelled(tmp_path, mnist_test):
    """A phone photo under a lamp: the light falls off with the square of the distance from a point
    on or near the page (a third to a half darker at the farthest corner). The corners span no plane
    (the edges' midpoints are lighter), so the page was left unlevelled and its dark side became ink:
    of 200 such pages 69% were read right and 16% were not_digit; now 100% are read right."""
    rng = np.random.default_rng(23)
    count, pages = 100, []
    for i in range(count):
        side, size = int(rng.integers(28, 60)), int(rng.integers(80, 180))
        y, x = np.mgrid[:size, :size] / size - 0.5
        centre_y, centre_x = rng.uniform(-0.5, 0.5, 2)
        distance = (y - centre_y) ** 2 + (x - centre_x) ** 2
        page = rng.uniform(200, 245) * (1 - rng.uniform(0.3, 0.55) * distance / distance.max())
        page += rng.normal(0, 3, (size, size))
        digit = np.asarray(Image.fromarray(mnist_test.images[600 + i]).resize((side, side), Image.BICUBIC),
                           np.float32) / 255
        top, left = (size - side) // 2 + rng.integers(-size // 10, size // 10 + 1, 2)
        page[top : top + side, left : left + side] *= 1 - digit * rng.uniform(0.6, 0.9)
        pages.append(page)
    frame = read_pages(tmp_path, pages)
    assert (frame["status"] == "ok").mean() >= 0.97
    assert (frame["pred"].to_numpy() == mnist_test.labels[600 : 600 + count]).mean() >= 0.95


def test_a_box_drawn_along_the_edges_is_not_light_falling_off():
    """An empty box on the page's edge darkens the corners' patches (two lines each) more than the
    edges' midpoints (one): a pool of light's levels. Levelled as light, 7 of 300 of the form-field
    generator's boxes became digits. A patch that holds a line is not one even level: of 400 grey
    frames 4-6% of the side wide, 117 were levelled without that test in a scratch run, and 28 of
    these while it only asked that half of each patch be even; now none is."""
    rng = np.random.default_rng(24)
    statuses = {records.digit_of(synthetic.form_field(None, rng, float(rng.uniform(-5, 5)), int(rng.integers(0, 4)),
                                                      int(rng.integers(1, 5)), "box")).status for _ in range(300)}
    assert statuses == {records.NOT_DIGIT}
    levelled = 0
    for _ in range(400):
        side, paper = int(rng.integers(48, 300)), rng.uniform(200, 245)
        width = max(1, round(side * rng.uniform(0.037, 0.062)))
        page = np.full((side, side), paper)
        page[:width] = page[-width:] = page[:, :width] = page[:, -width:] = paper - rng.uniform(25, 128)
        frame = Image.fromarray((page + rng.normal(0, 3, page.shape)).clip(0, 255).astype(np.uint8))
        pixels = np.asarray(frame.rotate(float(rng.uniform(-1.5, 1.5)), Image.BICUBIC, fillcolor=int(paper)))
        levelled += not np.array_equal(digitize.even_light(pixels), pixels)
    assert levelled == 0


def test_marks_fainter_than_writing_stay_blank(mnist_test):
    """A digit showing through from the back of the page (mirrored, blurred) stands 22-34 grey
    levels from the paper, as faint writing or an erased pencil digit does: under MIN_CONTRAST, 90 or
    more of 100 are `blank` (grain lifts the rest over it), which a user can review, not a confident
    digit. (Reading faint ink that is drawn like strokes was tried: faint writing 59% -> 96%, but 95
    of 100 erased digits and 59 of 100 digits showing through were then read as digits, and only 2
    of these 100 stayed blank; docs/networks.md.)"""
    from PIL import ImageFilter

    rng, statuses = np.random.default_rng(28), []
    for digit in mnist_test.images[800:900]:
        side = int(rng.integers(60, 240))
        size = int(side * rng.uniform(0.3, 0.8))
        mark = Image.fromarray(digit[:, ::-1]).resize((size, size), Image.BICUBIC).filter(
            ImageFilter.GaussianBlur(rng.uniform(0, 2)))
        page = rng.uniform(170, 245) + rng.normal(0, rng.uniform(1, 3), (side, side))
        top, left = rng.integers(0, side - size + 1, 2)
        page[top : top + size, left : left + size] -= rng.uniform(22, 34) * np.asarray(mark, np.float32) / 255
        statuses.append(records.digit_of(Image.fromarray(page.clip(0, 255).astype(np.uint8))).status)
    assert statuses.count(records.BLANK) >= 90


def test_a_dithered_1_bit_scan_is_read_as_its_grey_original(tmp_path, mnist_test):
    """A 1-bit scanner prints the paper's grey as scattered dots: every dot was ink, and 31 of 100
    such digits were read as the grey pages are. Smoothed back to grey, they read alike; the same
    pages without a digit are far fewer digits to preprocessing (56 of 100 before), and a page
    thresholded to 1 bit, or a small 1-bit digit, is left as it is."""
    import mnist_batch

    rng = np.random.default_rng(29)
    grey, empty = [], []
    for digit in mnist_test.images[900:1000]:
        side = int(rng.integers(80, 400))
        size = int(side * rng.uniform(0.3, 0.8))
        ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.BICUBIC), np.float32) / 255
        paper = rng.uniform(170, 240) + rng.normal(0, rng.uniform(2, 8), (side, side))
        page = paper.copy()
        top, left = rng.integers(0, side - size + 1, 2)
        page[top : top + size, left : left + size] *= 1 - ink * rng.uniform(0.6, 0.95)
        grey.append(Image.fromarray(page.clip(0, 255).astype(np.uint8)))
        empty.append(Image.fromarray(paper.clip(0, 255).astype(np.uint8)).convert("1"))
    paths = []
    for i, page in enumerate(grey):
        paths.append(tmp_path / f"{i:03d}.png")
        page.convert("1").save(paths[-1])  # Floyd-Steinberg dots, a 1-bit PNG
    classifier = mnist_batch.Classifier(device="cpu")
    dots, original = classifier.predict([str(path) for path in paths]), classifier.predict(grey)
    assert (dots["pred"].fill_null(-1) == original["pred"]).mean() >= 0.9
    assert [records.digit_of(page.convert("L")).status for page in empty].count(records.OK) <= 25
    thresholded = grey[0].point(lambda level: 255 if level > 128 else 0)
    assert not digitize.dithered(np.asarray(thresholded))
    small = Image.fromarray(mnist_test.images[0]).resize((16, 16)).point(lambda level: 0 if level > 128 else 255)
    assert not digitize.dithered(np.asarray(small))  # a small 1-bit digit: more strokes than texture


def test_a_fine_pen_on_a_large_dithered_page_is_not_smoothed_away():
    """A 3 px pen on a 1,000 px 1-bit page: reduced 8 times, the stroke is under a pixel wide, and
    a halftone's blur after the reduction took it below MIN_CONTRAST (all `blank`). The reduction's
    box average has smoothed the dots already."""
    from PIL import ImageDraw

    import mnist_batch

    rng, pages, expected = np.random.default_rng(30), [], []
    for i in range(9):
        page = Image.fromarray((rng.uniform(170, 230) + rng.normal(0, 4, (1000, 1000))).clip(0, 255).astype(np.uint8))
        draw, (x, y) = ImageDraw.Draw(page), rng.integers(250, 450, 2)
        if i % 3 == 0:  # a written 0: no perfect ellipse (that is a round field's printed ring), its ends overlapping
            turn = np.linspace(0, 2 * np.pi + 0.4, 120)
            wobble = 1 + 0.05 * np.sin(2 * turn + rng.uniform(0, 6)) + 0.03 * np.sin(3 * turn)
            loop = np.column_stack([x + 110 + 110 * wobble * np.sin(turn), y + 170 - 170 * wobble * np.cos(turn)])
            draw.line([tuple(point) for point in loop], fill=30, width=3, joint="curve")
        elif i % 3 == 1:
            draw.line((x + 110, y, x + 100, y + 340), fill=30, width=3)
        else:
            draw.line((x, y, x + 230, y, x + 90, y + 340), fill=30, width=3)
        pages.append(page.convert("1").convert("L"))
        expected.append((0, 1, 7)[i % 3])
    read = mnist_batch.Classifier(device="cpu").predict(pages)
    assert (read["pred"].fill_null(-1).to_numpy() == expected).sum() >= 8


def shadowed_pages(rng, digits, field: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each digit (or None) in a form field or on a plain page, with and without a shadow cast across."""
    plain = [synthetic.form_field(digit, rng, *synthetic.field_geometry(rng, synthetic.FRAMES[i % 4])) if field
             else synthetic.ruled_page(digit, rng, False, lines=False) for i, digit in enumerate(digits)]
    return [np.asarray(synthetic.in_shadow(page, rng), np.float32) for page in plain], \
        [np.asarray(page, np.float32) for page in plain]


def test_a_page_partly_in_shadow_is_read_as_without_the_shadow(tmp_path, mnist_test):
    """A hand's or a phone's shadow across a form field or a page, its edge hard or soft: the
    shaded paper was taken for ink, and half the digits were read wrong (51% read as on the same
    page without the shadow, before shadow_lifted)."""
    rng = np.random.default_rng(26)
    pages, twins = [], []
    for field in (True, False):
        shadowed, plain = shadowed_pages(rng, mnist_test.images[700:740], field)
        pages += shadowed
        twins += plain
    (tmp_path / "shadow").mkdir()
    (tmp_path / "plain").mkdir()
    read, expected = read_pages(tmp_path / "shadow", pages), read_pages(tmp_path / "plain", twins)
    assert (read["pred"].fill_null(-1) == expected["pred"]).mean() >= 0.9


def test_an_empty_page_or_field_in_shadow_is_no_digit():
    """A shadow's edge across an empty page was ink to preprocessing (95 of 100 were a digit to it,
    and 60 of 100 empty fields; 3 and 7 are now); lifted, the page is blank and the field only
    printed lines. (What is left is mostly a sliver of shade where the shadow's edge meets the
    image's at a slant.)"""
    rng = np.random.default_rng(27)
    for field, most_left in ((False, 5), (True, 8)):
        pages, _ = shadowed_pages(rng, [None] * 100, field)
        statuses = [records.digit_of(Image.fromarray(page.astype(np.uint8))).status for page in pages]
        assert statuses.count(records.OK) <= most_left


def test_rings_and_frames_on_the_edges_are_not_a_pool_of_light(tmp_path, mnist_test):
    """Corners of one level and edge midpoints of another fit a pool of light exactly when only
    those eight patches are measured: a thick grey 0 cropped to its ink (its strokes fill the
    midpoints' patches; 47 of 300 became blank) and a digit in a grey frame printed along the crop's
    edge (the lines fill the corners' patches; 3 of 100 read right). The quarter points between
    them fall off such a surface, so these are left unlevelled and read as before."""
    from PIL import ImageFilter

    rng = np.random.default_rng(25)
    zeros = mnist_test.images[mnist_test.labels == 0][:40]
    pages = []
    for digit in zeros:
        rows, cols = np.flatnonzero(digit.max(axis=1) > 40), np.flatnonzero(digit.max(axis=0) > 40)
        crop = Image.fromarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        ink = np.asarray(crop.resize((crop.width * 4, crop.height * 4), Image.BICUBIC).filter(ImageFilter.MaxFilter(5)),
                         np.float32) / 255
        pages.append(235 - 95 * ink + rng.normal(0, 3, ink.shape))
    for digit in mnist_test.images[:40]:
        page = np.full((100, 100), 230.0)
        page[:4] = page[-4:] = page[:, :4] = page[:, -4:] = 130  # a grey frame, 4 px, on the edges
        ink = np.asarray(Image.fromarray(digit).resize((50, 50), Image.BICUBIC), np.float32) / 255
        page[25:75, 25:75] = page[25:75, 25:75] * (1 - ink) + 40 * ink
        pages.append(page + rng.normal(0, 3, page.shape))
    frame = read_pages(tmp_path, pages)
    expected = np.concatenate([np.zeros(40, np.int64), mnist_test.labels[:40]])
    assert (frame["pred"].fill_null(-1).to_numpy() == expected).mean() >= 0.95


@pytest.mark.parametrize("ink, paper", [(110, 65), (-110, 195)])
def test_a_digit_running_into_a_corner_of_a_flecked_page_is_the_ink(tmp_path, mnist_test, ink, paper):
    """A digit cropped to its box at a corner of a grainy page, with a few flecks of the other shade
    about: where a corner was as far from the paper as ink, what joined it was left out of the count
    of each side (a shadow's share), here the digit itself, and the flecks chose the ink's side
    (87% read right); leaving out a corner's pieces only where enough is left away from the corners: 99%."""
    rng = np.random.default_rng(4)
    count, pages = 150, []
    for i in range(count):
        side, size = int(rng.integers(30, 50)), int(rng.integers(90, 140))
        page = paper + rng.uniform(-25, 25) + rng.normal(0, rng.uniform(4, 8), (size, size))
        digit = np.asarray(Image.fromarray(mnist_test.images[i]).resize((side, side), Image.BICUBIC), np.float32) / 255
        rows, cols = np.flatnonzero(digit.max(axis=1) > 0.5), np.flatnonzero(digit.max(axis=0) > 0.5)
        digit = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        (height, width), (low, right) = digit.shape, rng.integers(0, 2, 2)
        top, left = (size - height) * low, (size - width) * right
        page[top : top + height, left : left + width] += digit * ink * rng.uniform(0.8, 1.2)
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(size // 4, 3 * size // 4, 2)
            page[y : y + 2, x : x + 2] -= np.sign(ink) * rng.uniform(40, 70)
        pages.append(page)
    frame = read_pages(tmp_path, pages)
    assert (frame["pred"].to_numpy() == mnist_test.labels[:count]).mean() >= 0.95


def test_scanned_training_digits_keep_their_labels_and_leave_out_lit_squares(mnist_test):
    """train --scanned: MNIST digits rendered as scans and preprocessed as classify does. What
    preprocessing gives back is the digit (the bundled network reads most of them as labelled), and
    none of them is the page taken for ink (a lit square would teach a digit's label for it)."""
    import mnist_batch
    from mnist_batch import synthetic

    digits, labels = synthetic.scanned_digit_bank(300, mnist_test.images, mnist_test.labels, seed=3)
    assert 250 <= len(digits) <= 300 and len(labels) == len(digits) and set(labels.tolist()) == set(range(10))
    assert ((digits > 64).mean(axis=(1, 2)) <= synthetic.MAX_LIT_SHARE).all()
    probs, _ = mnist_batch.Classifier(device="cpu").inference.scores(digits, [True] * len(digits))
    assert (probs.argmax(axis=1) == labels).mean() >= 0.85


def test_training_with_scanned_digits_records_their_share(cli, tmp_path, mnist_dir):
    result = cli("train", "--arch", "smallbn", "--scanned", "0.2", "--dry-run", "--threads", "1", "--device", "cpu",
                 "--data-dir", mnist_dir, "--out", tmp_path / "t", "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["hyperparameters"]["scanned"] == 0.2
    one_line_error(cli("train", "--scanned", "1", "--out", tmp_path / "u"), "--scanned 1", "below 1")


def marker_pen(digit: np.ndarray, margin: int, widened: int = 3, scale: int = 3) -> np.ndarray:
    """A digit in a marker pen, cropped to its ink with `margin` px: upscaled `scale` times, strokes
    widened by `widened` px on each side (3 at scale 3: a quarter of the digit's width), light on dark."""
    from PIL import ImageFilter

    ink = np.asarray(Image.fromarray(upscale(tight_crop(digit), scale)).filter(ImageFilter.MaxFilter(2 * widened + 1)))
    return np.pad(tight_crop(ink), margin)


def read_labelled(cli, tmp_path, images: list[np.ndarray], labels) -> pl.DataFrame:
    """`images` written as PNGs in folders named by their labels and classified by the CLI: its rows,
    with a `label` column."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = tmp_path / "digits" / str(label) / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    result = cli("classify", tmp_path / "digits", "--out", tmp_path / "out.csv", "--quiet")
    assert result.exit_code == 0, result.stderr
    rows = pl.read_csv(tmp_path / "out.csv")
    return rows.with_columns(label=pl.col("path").map_elements(lambda p: int(p.split("/")[-2]), return_dtype=pl.Int64))


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_thick_pen_digits_cropped_to_their_ink_are_digits(cli, tmp_path, mnist_test, dark_on_light):
    """A thick pen's ink holds most of a tight crop and of its edge: the paper shows only in its
    corners and between the strokes. Read with the polarity the wrong way round, these were
    frames of paper around blots, and a third of them came out not_digit."""
    count = 100
    inks = [marker_pen(mnist_test.images[i], margin=i % 3) for i in range(count)]
    pages = [255 - ink if dark_on_light else ink for ink in inks]
    rows = read_labelled(cli, tmp_path, pages, mnist_test.labels[:count])
    assert (rows["status"] == "not_digit").sum() <= 2, rows["status"].value_counts()
    assert (rows["pred"] == rows["label"]).mean() >= 0.93


def test_a_thick_light_digit_in_a_thin_dark_margin_is_not_a_frame_around_paper(cli, tmp_path, mnist_test):
    """A light marker digit cropped with 1-2 px of dark paper around it: the dark rings the whole
    edge, and the light holds most of the crop, as the paper inside an empty box does. Taken for
    that, the ink was the paper and the margin a frame (7 of these 100 not_digit, 91% read right;
    5 and 93% now).
    Where the other tests leave it to the share, what the ring holds decides: here its paper shows
    between the strokes, well inside the ring."""
    count = 100
    inks = [marker_pen(mnist_test.images[i], margin=1 + i % 2, widened=4) for i in range(count)]
    rows = read_labelled(cli, tmp_path, inks, mnist_test.labels[:count])
    assert (rows["status"] == "not_digit").sum() <= 6, rows["status"].value_counts()
    assert (rows["pred"] == rows["label"]).mean() >= 0.92, rows["status"].value_counts()


def test_a_marker_digit_whose_paper_is_a_close_call_is_read_both_ways_round(cli, tmp_path, mnist_test):
    """The thickest marker (strokes widened by 4 px at two or three times the size) leaves so little
    paper in a tight crop that its corners split, or a thin margin rings a solid 1: which side is the
    paper is a close call. The image is read the other way round too, and where the first reading is
    doubtful the network's likelier one is kept. Of these 200, 20 were not_digit and 161 read right;
    10 and 172 with both readings; 9 and 179 with strokes this thick also narrowed (below). (Two solid
    1s, cropped with no paper at all, are blank.)"""
    count = 200
    inks = [marker_pen(mnist_test.images[i], margin=i % 3, widened=4, scale=2 + i // 2 % 2) for i in range(count)]
    pages = [255 - ink if i % 2 else ink for i, ink in enumerate(inks)]
    rows = read_labelled(cli, tmp_path, pages, mnist_test.labels[:count])
    assert (rows["status"] == "not_digit").sum() <= 13, rows["status"].value_counts()
    assert (rows["pred"] == rows["label"]).sum() >= 167, rows["status"].value_counts()


def test_fine_tuning_learns_from_the_reading_classify_keeps(tmp_path, mnist_test):
    """train --extra --from (and adapt, through the same results.as_classify_reads) learns from each
    close call's digit as classify reads it: a marker's ink, not its paper taken for ink. Scored
    alone, those digits give classify's digit scores row for row."""
    from mnist_batch import Classifier, results
    from mnist_batch.model import Inference

    count = 100
    paths = []
    for i in range(count):
        ink = marker_pen(mnist_test.images[i], margin=i % 3, widened=4, scale=2 + i // 2 % 2)
        paths.append(str(tmp_path / f"{i:03d}.png"))
        Image.fromarray(255 - ink if i % 2 else ink).save(paths[-1])
    first = records.preprocess_chunk(paths)
    inference = Inference("smallbn")
    chosen = results.as_classify_reads(first, inference)
    assert len(first.other_way_rows) >= 20 and not len(chosen.other_way_rows)
    taken_other_way = (chosen.digits != first.digits).any(axis=(1, 2))
    assert taken_other_way.sum() >= 3, taken_other_way.sum()  # 4 of these 100
    _, score = inference.scores(chosen.digits, chosen.ok)
    rows = Classifier().predict(paths)
    read = (rows["status"] != "blank").to_numpy()
    # A marker's blot that preprocessing finds no digit in (1 of these 100) is not_digit, scored 0.
    no_digit = read & ~first.ok
    assert no_digit.sum() <= 2 and (rows["digit_score"].to_numpy()[no_digit] == 0).all()
    read &= first.ok
    assert np.array_equal(read, chosen.ok)
    assert np.allclose(score[read], rows["digit_score"].to_numpy()[read], atol=1e-5)

    # train --extra --from smallbn trains on those digits (its holdout share set to nothing here)
    from mnist_batch import train

    labels_file = tmp_path / "labels.csv"
    pl.DataFrame({"path": paths, "label": mnist_test.labels[:count].astype(str)}).write_csv(labels_file)
    extra = train.load_extra(train.TrainOptions(extra=(labels_file,), base="smallbn", holdout=0.0, device="cpu"))
    assert len(extra.train_x) == chosen.ok.sum()
    assert {digit.tobytes() for digit in extra.train_x} == {digit.tobytes() for digit in chosen.digits}


def test_a_marker_digit_far_thicker_than_mnists_is_narrowed(cli, tmp_path, mnist_test):
    """Strokes widened by 5 px at twice the size, on paper with a margin: fitted into 20x20, the
    strokes are 6-8 px wide and the holes closed, a blot to the network. Narrowed to a thick pen's
    width, 118 of these 200 are read right and 60 are not_digit (93 and 79 unnarrowed); 16 fill their
    box and are a solid block either way. The network before the one bundled, trained without light
    blots and hatching (blocks at 28x28) among its non-digits, read 126 right and rejected 51."""
    count = 200
    pages = [255 - np.pad(marker_pen(mnist_test.images[i], margin=0, widened=5, scale=2), 6) for i in range(count)]
    rows = read_labelled(cli, tmp_path, pages, mnist_test.labels[:count])
    assert (rows["pred"] == rows["label"]).sum() >= 110, rows["status"].value_counts()
    assert (rows["status"] == "not_digit").sum() <= 65, rows["status"].value_counts()


# Strokes in a unit box (x right, y down), each a polyline or an ellipse's arc (centre, radii, from and
# to in degrees), drawn "thick" or "thin".
BRUSH_DIGITS = {
    9: [("arc", (0.5, 0.3, 0.45, 0.3, 0, 360), "thick"), ("line", [(0.93, 0.32), (0.35, 1.0)], "thin")],
    5: [("line", [(0.2, 0.0), (0.95, 0.0)], "thin"), ("line", [(0.2, 0.0), (0.15, 0.45)], "thick"),
        ("arc", (0.45, 0.7, 0.45, 0.3, -150, 150), "thick")],
    2: [("arc", (0.5, 0.3, 0.45, 0.3, 180, 380), "thick"), ("line", [(0.93, 0.38), (0.0, 1.0)], "thick"),
        ("line", [(0.0, 1.0), (1.0, 1.0)], "thin")],
}


def brush_digit(label: int, height: int, thick: float, thin: float) -> np.ndarray:
    """A digit drawn with a brush, light on dark: its strokes `thick` px wide, but one `thin` px wide."""
    width, margin = int(0.75 * height), int(thick)
    page = Image.new("L", (width + 2 * margin, height + 2 * margin), 0)
    draw = ImageDraw.Draw(page)
    for kind, shape, pen in BRUSH_DIGITS[label]:
        if kind == "line":
            points = np.concatenate([np.linspace(a, b, 100) for a, b in itertools.pairwise(shape)])
        else:
            x, y, across, down, start, end = shape
            angles = np.radians(np.linspace(start, end, 200))
            points = np.column_stack([x + across * np.cos(angles), y + down * np.sin(angles)])
        radius = (thick if pen == "thick" else thin) / 2
        for x, y in points * [width, height] + margin:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return np.asarray(page)


def test_a_brush_digits_thin_stroke_is_not_narrowed_away(cli, tmp_path):
    """A brush's strokes are thick but for one (a 9's tail, a 5's top bar, a 2's base): the mean width
    is a marker's, and narrowing to it erased the thin stroke (a 9 with no tail is a 0). 52 of these
    60 were read right so; the narrowing is now undone where the digit, widened back, lacks a part,
    and all 60 are, as without narrowing."""
    rng = np.random.default_rng(8)
    labels = [(9, 5, 2)[i % 3] for i in range(60)]
    pages = []
    for i, label in enumerate(labels):
        height = int(rng.integers(60, 160))
        ink = brush_digit(label, height, height * rng.uniform(0.3, 0.45), max(2.0, height * rng.uniform(0.05, 0.1)))
        pages.append(255 - ink if i // 3 % 2 else ink)
    rows = read_labelled(cli, tmp_path, pages, labels)
    assert (rows["pred"] == rows["label"]).sum() >= 58, rows.filter(pl.col("pred") != pl.col("label"))


@pytest.mark.parametrize("arch, parameters", [("lenet", 60_074), ("smallbn", 98_938)])
def test_each_network_trains_saves_loads_and_classifies(cli, tmp_path, mnist_test, trained_with_writers, arch,
                                                        parameters):
    trained, out, evaluation = trained_with_writers(arch)  # shared with test_foundation.py
    assert trained.exit_code == 0, trained.stderr
    checkpoint = out / f"{arch}.safetensors"
    meta = metadata_of(checkpoint)
    assert meta["architecture"] == arch and meta["parameters"] == parameters
    assert meta["hyperparameters"]["augment_writers"] is True
    assert evaluation.exit_code == 0, evaluation.stderr
    evaluated = json.loads(evaluation.stdout)
    assert evaluated["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-4)
    Image.fromarray(mnist_test.images[0]).save(tmp_path / "a.png")
    result = cli("classify", tmp_path / "a.png", "--out", tmp_path / f"{arch}.csv", "--checkpoint", checkpoint,
                 "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] == 1


def test_from_a_checkpoint_of_another_network_refuses_a_different_arch(cli, tmp_path, mnist_dir):
    result = cli("train", "--from", "lenet", "--arch", "smallbn", "--dry-run", "--data-dir", mnist_dir,
                 "--out", tmp_path / "t")
    assert result.exit_code == 2 and "lenet checkpoint" in result.stderr


@pytest.mark.parametrize("images", [np.zeros((8, 28, 28), np.uint8), np.full((8, 28, 28), 255, np.uint8)])
def test_writer_augmentation_keeps_shape_type_and_range(images):
    from mnist_batch.augment import make_augment

    torch.manual_seed(0)
    digits = torch.from_numpy(images.copy())
    digits[:, 10:18, 12:16] = 200
    augmented = make_augment()(digits)
    assert augmented.shape == digits.shape and augmented.dtype == torch.uint8
    assert not torch.equal(augmented, digits)  # something moved, thickened or blurred


@pytest.mark.parametrize("pen, widened", [(1, True), (4, True), (9, True), (25, False), (35, False)])
def test_fine_pen_strokes_are_widened_to_mnists_width(pen, widened):
    """An L drawn with a pen `pen` pixels wide in a 200-pixel box: fine pens come out of the
    20x20 fit with about MNIST's stroke width (2.2-3.5 px); broad ones are left as they are."""
    from mnist_batch.digitize import stroke_width, strokes_as_mnists

    crop = np.zeros((200, 120), np.float32)
    crop[:, :pen] = 255
    crop[-pen:, :] = 255
    thickened = strokes_as_mnists(crop)
    assert (thickened is crop) != widened
    width_in_box = stroke_width(thickened > 0) * 20 / 200
    assert 2.0 <= width_in_box <= 3.5 if widened else width_in_box == stroke_width(crop > 0) * 20 / 200


@pytest.mark.parametrize("specks", [[(2, 2)], [(2, 2), (150, 3)], [(3, 150), (150, 150), (80, 2)]])
def test_dust_specks_away_from_the_digit_do_not_change_it(mnist_test, specks):
    """A scanned digit with dust or dirt in the margins comes out as it does from a clean page."""
    for index in range(20):
        page = on_paper(upscale(mnist_test.images[index], 4), paper=235, pen=20)
        page = np.pad(page, 20, constant_values=235)  # a wide margin, as a form field has
        dusty = page.copy()
        for y, x in specks:
            dusty[y : y + 4, x : x + 4] = 40
        clean_digit = digitize.preprocess(Image.fromarray(page))
        assert np.array_equal(digitize.preprocess(Image.fromarray(dusty)), clean_digit), index


@pytest.mark.parametrize("side, margin, line", [(84, 0, 2), (84, 6, 1), (200, 10, 4), (24, 2, 1)])
def test_a_digit_in_a_printed_box_is_read(mnist_test, side, margin, line):
    """A form field's box around the digit (dark lines at the edge of the crop) is neither taken
    for the background nor for the digit; 28x28 included (side 24 + 2 x 2 margin)."""
    import mnist_batch

    boxed = []
    for index in range(40):
        page = on_paper(upscale(mnist_test.images[index], max(1, side // 28)), paper=235, pen=20)
        page = np.asarray(Image.fromarray(page).resize((side, side)))
        page = np.pad(page, margin, constant_values=235)
        page[:line, :] = page[-line:, :] = page[:, :line] = page[:, -line:] = 20
        boxed.append(page)
    frame = mnist_batch.Classifier(device="cpu").predict(boxed)
    assert (frame["pred"].to_numpy() == mnist_test.labels[:40]).mean() >= 0.9
