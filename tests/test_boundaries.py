"""Arguments at the edges (issue 19, items 7, 9, 10, 16, 17): a resume under another checkpoint,
the Python API's argument types, labels files with empty paths, conflicts and repeats, list
files and checkpoints of absurd sizes, future result files, and the report's options and layout."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

import mnist_batch
from mnist_batch import results, run_files
from mnist_batch.checkpoints import DEFAULT_CHECKPOINT, WEIGHTS, file_sha256
from tests.conftest import write_pngs
from tests.test_faults import classify, crashed_run, png, rows

MNIST_BATCH = str(Path(sys.executable).parent / "mnist-batch")


def one_line(result, code: int, *fragments: str) -> str:
    """The command failed with `code` and one line on stderr holding every fragment."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_test) -> Path:
    """Twelve MNIST digits as PNG files under <label>/ folders, and their result file."""
    root = tmp_path_factory.mktemp("digits")
    write_pngs(root / "images", mnist_test.images[:12], mnist_test.labels[:12])
    from tests.conftest import run_cli

    assert run_cli("classify", root / "images", "--out", root / "preds.parquet", "--quiet").exit_code == 0
    return root


# 7: --resume under another checkpoint


@pytest.mark.timeout(120)
def test_resume_with_another_checkpoint_is_refused_and_the_parts_are_kept(cli, tmp_path, mnist_test):
    folder = tmp_path / "in"
    for i in range(3):
        png(folder / f"{i}.png", mnist_test.images[i])
    out = tmp_path / "o.parquet"
    crashed_run(cli, [folder / "0.png"], out)  # its rows came from the bundled default, smallbn
    result = classify(cli, folder, "--out", out, "--resume", "--checkpoint", "lenet")
    line = one_line(result, 2, "lenet.safetensors", "smallbn.safetensors", "--resume")
    assert "--checkpoint" in line
    assert not out.exists() and list(run_files.parts_dir(out).glob("part-*.parquet"))
    # the same weights under another name are the same checkpoint: the run resumes
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    result = classify(cli, folder, "--out", out, "--resume", "--checkpoint", copy)
    assert result.exit_code == 0, result.stderr
    assert set(rows(out)["checkpoint_sha256"]) == {file_sha256(DEFAULT_CHECKPOINT)} and rows(out).height == 3


@pytest.mark.timeout(120)
def test_resume_with_another_minimum_digit_score_is_refused_and_the_parts_are_kept(cli, tmp_path, mnist_test):
    """The kept rows were judged by their run's threshold: going on with another one mixed two
    thresholds in one file, which no uninterrupted run gives."""
    folder = tmp_path / "in"
    for i in range(3):
        png(folder / f"{i}.png", mnist_test.images[i])
    out = tmp_path / "o.parquet"
    crashed_run(cli, [folder / "0.png", "--min-digit-score", "0.1"], out)
    result = classify(cli, folder, "--out", out, "--resume", "--min-digit-score", "0")
    one_line(result, 2, "cannot resume", "--min-digit-score 0.1", "not 0")
    assert not out.exists() and list(run_files.parts_dir(out).glob("part-*.parquet"))
    result = classify(cli, folder, "--out", out, "--resume", "--min-digit-score", "0.1")
    assert result.exit_code == 0, result.stderr
    assert rows(out).height == 3 and np.allclose(rows(out)["min_digit_score"].to_numpy(), 0.1)


