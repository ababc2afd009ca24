"""The Python API: the same rows as the CLI, for paths, PIL images and numpy arrays."""

import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from PIL import Image

import mnist_batch
from tests.conftest import write_pngs


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist_test):
    root = tmp_path_factory.mktemp("api")
    write_pngs(root, mnist_test.images[:30], mnist_test.labels[:30])
    Image.fromarray(255 - mnist_test.images[30]).resize((120, 90)).convert("RGB").save(root / "scan.jpg")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def test_api_rows_equal_the_cli_rows(cli, classifier, folder, tmp_path):
    out = tmp_path / "cli.parquet"
    assert cli("classify", folder, "--out", out, "--quiet").exit_code == 3  # the broken file
    from_cli = pl.read_parquet(out)
    from_api = classifier.predict(from_cli["path"].to_list())
    assert from_api.schema == from_cli.schema
    assert from_api.select("path", "status", "error", "pred").equals(from_cli.select("path", "status", "error", "pred"))
    probs = pl.col("^prob_.$")
    assert np.allclose(from_api.select(probs).fill_null(0).to_numpy(), from_cli.select(probs).fill_null(0).to_numpy(),
                       atol=1e-6)


def test_in_memory_images_match_their_files(classifier, folder, mnist_test):
    path = str(folder / str(mnist_test.labels[0]) / "00000.png")  # the file of images[0], not another of its label
    digit = mnist_test.images[0]
    frame = classifier.predict([path, Image.open(path), digit, digit.astype(np.float32) / 255, digit[:, :, None]])
    assert frame["path"].to_list() == [path, None, None, None, None]
    assert set(frame["status"]) == {"ok"} and frame["pred"].n_unique() == 1
    assert frame["pred"][0] == mnist_test.labels[0]
    assert frame.select(pl.col("prob_0").max() - pl.col("prob_0").min()).item() < 1e-6
    assert frame["file_size"].to_list()[1:] == [None] * 4


@pytest.mark.parametrize("item, status", [
    (np.zeros((3, 3, 7), np.uint8), "unsupported"),
    (np.zeros((0, 5), np.uint8), "unsupported"),
    ("no/such/file.png", "missing"),
    (42, "unsupported"),
    (np.full((40, 40), 255, np.uint8), "blank"),
])
def test_a_bad_item_is_a_row_with_its_status(classifier, item, status):
    frame = classifier.predict([item])
    assert frame.height == 1 and frame["status"][0] == status and frame["error"][0]


def test_predict_one_on_a_scan_like_pil_image(classifier, mnist_test):
    scan = Image.fromarray(255 - mnist_test.images[7]).resize((200, 160)).convert("RGBA")
    digit, confidence = classifier.predict_one(scan)
    assert digit == mnist_test.labels[7] and 0.5 < confidence <= 1.0
    with pytest.raises(ValueError, match="blank"):
        classifier.predict_one(Image.new("L", (50, 50), 255))


def test_batching_inside_keeps_the_order(folder, mnist_test):
    small_batches = mnist_batch.Classifier(device="cpu", batch_size=7)
    frame = small_batches.predict(list(mnist_test.images[:20]))
    assert frame.height == 20 and (frame["pred"].to_numpy() == mnist_test.labels[:20]).mean() >= 0.95


def test_classify_files_runs_the_whole_job(folder, tmp_path):
    out = tmp_path / "job.csv"
    summary = mnist_batch.classify_files([folder], out=out, workers=1, include="*.png")
    assert isinstance(summary, mnist_batch.ClassifySummary)
    assert summary.rows == 31 and summary.ok == 30 and summary.failed == 1 and summary.out == str(out)
    assert pl.read_csv(out).height == 31
    with pytest.raises(mnist_batch.UserError, match="exists"):
        mnist_batch.classify_files([folder], out=out)


def test_import_is_light():
    """torch and polars load on first use, not on import: --help stays fast."""
    code = "import sys, mnist_batch; print(sorted(m for m in ('torch', 'polars', 'PIL') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
