"""The Ray engine on a local Ray cluster: the same rows as the local engine."""

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tests.conftest import write_pngs


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, mnist_test):
    root = tmp_path_factory.mktemp("mixed")
    write_pngs(root, mnist_test.images[:300], mnist_test.labels[:300])
    scan = Image.fromarray(255 - mnist_test.images[300]).resize((150, 150)).convert("RGB")
    scan.save(root / "scan.jpg", quality=90)
    (root / "truncated.png").write_bytes((root / "0" / "00003.png").read_bytes()[:60])
    (root / "text.png").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    Image.new("L", (64, 64), 250).save(root / "blank.png")
    # A marker's 1 in a 1 px margin: which side is the paper is a close call, so it is read both
    # ways round, and the second reading (the bar as ink) is the digit.
    marker = np.zeros((42, 10), np.uint8)
    marker[1:-1, 1:-1] = 255
    Image.fromarray(marker).save(root / "marker.png")
    return root


def test_ray_gives_the_same_rows_as_the_local_engine(cli, ray_cluster, mixed_folder, tmp_path):
    local = tmp_path / "local.parquet"
    assert cli("classify", mixed_folder, "--out", local, "--quiet").exit_code == 3
    out = tmp_path / "ray-results"
    result = cli("classify", mixed_folder, "--out", out, "--engine", "ray", "--quiet", "--batch-size", "64")
    assert result.exit_code == 3, result.stderr
    assert out.is_dir() and list(out.glob("*.parquet"))

    expected = pl.read_parquet(local)
    got = pl.scan_parquet(out / "*.parquet").collect().sort("path")
    assert got.height == expected.height == 306
    assert expected.filter(pl.col("path").str.ends_with("marker.png"))["pred"].to_list() == [1]
    assert dict(got.schema) == dict(expected.schema)
    for column in ("path", "file_id", "status", "error", "pred", "file_size", "file_mtime_ns", "checkpoint_sha256"):
        assert got[column].to_list() == expected[column].to_list(), column
    probs = [f"prob_{d}" for d in range(10)]
    ok = expected["status"] == "ok"
    assert np.allclose(got.filter(ok).select(probs).to_numpy(), expected.filter(ok).select(probs).to_numpy(),
                       atol=1e-6, rtol=0)
    # An odd MNIST digit may be not_digit: the same row either way, and left out of the accuracy.
    assert sorted(set(got["status"]) - {"not_digit"}) == ["blank", "empty", "not_image", "ok", "truncated"]

    # report reads the directory of parts
    figures = json.loads(cli("report", out, "--labels-from-dirs", "--json").stdout)
    assert figures["rows"] == 306 and figures["labels"]["evaluated"] == 300 - (got["status"] == "not_digit").sum()


def test_ray_reads_file_uris_as_the_local_engine_does(cli, ray_cluster, mixed_folder, tmp_path):
    out = tmp_path / "uri-results"
    result = cli("classify", (mixed_folder / "1").as_uri(), "--out", out, "--engine", "ray", "--quiet")
    assert result.exit_code == 0, result.stderr
    got = pl.scan_parquet(out / "*.parquet").collect()
    local = tmp_path / "local.parquet"
    assert cli("classify", mixed_folder / "1", "--out", local, "--quiet").exit_code == 0
    expected = pl.read_parquet(local)
    assert got.height == expected.height > 0
    assert sorted(got["file_id"]) == sorted(expected["file_id"])  # file:// names local files
    by_name = dict(zip(got["path"].str.extract(r"([^/]+)$"), got["pred"], strict=True))
    assert by_name == dict(zip(expected["path"].str.extract(r"([^/]+)$"), expected["pred"], strict=True))


def test_ray_needs_an_output_directory(cli, tmp_path):
    result = cli("classify", tmp_path, "--out-dir", tmp_path / "r", "--engine", "ray")
    assert result.exit_code == 2 and "--out DIR" in result.stderr