@pytest.mark.timeout(120)
def test_a_checkpoint_rewritten_while_a_resume_starts_mixes_no_rows(cli, tmp_path, mnist_test, monkeypatch):
    """The checkpoint passes the resume check, then another network is written over it before it
    loads (a training job finishing beside the cron job): the run stops before adding a row."""
    from mnist_batch import classify as classify_module

    folder = tmp_path / "in"
    for i in range(3):
        png(folder / f"{i}.png", mnist_test.images[i])
    out, mine = tmp_path / "o.parquet", tmp_path / "mine.safetensors"
    mine.write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    crashed_run(cli, [folder / "0.png"], out)
    load_model = classify_module.load_model

    def rewritten_first(opts):
        mine.write_bytes((WEIGHTS / "lenet.safetensors").read_bytes())
        return load_model(opts)

    monkeypatch.setattr(classify_module, "load_model", rewritten_first)
    result = classify(cli, folder, "--out", out, "--resume", "--checkpoint", mine)
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    for fragment in ("cannot resume", "smallbn.safetensors", "mine.safetensors", file_sha256(mine)[:12]):
        assert fragment in error, error
    kept = pl.concat([pl.read_parquet(part) for part in run_files.parts_dir(out).glob("part-*.parquet")])
    assert not out.exists() and kept.height == 1
    assert set(kept["checkpoint_sha256"]) == {file_sha256(DEFAULT_CHECKPOINT)}


# 9: the Python API checks its arguments at the door, and every item gets a row


def test_a_zero_size_image_is_a_failed_row_beside_the_good_one(classifier, digits):
    good = str(next((digits / "images").rglob("*.png")))
    frame = classifier.predict([good, Image.new("L", (0, 0)), Image.new("RGB", (5, 0))])
    assert frame["status"].to_list()[0] == "ok" and frame.height == 3
    assert frame["status"].to_list()[1:] == ["unsupported"] * 2 and all(frame["error"][1:])


@pytest.mark.parametrize("items, fragment", [
    (b"\x89PNG\r\n\x1a\n....", "bytes"),
    (bytearray(b"1234"), "bytearray"),
    (None, "None"),
    (42, "int"),
])
def test_predict_refuses_what_is_neither_an_image_nor_a_list_of_them(classifier, items, fragment):
    with pytest.raises(TypeError, match=fragment) as raised:
        classifier.predict(items)
    assert "list" in str(raised.value)


def test_one_path_given_as_bytes_in_a_list_is_a_row(classifier):
    frame = classifier.predict([b"not a path"])
    assert frame.height == 1 and frame["status"][0] == "unsupported"


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4, 5, 6)])
def test_an_array_that_is_no_stack_of_images_is_one_item(classifier, shape):
    frame = classifier.predict(np.zeros(shape, np.uint8))
    assert frame.height == 1 and frame["status"][0] == "unsupported"


@pytest.mark.parametrize("option, value", [
    ("overwrite", "no"), ("resume", 0), ("incremental", "yes"), ("progress", None),
    ("workers", "2"), ("batch_size", True), ("max_pixels", 1.5), ("device", 0), ("format", 1),
    ("checkpoint", 3), ("out", 5), ("include", 7), ("exclude", [1]), ("files_from", 2), ("actors", "1"),
    ("engine", None), ("address", 1),
])
def test_classify_files_checks_its_option_types(digits, tmp_path, option, value):
    out = tmp_path / "o.parquet"
    out.write_text("keep me")
    options = {"out": out} | {option: value}
    with pytest.raises(TypeError, match=option):
        mnist_batch.classify_files([digits / "images"], **options)
    assert out.read_text() == "keep me"


def test_every_classify_files_option_has_its_type():
    from mnist_batch.api import OPTION_NAMES, OPTION_TYPES

    assert set(OPTION_TYPES) == OPTION_NAMES


@pytest.mark.parametrize("inputs", [None, 5, [1], b"images"])
def test_classify_files_checks_its_inputs(digits, tmp_path, inputs):
    with pytest.raises(TypeError, match="inputs"):
        mnist_batch.classify_files(inputs, out=tmp_path / "o.parquet")


@pytest.mark.parametrize("options", [{"batch_size": "8"}, {"max_pixels": True}, {"device": None},
                                     {"checkpoint": 5}])
def test_a_classifier_checks_its_argument_types(options):
    with pytest.raises(TypeError, match=next(iter(options))):
        mnist_batch.Classifier(**options)


# 10: labels files: empty paths, conflicts and repeats


