"""Rows a user can trust: inputs that are not one handwritten digit get status not_digit, real
digits almost never do, and the threshold is the user's to set and is recorded."""

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_batch import results, run_files, synthetic
from tests.conftest import write_pngs


def write_non_digits(folder, kinds, count, mnist_test, seed=5):
    """Non-digits drawn with fonts training never uses, saved as PNG files folder/KIND/NNN.png."""
    rng = np.random.default_rng(seed)
    for kind in kinds:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            synthetic.non_digit(rng, kind, mnist_test.images[5000:], mnist_test.labels[5000:],
                                synthetic.HELD_OUT_FONTS).save(
                folder / kind / f"{i:03d}.png")


def classified(cli, folder, out, *options):
    result = cli("classify", folder, "--out", out, "--quiet", *options)
    assert result.exit_code == 0, result.stderr
    return pl.read_parquet(out).with_columns(kind=pl.col("path").str.split("/").list.get(-2))


@pytest.mark.timeout(240)
def test_empty_boxes_letters_and_pairs_are_not_digits(cli, tmp_path, mnist_test):
    """60 of each: with 30, the share of letters moved by 13 points from one seed to the next, for
    this network and the one before alike (a printed j or t is still read as a 1 now and then). The
    network reads these letters at 95% and pairs at 93%."""
    write_non_digits(tmp_path / "in", ["empty_box", "letter", "pair"], 60, mnist_test)
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet")
    rejected = frame.group_by("kind").agg((pl.col("status") == "not_digit").mean().alias("share"))
    shares = dict(rejected.iter_rows())
    assert shares["empty_box"] == 1.0, shares  # an empty form field is never a digit
    assert shares["letter"] >= 0.9 and shares["pair"] >= 0.9, shares
    not_digit = frame.filter(pl.col("status") == "not_digit")
    assert not_digit["pred"].null_count() == not_digit.height  # no digit is claimed for them
    assert (not_digit["digit_score"] < 0.25).all() and not_digit["error"].str.contains("digit").all()
    assert (frame["min_digit_score"] == 0.25).all()


@pytest.mark.timeout(240)
def test_signs_halves_of_digits_and_noise_are_not_digits(cli, tmp_path, mnist_test):
    """Before the network was trained with them, a "+" or "#" read as 4 and the top half of a 0 as
    a confident digit: 32% of halves, 49% of signs and 87% of noise crops were rejected."""
    write_non_digits(tmp_path / "in", ["half", "symbol", "noise"], 30, mnist_test)
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet")
    rejected = frame.group_by("kind").agg(pl.col("status").is_in(["not_digit", "blank"]).mean().alias("share"))
    shares = dict(rejected.iter_rows())
    assert min(shares.values()) >= 0.6 and sum(shares.values()) / 3 >= 0.8, shares


@pytest.mark.timeout(240)
def test_scratch_outs_crossed_out_digits_stamps_and_scribbles_are_not_digits(cli, tmp_path, mnist_test):
    """Before the network was trained with the first three, a round stamp read as a 0 (25% of
    stamps rejected) and a scratch-out as a 1 or a 4."""
    write_non_digits(tmp_path / "in", ["scratch_out", "crossed_out", "stamp", "scribble"], 30, mnist_test)
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet")
    rejected = frame.group_by("kind").agg((pl.col("status") == "not_digit").mean().alias("share"))
    shares = dict(rejected.iter_rows())
    assert min(shares.values()) >= 0.6 and sum(shares.values()) / 4 >= 0.85, shares


@pytest.mark.timeout(240)
def test_handwritten_letters_drawn_shapes_hatching_and_light_blots_are_not_digits(cli, tmp_path, mnist_test):
    """Before the network was trained with them (pen-stroke letters, triangles, stars and arrows,
    hatching, blots in light or uneven ink), a hand's J read as a 5, an arrow as a 1 and a
    grey smudge as a 4: of these 30 of each, 80%, 70%, 83% and 83% were rejected (now 100%, 93%,
    100% and 90%)."""
    write_non_digits(tmp_path / "in", ["hand_letter", "shape", "hatching", "blot"], 30, mnist_test)
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet")
    rejected = frame.group_by("kind").agg(pl.col("status").is_in(["not_digit", "blank"]).mean().alias("share"))
    shares = dict(rejected.iter_rows())
    assert min(shares.values()) >= 0.8 and sum(shares.values()) / 4 >= 0.9, shares


