"""A decoded chunk is arrays, not a record per input: what the workers send, what the Ray stages
pass on, and what rows are built from. Real files the tests write."""

import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mnist_batch import records
from mnist_batch.discover import file_ids

FAR_FUTURE_NS = (1 << 63) + 10**18  # past 2262: stat'ed, but no Int64 holds its time


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, mnist_test) -> list[str]:
    """An MNIST digit, a broken file, a blank page, a missing file, an empty field, a far-future file."""
    folder = tmp_path_factory.mktemp("mixed")
    Image.fromarray(mnist_test.images[0]).save(folder / "a_digit.png")
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    Image.new("L", (40, 40), 255).save(folder / "c_blank.png")
    box = Image.new("L", (80, 80), 255)
    for side in ((4, 4, 76, 7), (4, 73, 76, 76), (4, 4, 7, 76), (73, 4, 76, 76)):
        box.paste(0, side)
    box.save(folder / "d_empty_box.png")
    Image.fromarray(mnist_test.images[1]).save(folder / "f_future.png")
    os.utime(folder / "f_future.png", ns=(0, FAR_FUTURE_NS))
    return [str(folder / name) for name in ("a_digit.png", "b_broken.png", "c_blank.png", "d_empty_box.png",
                                            "e_missing.png", "f_future.png")]


def test_a_chunk_holds_arrays_aligned_with_its_paths(mixed, mnist_test):
    chunk = records.preprocess_chunk(mixed)
    assert [records.STATUSES[code] for code in chunk.statuses] == [
        "ok", "not_image", "blank", "not_digit", "missing", "ok"]
    assert chunk.statuses.dtype == np.uint8 and chunk.sizes.dtype == chunk.mtimes.dtype == np.int64
    assert chunk.ok.tolist() == [True, False, False, False, False, True]
    assert chunk.failed.tolist() == [False, True, False, False, True, False]
    assert np.array_equal(chunk.digits, mnist_test.images[:2])  # MNIST form: as it is, in the inputs' order
    assert sorted(chunk.errors) == [1, 2, 3, 4]  # a message for each input that is not OK, none for the rest
    assert "broken symlink" not in chunk.errors[4] and "not found" in chunk.errors[4]
    assert chunk.sized.tolist() == [True, True, True, True, False, True]
    assert chunk.timed.tolist() == [True, True, True, True, False, False]
    assert chunk.sizes[1] == len(b"\x89PNG\r\n\x1a\nbroken") and chunk.mtimes[0] == os.stat(mixed[0]).st_mtime_ns
    assert chunk.ids == file_ids(mixed)  # resolved in the worker, not by the main process


def test_every_status_the_stages_give_has_a_code():
    """A status missing from STATUSES would stop a worker: every kind named in the code is there."""
    package = Path(records.__file__).parent
    source = "".join(path.read_text() for path in package.glob("*.py"))
    named = set(re.findall(r'ImageProblem\("(\w+)"', source)) | set(re.findall(r'failed\(\w+, "(\w+)"', source))
    named |= set(re.findall(r'kind = "(\w+)" if .* else "(\w+)"', source)[0])
    assert len(named) >= 9 and named <= set(records.STATUSES)


@pytest.mark.timeout(60)
def test_rows_come_from_the_chunk_arrays_with_nulls_where_unknown(cli, mixed, tmp_path):
    out, listed = tmp_path / "rows.parquet", tmp_path / "inputs.txt"
    listed.write_text("\n".join(mixed) + "\n")  # a listed file that is gone is a row, not a usage error
    result = cli("classify", "--files-from", listed, "--out", out, "--checkpoint", "smallbn", "--workers", "1",
                 "--quiet")
    assert result.exit_code == 3, result.stderr  # some inputs failed
    rows = pl.read_parquet(out).sort("path")
    assert rows["status"].to_list() == ["ok", "not_image", "blank", "not_digit", "missing", "ok"]
    assert rows["error"].is_null().to_list() == [True, False, False, False, False, True]
    assert rows["pred"].is_null().to_list() == [False, True, True, True, True, False]
    assert rows["digit_score"].is_null().to_list() == [False, True, True, False, True, False]
    assert rows["file_size"].is_null().to_list() == [False, False, False, False, True, False]
    assert rows["file_mtime_ns"].is_null().to_list() == [False, False, False, False, True, True]
    assert rows["file_id"].to_list() == file_ids(mixed)
    assert "f_future.png: its modification time is outside the years 1677-2262" in result.stderr


def test_a_ray_stage_table_gives_back_the_chunk_whatever_its_slicing(mixed):
    pa = pytest.importorskip("pyarrow")
    from mnist_batch.ray_engine import chunk_of, stage_table

    chunk = records.preprocess_chunk(mixed)
    table = stage_table(chunk)
    for start, stop, piece in ((0, 6, table), (0, 6, pa.concat_tables([table.slice(0, 2), table.slice(2)])),
                               (2, 6, table.slice(2)), (1, 4, table.slice(1, 3))):
        back = chunk_of(piece)
        assert back.paths == chunk.paths[start:stop] and back.ids == chunk.ids[start:stop]
        assert back.errors == {i - start: text for i, text in chunk.errors.items() if start <= i < stop}
        for name in ("statuses", "sizes", "sized", "mtimes", "timed"):
            assert np.array_equal(getattr(back, name), getattr(chunk, name)[start:stop]), name
        assert np.array_equal(back.digits, chunk.digits[chunk.ok[:start].sum() : chunk.ok[:stop].sum()])