@pytest.fixture
def own(tmp_path, mnist_test):
    """40 scan-like digits of 'my writer' and their labels file (paths relative to the folder)."""
    folder = tmp_path / "mine"
    rows = []
    for i in range(40):
        name = f"d{i:02d}.png"
        png(folder / name, 255 - mnist_test.images[200 + i])
        rows.append((name, str(mnist_test.labels[200 + i])))
    return folder, rows


def labels_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    return path


def test_an_empty_path_is_refused_by_train_and_report_alike(cli, tmp_path, own, digits, mnist_dir):
    folder, rows = own
    labels = labels_csv(tmp_path / "l.csv", [*rows[:5], ("", "3"), *rows[5:]])
    trained = cli("train", "--from", "lenet", "--extra", labels, "--extra-root", folder, "--out", tmp_path / "t",
                  "--dry-run", "--data-dir", mnist_dir, "--device", "cpu")
    reported = cli("report", digits / "preds.parquet", "--labels", labels)
    for result in (trained, reported):
        one_line(result, 2, str(labels), "line 7", "empty path")
    # a row with neither path nor label (a spreadsheet's blank line) is no row at all
    blank_row = labels_csv(tmp_path / "b.csv", [*rows[:5], ("", ""), *rows[5:]])
    assert cli("report", digits / "preds.parquet", "--labels", blank_row).exit_code == 0


def test_conflicting_labels_for_one_image_are_refused_by_train_as_by_report(cli, tmp_path, own, mnist_dir):
    folder, rows = own
    first = labels_csv(tmp_path / "a.csv", rows)
    other = "1" if rows[3][1] != "1" else "2"
    second = labels_csv(tmp_path / "b.csv", [(f"./{rows[3][0]}", other)])  # the same file, spelt otherwise
    result = cli("train", "--from", "lenet", "--extra", first, "--extra", second, "--extra-root", folder,
                 "--out", tmp_path / "t", "--dry-run", "--data-dir", mnist_dir, "--device", "cpu")
    one_line(result, 2, "different labels", rows[3][0], "one label per")
    inside_one = labels_csv(tmp_path / "c.csv", [*rows, (rows[3][0], other)])
    result = cli("train", "--from", "lenet", "--extra", inside_one, "--extra-root", folder,
                 "--out", tmp_path / "t", "--dry-run", "--data-dir", mnist_dir, "--device", "cpu")
    one_line(result, 2, "different labels", rows[3][0])


def test_the_same_labels_twice_trains_each_image_once_and_holds_back_none_it_trains_on(tmp_path, own, capsys):
    from mnist_batch.train import TrainOptions, load_extra

    folder, rows = own
    labels = labels_csv(tmp_path / "l.csv", rows)
    absolute = labels_csv(tmp_path / "abs.csv", [(str(folder / name), label) for name, label in rows[:10]])
    extra = load_extra(TrainOptions(extra=(labels, labels, absolute), extra_root=folder, holdout=0.3))
    assert len(extra.train_y) + len(extra.holdout_y) == 40
    trained = {digit.tobytes() for digit in extra.train_x}
    assert len(extra.holdout_y) >= 10 and not any(digit.tobytes() in trained for digit in extra.holdout_x)
    assert "50 repeated" in capsys.readouterr().err
    assert [source["duplicates"] for source in extra.sources] == [0, 40, 10]


def test_copies_of_one_image_under_two_names_stay_on_one_side_of_the_split(tmp_path, own):
    from mnist_batch.train import TrainOptions, load_extra

    folder, rows = own
    for name, _ in rows:  # every image twice, under two names
        (folder / f"copy-{name}").write_bytes((folder / name).read_bytes())
    labels = labels_csv(tmp_path / "l.csv", [*rows, *((f"copy-{name}", label) for name, label in rows)])
    extra = load_extra(TrainOptions(extra=(labels,), extra_root=folder, holdout=0.3))
    trained = {digit.tobytes() for digit in extra.train_x}
    assert len(extra.holdout_y) >= 10 and not any(digit.tobytes() in trained for digit in extra.holdout_x)


# 16: input sizes and types


