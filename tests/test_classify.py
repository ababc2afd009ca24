"""classify through the real CLI on real image files written by the tests."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from PIL import Image

from mnist_batch import digitize, records, results, run_files
from mnist_batch.checkpoints import DEFAULT_CHECKPOINT
from mnist_batch.model import Inference, load_checkpoint, normalize
from tests.conftest import interruptible_classify, write_pngs, write_tiled_pngs

# The contract, spelled out independently of the code that writes it.
PINNED_SCHEMA = {
    "path": pl.String, "file_id": pl.String, "status": pl.String, "error": pl.String, "pred": pl.Int8,
    "confidence": pl.Float32, **{f"prob_{d}": pl.Float32 for d in range(10)},
    "digit_score": pl.Float32, "min_digit_score": pl.Float32,
    "file_size": pl.Int64, "file_mtime_ns": pl.Int64, "checkpoint": pl.String,
    "checkpoint_sha256": pl.String,
}


def scan_like(digit: np.ndarray, size: int, rng, rgb=True) -> Image.Image:
    """An MNIST digit as dark ink on light, noisy paper, off-centre, in a larger image."""
    scale = size / 56
    ink = Image.fromarray(digit).resize((int(28 * scale), int(28 * scale)), Image.BILINEAR)
    paper = np.full((size, size), 225, np.float32) + rng.normal(0, 6, (size, size))
    top, left = rng.integers(0, size - ink.size[1] + 1), rng.integers(0, size - ink.size[0] + 1)
    region = paper[top : top + ink.size[1], left : left + ink.size[0]]
    region -= np.asarray(ink, np.float32) * 0.8
    gray = Image.fromarray(paper.clip(0, 255).astype(np.uint8))
    return gray.convert("RGB") if rgb else gray


@pytest.fixture(scope="module")
def inbox(tmp_path_factory, mnist_test):
    """120 MNIST PNGs in label folders plus one file of every bad kind, and a hidden file."""
    root = tmp_path_factory.mktemp("inbox")
    write_pngs(root, mnist_test.images[:120], mnist_test.labels[:120])
    bad = root / "bad"
    bad.mkdir()
    png = io.BytesIO()
    Image.fromarray(mnist_test.images[0]).resize((200, 200)).save(png, "PNG")
    (bad / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.jpg").write_text("this is not an image")
    Image.new("1", (12_000, 12_000)).save(bad / "bomb.png")  # 144 Mpx in a few KB
    Image.new("L", (28, 28), 0).save(bad / "blank.png")
    (root / ".hidden.png").write_bytes(b"not even looked at")
    return root


def classify(cli, *args):
    return cli("classify", *args, "--quiet")


def test_every_input_yields_exactly_one_row(cli, inbox, tmp_path):
    out = tmp_path / "preds.parquet"
    result = classify(cli, inbox, "--out", out, "--max-pixels", 100_000_000)
    assert result.exit_code == 3, result.stderr  # some inputs failed
    assert "Traceback" not in result.stderr
    frame = pl.read_parquet(out)
    assert frame.height == 125 and frame["path"].n_unique() == 125
    assert frame["path"].to_list() == sorted(frame["path"].to_list())
    by_name = {Path(p).name: s for p, s in zip(frame["path"], frame["status"], strict=True)}
    assert by_name["truncated.png"] == "truncated"
    assert by_name["empty.png"] == "empty"
    assert by_name["notes.jpg"] == "not_image"
    assert by_name["bomb.png"] == "too_large"
    assert by_name["blank.png"] == "blank"
    assert ".hidden.png" not in by_name
    failed = frame.filter(pl.col("status") != "ok")
    assert failed["error"].null_count() == 0 and failed["pred"].null_count() == failed.height
    ok = frame.filter(pl.col("status") == "ok")
    assert ok.height == 120 and ok["error"].null_count() == 120
    labels = ok["path"].map_elements(lambda p: int(Path(p).parent.name), return_dtype=pl.Int8)
    assert (ok["pred"] == labels).mean() > 0.95
    assert "bad/notes.jpg" in result.stderr  # error lines on stderr, the summary on stdout
    assert "125 rows" in result.stdout and "125 rows" not in result.stderr


def test_schema_is_pinned_and_parquet_equals_csv(cli, inbox, tmp_path):
    parquet, csv = tmp_path / "p.parquet", tmp_path / "p.csv"
    classify(cli, inbox, "--out", parquet)
    classify(cli, inbox, "--out", csv)
    from_parquet = pl.read_parquet(parquet)
    assert dict(from_parquet.schema) == PINNED_SCHEMA
    from_csv = results.scan(csv).collect()
    assert from_csv.equals(from_parquet)
    probs = from_parquet.filter(pl.col("status") == "ok").select(pl.sum_horizontal(pl.col("^prob_.$")))
    assert np.allclose(probs.to_series().to_numpy(), 1.0, atol=1e-4)
    assert from_parquet["checkpoint"][0] == DEFAULT_CHECKPOINT.name
    assert len(from_parquet["checkpoint_sha256"][0]) == 64
    # the documented types in pandas and DuckDB
    frame = pd.read_parquet(parquet)
    assert frame["prob_3"].dtype == np.float32 and frame["file_size"].dtype == np.int64
    types = {row[0]: row[1] for row in duckdb.sql(f"DESCRIBE SELECT * FROM '{parquet}'").fetchall()}
    assert types["pred"] == "TINYINT" and types["confidence"] == "FLOAT" and types["path"] == "VARCHAR"
    assert duckdb.sql(f"SELECT count(*) FROM '{parquet}' WHERE status = 'ok'").fetchall() == [(120,)]


def test_existing_output_needs_overwrite(cli, inbox, tmp_path):
    out = tmp_path / "p.parquet"
    out.write_text("keep me")
    result = classify(cli, inbox / "0", "--out", out)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert out.read_text() == "keep me"
    assert classify(cli, inbox / "0", "--out", out, "--overwrite").exit_code == 0
    assert pl.read_parquet(out).height > 0
    assert classify(cli, inbox, "--out", tmp_path / "p.txt").exit_code == 2


def test_rows_are_the_same_for_any_worker_count(cli, inbox, tmp_path):
    frames = []
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}.parquet"
        classify(cli, inbox, "--out", out, "--workers", workers, "--batch-size", 16)
        frames.append(pl.read_parquet(out))
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])


def test_mnist_pngs_round_trip_to_the_model_predictions(cli, mnist_test, tmp_path):
    """28x28 MNIST PNGs pass preprocessing unchanged: the same predictions as on the raw arrays."""
    count = 2000
    write_pngs(tmp_path / "png", mnist_test.images[:count], mnist_test.labels[:count])
    out = tmp_path / "mnist.parquet"
    assert classify(cli, tmp_path / "png", "--out", out, "--min-digit-score", "0").exit_code == 0
    frame = pl.read_parquet(out).with_columns(
        index=pl.col("path").str.extract(r"(\d+)\.png$").cast(pl.Int64)).sort("index")
    probs, _ = Inference(DEFAULT_CHECKPOINT, "cpu").scores(mnist_test.images[:count].copy(), [True] * count)
    expected = probs.argmax(1)  # the network's answers on the arrays, with the second look as classify gives it
    assert (frame["pred"].to_numpy() == expected).all()
    file_accuracy = (frame["pred"].to_numpy() == mnist_test.labels[:count]).mean()
    array_accuracy = (expected == mnist_test.labels[:count]).mean()
    assert abs(file_accuracy - array_accuracy) <= 0.001


def test_preprocessing_maps_scans_to_mnist_form(mnist_test):
    rng = np.random.default_rng(0)
    digit = mnist_test.images[0]
    assert np.array_equal(digitize.preprocess(Image.fromarray(digit)), digit)  # MNIST form: unchanged
    model, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    variants = []
    for i in range(40):
        scan = scan_like(mnist_test.images[i], int(rng.integers(100, 400)), rng)
        buffer = io.BytesIO()
        scan.save(buffer, "JPEG" if i % 2 else "PNG", quality=85)
        status, _, digit28, *_ = records.load(buffer.getvalue())
        assert status == "ok" and digit28.shape == (28, 28) and digit28.dtype == np.uint8
        variants.append(digit28)
    with torch.inference_mode():
        predicted = model(normalize(torch.from_numpy(np.stack(variants))))[:, :10].argmax(1).numpy()
    assert (predicted == mnist_test.labels[:40]).mean() >= 0.9


def test_alpha_exif_and_blank_images(mnist_test):
    digit = mnist_test.images[1]
    ink = Image.fromarray(digit)
    rgba = Image.new("RGBA", (28, 28), (0, 0, 0, 0))  # transparent background, black ink
    rgba.putalpha(ink)
    status, _, from_alpha, *_ = records.load(encode(rgba, "PNG"))
    assert status == "ok" and np.corrcoef(from_alpha.ravel(), digit.ravel())[0, 1] > 0.9
    # The same strokes drawn white, as on a dark canvas: over white paper they would vanish.
    white_ink = Image.new("RGBA", (28, 28), (255, 255, 255, 0))
    white_ink.putalpha(ink)
    status, _, from_white_ink, *_ = records.load(encode(white_ink, "PNG"))
    assert status == "ok" and np.corrcoef(from_white_ink.ravel(), digit.ravel())[0, 1] > 0.9
    # A patch of white paper holding dark ink stays on white, even where transparency is most of
    # the image: the paper is what shows.
    for side in (60, 120):
        page = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        page.paste(Image.fromarray(255 - digit).convert("RGBA").resize((56, 56)), (2, 2))
        status, _, from_page, *_ = records.load(encode(page, "PNG"))
        assert status == "ok" and np.corrcoef(from_page.ravel(), from_alpha.ravel())[0, 1] > 0.8

    rotated = Image.fromarray(255 - digit).resize((112, 112)).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buffer = io.BytesIO()
    rotated.save(buffer, "JPEG", exif=exif, quality=95)
    status, _, upright, *_ = records.load(buffer.getvalue())
    straight = records.load(encode(Image.fromarray(255 - digit).resize((112, 112)), "PNG")).digit
    assert status == "ok" and np.abs(upright.astype(int) - straight.astype(int)).mean() < 20

    for blank in (Image.new("L", (300, 200), 240), Image.new("RGB", (28, 28), "white")):
        assert records.load(encode(blank, "PNG")).status == "blank"


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_discovery_lists_and_symlink_loops(cli, tmp_path, mnist_test):
    root = tmp_path / "scans"
    write_pngs(root, mnist_test.images[:6], mnist_test.labels[:6])
    Image.fromarray(mnist_test.images[6]).save(root / "UPPER.PNG")
    (root / ".git").mkdir()
    Image.fromarray(mnist_test.images[7]).save(root / ".git" / "inside-hidden-dir.png")
    (root / "readme.txt").write_text("not an input inside a folder")
    (root / "loop").symlink_to(root, target_is_directory=True)
    out = tmp_path / "all.csv"
    assert classify(cli, root, "--out", out).exit_code == 0
    paths = results.scan(out).collect()["path"].to_list()
    assert len(paths) == 7 and any(p.endswith("UPPER.PNG") for p in paths)
    # --files-from stdin: a listed file that does not exist is a row, not a silent loss
    listing = f"{paths[0]}\n{tmp_path / 'gone.png'}\n"
    result = cli("classify", "--files-from", "-", "--out", tmp_path / "list.csv", "--quiet", input=listing)
    assert result.exit_code == 3
    listed = results.scan(tmp_path / "list.csv").collect()
    assert sorted(listed["status"].to_list()) == ["missing", "ok"]
    # a pattern that matches none of the files is said to be that, not passed off as an empty folder
    result = classify(cli, root, "--include", "*.jpeg", "--out", tmp_path / "none.csv")
    assert result.exit_code == 0 and results.scan(tmp_path / "none.csv").collect().height == 0
    assert "--include/--exclude matched none of the 7 image files found" in result.stderr


def test_unreadable_file_is_a_row(tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:2], mnist_test.labels[:2])
    locked = sorted((tmp_path / "in").rglob("*.png"))[0]
    locked.chmod(0)
    # root reads any file; without the capabilities that let it, it meets permissions as anyone does
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    out = tmp_path / "o.parquet"
    done = subprocess.run([*as_user, Path(sys.executable).parent / "mnist-batch", "classify", tmp_path / "in",
                           "--out", out, "--quiet"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "permission denied" in done.stderr and "Traceback" not in done.stderr
    frame = pl.read_parquet(out)
    assert frame.filter(pl.col("path") == str(locked))["status"].item() == "unreadable"
    assert frame.filter(pl.col("status") == "ok").height == 1


def test_killed_run_leaves_no_output_and_resume_completes_it(tmp_path, mnist_test):
    folder = tmp_path / "many"
    write_tiled_pngs(folder, mnist_test, 1000, 3)
    out = tmp_path / "preds.parquet"
    command = interruptible_classify(folder, out)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = run_files.parts_dir(out)
    deadline = time.time() + 240
    while not list(parts.glob("part-*.parquet")) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists(), "a killed run must not leave a file at --out"
    assert list(parts.glob("part-*.parquet")), "the finished parts stay for --resume"
    (tmp_path / f".{out.name}.tmp-99999").write_bytes(b"half a merge")  # as a kill during the merge leaves

    # Ctrl-C in a terminal sends SIGINT to the whole process group, workers included
    interrupted = subprocess.Popen([*command, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
    written = len(list(parts.glob("part-*.parquet")))
    while len(list(parts.glob("part-*.parquet"))) == written and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(interrupted.pid, signal.SIGINT)
    _, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "error:" in line] == [stderr.strip().splitlines()[-1]]
    assert "interrupted" in stderr and "--resume" in stderr
    assert not out.exists()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and not parts.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many", "preds.parquet"]
    fresh = tmp_path / "fresh.parquet"
    # the same batch size: the CPU kernels round differently at other sizes
    assert subprocess.run([*command[:4], fresh, *command[5:]], capture_output=True).returncode == 0
    assert pl.read_parquet(out).equals(pl.read_parquet(fresh))
    assert pl.read_parquet(out).height == 3000


def test_every_common_format_gives_the_same_digit(cli, tmp_path, mnist_test):
    """One scan-like digit saved in each format Pillow writes, extensions in any case."""
    digit = Image.fromarray(255 - mnist_test.images[0]).resize((84, 84), Image.BICUBIC)
    folder = tmp_path / "formats"
    folder.mkdir()
    for name, image in {
        "a.png": digit, "b.JPG": digit.convert("RGB"), "c.bmp": digit, "d.gif": digit.convert("P"),
        "e.tif": digit, "f.webp": digit.convert("RGB"), "g.pgm": digit, "h.ppm": digit.convert("RGB"),
        "i.Tiff": digit.convert("RGBA"),
        "j16.png": Image.fromarray(np.asarray(digit, np.uint16) * 257),  # 16-bit grey
        "k-lab.tif": digit.convert("RGB").convert("LAB"),  # Pillow converts LAB to nothing: its L is the grey
    }.items():
        image.save(folder / name)
    out = tmp_path / "formats.parquet"
    result = classify(cli, folder, "--out", out)
    assert result.exit_code == 0, result.stderr
    frame = pl.read_parquet(out)
    assert frame.height == 11 and set(frame["status"]) == {"ok"}
    assert set(frame["pred"]) == {int(mnist_test.labels[0])}


# The keys of `classify --json`, as the README documents them.
SUMMARY_KEYS = ["out", "format", "inputs", "rows", "classified_now", "ok", "blank", "not_digit", "failed", "statuses",
                "seconds", "images_per_second", "pipeline_images_per_second", "workers", "device", "checkpoint"]


def test_json_summary_keys_are_pinned_and_rates_use_wall_time(cli, inbox, tmp_path):
    result = cli("classify", inbox, "--out", tmp_path / "j.parquet", "--quiet", "--json", "--max-pixels", 100_000_000)
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == SUMMARY_KEYS
    assert summary["rows"] == 125 and summary["ok"] == 120 and summary["blank"] == 1 and summary["failed"] == 4
    assert summary["images_per_second"] == pytest.approx(summary["classified_now"] / summary["seconds"])
    assert summary["pipeline_images_per_second"] >= summary["images_per_second"]


def test_resume_summary_describes_the_whole_file(cli, inbox, tmp_path):
    """Parts kept from an interrupted run hold a failed row: the resumed run still counts it."""
    out = tmp_path / "r.parquet"
    first = cli("classify", inbox / "bad", "--out", tmp_path / "bad.parquet", "--quiet")
    assert first.exit_code == 3
    parts = run_files.parts_dir(out)
    parts.mkdir()
    pl.read_parquet(tmp_path / "bad.parquet").filter(pl.col("status") == "not_image").write_parquet(
        parts / "part-000000.parquet")
    resumed = cli("classify", inbox / "bad", "--out", out, "--quiet", "--json", "--resume")
    assert resumed.exit_code == 3, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["classified_now"] == 4 and summary["rows"] == 5 and summary["statuses"]["not_image"] == 1