def test_the_paper_between_a_marker_letters_legs_is_not_read_as_a_digit(cli, tmp_path):
    """A bold letter cropped to its ink is half ink: which side is the paper is a close call, and the
    image is read both ways round. The other reading of an n, u, h, H, U, N or M is the paper between
    its legs, a sliver that reads as a confident 1; it is taken only where its ink spans the image,
    as a tight crop's does. Without that, 24 of these 96 were digits; the first reading alone gives
    14 (D's read as 0, and two 7s)."""
    font = ImageFont.truetype(synthetic.font_path("DejaVuSans-Bold"), 60)
    for i in range(96):
        page = Image.new("L", (100, 100), 0)
        ImageDraw.Draw(page).text((50, 50), "nuhHUNMD"[i % 8], fill=255, font=font, anchor="mm")
        ink = np.asarray(page.filter(ImageFilter.MaxFilter(2 * (i // 8 % 3) + 1)))  # a pen 1, 3 or 5 px wider
        rows, cols = np.flatnonzero(ink.max(axis=1) > 40), np.flatnonzero(ink.max(axis=0) > 40)
        ink = np.pad(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], i // 24 % 2)  # margin 0 or 1 px
        Image.fromarray(255 - ink if i % 2 else ink).save(tmp_path / f"{i:02d}.png")
    frame = classified(cli, tmp_path, tmp_path / "o.parquet")
    assert (frame["status"] == "ok").sum() <= 16, frame.filter(pl.col("status") == "ok")["pred"].to_list()
    assert (frame["pred"] == 1).sum() == 0


@pytest.mark.timeout(240)
def test_mnist_digits_are_almost_never_rejected(cli, tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:1000], mnist_test.labels[:1000])
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet")
    assert (frame["status"] == "not_digit").mean() <= 0.01
    ok = frame.filter(pl.col("status") == "ok")
    assert (ok["pred"].cast(pl.Int64) == ok["kind"].cast(pl.Int64)).mean() >= 0.99
    assert ok["digit_score"].min() >= 0.25


def with_a_gap(digit: np.ndarray, rng) -> np.ndarray:
    """An MNIST digit with one thin gap across its strokes, where the ink fades: a skipping pen."""
    rows, cols = np.mgrid[:28, :28]
    angle, (row, col), half_width = rng.uniform(0, np.pi), rng.uniform(8, 20, 2), rng.uniform(0.7, 1.5)
    across = np.abs((rows - row) * np.cos(angle) - (cols - col) * np.sin(angle)) < half_width
    faded = digit * np.where(across, rng.uniform(0, 0.3), 1.0) * rng.uniform(0.5, 1.0)
    return faded.astype(np.uint8)


@pytest.mark.timeout(240)
def test_a_digit_whose_pen_skipped_is_still_a_digit(cli, tmp_path, mnist_test):
    """Training with halves of digits as non-digits made a digit with a break in a stroke look like
    one: 4.0% of these were not_digit (about 2% before the halves), until training drew such gaps."""
    rng = np.random.default_rng(8)
    pages = [np.asarray(synthetic.on_paper(with_a_gap(digit, rng), rng)) for digit in mnist_test.images[8000:8300]]
    write_pngs(tmp_path / "in", pages, mnist_test.labels[8000:8300])
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet")
    assert (frame["status"] == "not_digit").mean() <= 0.03
    assert (frame["pred"].cast(pl.Int64) == frame["kind"].cast(pl.Int64)).mean() >= 0.9


@pytest.mark.timeout(240)
def test_the_threshold_is_the_users_and_is_recorded(cli, tmp_path, mnist_test):
    write_non_digits(tmp_path / "in", ["letter"], 20, mnist_test)
    strict = classified(cli, tmp_path / "in", tmp_path / "strict.parquet", "--min-digit-score", "0.99")
    none = classified(cli, tmp_path / "in", tmp_path / "none.parquet", "--min-digit-score", "0")
    assert (none["status"] == "ok").all() and (none["min_digit_score"] == 0).all()
    assert (strict["status"] == "not_digit").sum() >= (none["digit_score"] < 0.99).sum()
    assert strict["min_digit_score"].to_list() == pytest.approx([0.99] * strict.height)
    # the scores do not depend on the threshold
    assert strict["digit_score"].to_list() == pytest.approx(none["digit_score"].to_list())
    bad = tmp_path / "bad.parquet"
    result = cli("classify", tmp_path / "in", "--out", bad, "--min-digit-score", "1.5")
    assert result.exit_code == 2 and "--min-digit-score" in result.stderr and not bad.exists()


@pytest.mark.timeout(240)
def test_lenet_has_no_digit_score_but_an_empty_field_is_still_no_digit(cli, tmp_path, mnist_test):
    write_non_digits(tmp_path / "in", ["empty_box"], 10, mnist_test)
    write_pngs(tmp_path / "in", mnist_test.images[:10], mnist_test.labels[:10])
    frame = classified(cli, tmp_path / "in", tmp_path / "o.parquet", "--checkpoint", "lenet")
    digits = frame.filter(pl.col("kind") != "empty_box")
    assert (digits["status"] == "ok").all() and digits["digit_score"].null_count() == digits.height
    fields = frame.filter(pl.col("kind") == "empty_box")
    # Lines alone are found by the preprocessing, whatever the network: most empty fields.
    assert (fields["status"] == "not_digit").sum() >= 5
    assert (fields.filter(pl.col("status") == "not_digit")["digit_score"] == 0).all()


@pytest.mark.timeout(240)
def test_a_blank_grainy_page_is_blank_not_a_digit(cli, tmp_path):
    """A scan of an empty page: grain with a standard deviation of 8-14 grey levels, saved as JPEG.
    Its own noise peaks stood 40 levels from the paper and were taken for ink: 31% were blank,
    the rest were digits to lenet (which has no digit score). Now ink must stand out from the
    grain measured between neighbouring pixels."""
    import io

    folder = tmp_path / "blank"
    folder.mkdir()
    rng = np.random.default_rng(21)
    for i in range(60):
        size = int(rng.integers(60, 200))
        page = rng.uniform(30, 240) + rng.normal(0, rng.uniform(8, 14), (size, size))
        buffer = io.BytesIO()
        Image.fromarray(page.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
        (folder / f"{i:03d}.jpg").write_bytes(buffer.getvalue())
    rows = classified(cli, folder, tmp_path / "blank.parquet", "--checkpoint", "lenet")
    assert (rows["status"] == "blank").mean() >= 0.85


def test_an_out_dir_of_schema_1_files_stays_usable(cli, tmp_path, mnist_test):
    """Cron users' folders are full of version-1 files: --incremental reads them, report too."""
    folder, out_dir = tmp_path / "in", tmp_path / "results"
    write_pngs(folder, mnist_test.images[:6], mnist_test.labels[:6])
    assert cli("classify", folder, "--out-dir", out_dir, "--quiet").exit_code == 0
    [first] = run_files.result_files(out_dir)
    old = pl.read_parquet(first).drop("digit_score", "min_digit_score")
    old.write_parquet(first, metadata={results.VERSION_KEY: "1"})
    Image.fromarray(mnist_test.images[6]).save(folder / "7" / "new.png")
    result = cli("classify", folder, "--out-dir", out_dir, "--incremental", "--quiet")
    assert result.exit_code == 0, result.stderr
    newest = pl.read_parquet(run_files.result_files(out_dir)[-1])
    assert newest["path"].to_list() == [str(folder / "7" / "new.png")]
    scanned = results.scan(first).collect()
    assert scanned["digit_score"].null_count() == scanned.height
    assert cli("report", first).exit_code == 0


def test_non_digits_need_smallbn(cli, tmp_path):
    result = cli("train", "--non-digits", "0.2", "--out", tmp_path / "t")
    assert result.exit_code == 2 and "smallbn" in result.stderr