@pytest.mark.timeout(30)
def test_files_from_dev_zero_is_one_line_not_a_memory_error(cli, tmp_path):
    result = subprocess.run([MNIST_BATCH, "classify", "--files-from", "/dev/zero", "--out", tmp_path / "o.parquet"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "/dev/zero" in result.stderr and "entry 1" in result.stderr


@pytest.mark.parametrize("separator", ["\n", "\0"])
def test_a_path_longer_than_any_path_in_a_list_names_its_line(cli, tmp_path, separator):
    listing = tmp_path / "list.txt"
    listing.write_bytes(separator.join(["a.png", "b.png", "x" * 5000, "c.png"]).encode())
    result = classify(cli, "--files-from", listing, "--out", tmp_path / "o.parquet")
    one_line(result, 2, str(listing), f"{'line' if separator == chr(10) else 'entry'} 3", "4,096 bytes")


@pytest.mark.parametrize("data, fragment", [
    (b"a.png\n" + b"\n" * 5000, "line 2 begins 4,096 blank lines"),  # as `yes ''` writes them, endlessly
    (b"a.png\0b.png\0" + b"\0" * 70_000, "entry 3 begins 4,096 blank entries"),
])
def test_thousands_of_blank_lines_in_a_row_are_no_list(cli, tmp_path, data, fragment):
    listing = tmp_path / "list"
    listing.write_bytes(data)
    one_line(classify(cli, "--files-from", listing, "--out", tmp_path / "o.parquet"), 2, fragment)


def test_a_list_of_one_nul_is_an_empty_list(cli, tmp_path):
    """`printf '%s\\0' "${files[@]}"` with no files writes one NUL."""
    listing = tmp_path / "list"
    listing.write_bytes(b"\0")
    one_line(classify(cli, "--files-from", listing, "--out", tmp_path / "o.parquet"), 2, "no inputs")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf16_list_is_refused_before_it_names_whole_trees(cli, tmp_path, encoding):
    """Windows PowerShell 5 writes `> list.txt` in UTF-16. Read as bytes, its NULs made a
    NUL-separated list of one-character entries, and "/" walked the whole file system."""
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"/{tmp_path}/a.png\r\n./b.png\r\n".encode(encoding))
    one_line(classify(cli, "--files-from", listing, "--out", tmp_path / "o.parquet"), 2, "UTF-16", "UTF-8")
    assert not (tmp_path / "o.parquet").exists()


def test_a_nul_separated_list_of_one_character_names_is_no_utf16(cli, tmp_path, mnist_test, monkeypatch):
    """`printf '%s\\0' *` in a folder of label folders 0-9 has a NUL at every other byte too."""
    write_pngs(tmp_path, mnist_test.images[:4], mnist_test.labels[:4])
    monkeypatch.chdir(tmp_path)
    names = sorted({str(label) for label in mnist_test.labels[:4]})
    listing = tmp_path / "list"
    listing.write_bytes("".join(f"{name}\0" for name in names).encode())
    result = classify(cli, "--files-from", listing, "--out", tmp_path / "o.parquet")
    assert result.exit_code == 0, result.stderr
    assert rows(tmp_path / "o.parquet")["status"].to_list() == ["ok"] * 4


def test_a_utf8_list_with_a_byte_order_mark_finds_its_first_file(cli, tmp_path, mnist_test):
    """Notepad and Excel start UTF-8 with a byte-order mark: it was part of the first path."""
    [first, second] = write_pngs(tmp_path / "in", mnist_test.images[:2], mnist_test.labels[:2])
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{first}\r\n{second}\r\n".encode())
    result = classify(cli, "--files-from", listing, "--out", tmp_path / "o.parquet")
    assert result.exit_code == 0, result.stderr
    assert rows(tmp_path / "o.parquet")["status"].to_list() == ["ok", "ok"]


def test_a_list_of_paths_longer_than_one_read_is_read_whole(cli, tmp_path, mnist_test):
    from mnist_batch.discover import read_list

    names = [f"{'d' * 200}/{i:05d}.png" for i in range(2000)]  # 400 kB: many reads
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(names) + "\r\n\n")
    assert read_list(str(listing)) == names


def checkpoint_with(tmp_path: Path, **metadata: str) -> Path:
    path = tmp_path / "odd.safetensors"
    save_file(load_file(WEIGHTS / "lenet.safetensors"), str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("metadata, fragment", [
    ({"architecture": json.dumps(["lenet"])}, "architecture"),
    ({"architecture": json.dumps({"name": "lenet"})}, "architecture"),
    ({"architecture": '"lenet"', "notes": "[" * 100_000 + "]" * 100_000}, "notes"),
    ({"architecture": "[" * 100_000 + "]" * 100_000}, "architecture"),
    ({"architecture": '"lenet"', "temperature": '"hot"'}, "temperature"),
    ({"architecture": '"lenet"', "temperature": "[1.5]"}, "temperature"),
    ({"architecture": '"lenet"', "temperature": "0"}, "temperature"),
    ({"architecture": '"lenet"', "temperature": "-1.0"}, "temperature"),
    ({"architecture": '"lenet"', "temperature": "NaN"}, "temperature"),
    ({"architecture": '"lenet"', "temperature": "null"}, "temperature"),
])
def test_checkpoint_metadata_of_the_wrong_type_value_or_depth_is_one_line(cli, tmp_path, digits, metadata, fragment):
    bad = checkpoint_with(tmp_path, **metadata)
    result = classify(cli, digits / "images", "--out", tmp_path / "o.parquet", "--checkpoint", bad)
    one_line(result, 1, str(bad), fragment)


def test_a_fine_tuning_base_with_odd_hyperparameters_is_one_line(cli, tmp_path, mnist_dir):
    bad = checkpoint_with(tmp_path, architecture='"lenet"', hyperparameters='["augment_writers"]')
    result = cli("train", "--from", bad, "--out", tmp_path / "t", "--dry-run", "--data-dir", mnist_dir)
    one_line(result, 1, str(bad), "hyperparameters")


def test_a_result_file_of_a_newer_schema_is_read_with_one_warning(cli, digits, tmp_path):
    newer = str(int(results.SCHEMA_VERSION) + 1)
    frame = pl.read_parquet(digits / "preds.parquet")
    for name in ("a.parquet", "b.parquet"):
        frame.write_parquet(tmp_path / name, metadata={"mnist_batch_schema_version": newer})
    result = cli("report", tmp_path / "a.parquet", tmp_path / "b.parquet", "--json")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "newer" in line and "schema" in line]
    assert len(warnings) == 1 and f"schema version {newer}" in warnings[0] and "2 of the result files" in warnings[0]
    assert "newer" not in cli("report", digits / "preds.parquet", "--json").stderr


@pytest.mark.parametrize("label", [7.5, 10.0, "7.5", " 7.0x"])
def test_a_label_that_is_no_whole_digit_is_a_bad_label(cli, digits, tmp_path, label):
    frame = pl.read_parquet(digits / "preds.parquet")
    values = [label] + ["1" if isinstance(label, str) else 1.0] * (frame.height - 1)
    with_label = frame.with_columns(label=pl.Series(values))
    with_label.write_parquet(tmp_path / "l.parquet")
    one_line(cli("report", tmp_path / "l.parquet"), 1, "label", "0-9")
    labels = tmp_path / "labels.parquet"
    frame.select("path", label=pl.Series(values)).write_parquet(labels)
    one_line(cli("report", digits / "preds.parquet", "--labels", labels), 1, "0-9")


def test_whole_float_labels_still_count(cli, digits, tmp_path):
    frame = pl.read_parquet(digits / "preds.parquet")
    truth = frame["path"].str.extract(r"/(\d)/[^/]+$").cast(pl.Float64)
    frame.with_columns(label=truth).write_parquet(tmp_path / "l.parquet")
    figures = json.loads(cli("report", tmp_path / "l.parquet", "--json").stdout)
    assert figures["labels"]["evaluated"] == 12


def test_two_report_outputs_on_one_file_are_a_usage_error(cli, digits, tmp_path):
    same = tmp_path / "out.csv"
    one_line(cli("report", digits / "preds.parquet", "--review", same, "--json-out", same), 2, "--review",
             "--json-out")
    one_line(cli("report", digits / "preds.parquet", "--html", same, "--json-out", tmp_path / "." / "out.csv"), 2,
             "--json-out", "--html")
    assert not same.exists()


def test_a_bundled_name_wins_over_a_folder_of_that_name_in_the_current_folder(cli, digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet").mkdir()
    (tmp_path / "smallbn").write_bytes(b"not a checkpoint")
    image = str(next((digits / "images").rglob("*.png")))
    for name in ("lenet", "smallbn"):
        result = classify(cli, image, "--out", f"{name}.parquet", "--checkpoint", name)
        assert result.exit_code == 0, result.stderr
        assert rows(tmp_path / f"{name}.parquet")["checkpoint_sha256"][0] == file_sha256(
            WEIGHTS / f"{name}.safetensors")
        assert f"./{name}" in result.stderr  # it says which was used, and how to name the other
    # a path with a slash is a path
    one_line(classify(cli, image, "--out", "x.parquet", "--checkpoint", "./smallbn"), 1, "smallbn",
             "not a readable safetensors file")


def test_a_labels_root_that_does_not_exist_is_a_usage_error(cli, digits, tmp_path):
    labels = labels_csv(tmp_path / "l.csv", [("0/00003.png", "0")])
    one_line(cli("report", digits / "preds.parquet", "--labels", labels, "--labels-root", tmp_path / "nowhere"), 2,
             "--labels-root", "nowhere")
    one_line(cli("report", digits / "preds.parquet", "--labels-root", digits), 2, "--labels-root", "--labels")


def test_a_folder_named_as_a_checkpoint_and_a_file_on_the_output_path_are_named_as_such(cli, digits, tmp_path):
    """Both said the wrong thing: a folder (a train --out, say) was "not found", and an output under
    a file was "creating .x.csv.lock failed (File exists)"."""
    image = next((digits / "images").rglob("*.png"))
    one_line(classify(cli, image, "--out", tmp_path / "x.csv", "--checkpoint", digits), 1, str(digits), "is a folder")
    (tmp_path / "notes.txt").write_text("a file\n")
    one_line(classify(cli, image, "--out", tmp_path / "notes.txt" / "sub" / "x.csv"), 1,
             f"{tmp_path / 'notes.txt'} is a file, not a folder")


# 17: terminal and files


def test_report_lines_are_not_wrapped_when_stdout_is_no_terminal(digits, tmp_path):
    name = "a-checkpoint-with-a-long-descriptive-name-" + "x" * 80 + ".safetensors"
    frame = pl.read_parquet(digits / "preds.parquet").with_columns(checkpoint=pl.lit(name))
    frame.write_parquet(tmp_path / "long.parquet")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([MNIST_BATCH, "report", tmp_path / "long.parquet", "--labels-from-dirs"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(name in line and line.endswith("12 rows") for line in lines), result.stdout
    assert any(line.startswith("0 rows without label") and line.endswith("labelled but not classified")
               for line in lines), result.stdout
    assert not any(line != line.rstrip() for line in lines), "no padding to a width either"


def test_a_review_threshold_of_one_reviews_every_row(cli, digits, tmp_path):
    frame = pl.read_parquet(digits / "preds.parquet")
    certain = frame.with_columns(confidence=pl.when(pl.int_range(pl.len()) < 4).then(pl.lit(1.0, pl.Float32))
                                 .otherwise(pl.col("confidence")))
    certain.write_parquet(tmp_path / "p.parquet")
    review = tmp_path / "review.csv"
    result = cli("report", tmp_path / "p.parquet", "--review", review, "--review-threshold", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["below_threshold"] == 12
    assert pl.read_csv(review).height == 12
    assert "1 means every" in " ".join(cli("report", "--help").stdout.split())
