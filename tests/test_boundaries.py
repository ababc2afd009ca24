"""Arguments at the edges (issue 19, items 7, 9, 10, 16, 17): a resume under another checkpoint,
the Python API's argument types, labels files with empty paths, conflicts and repeats, list
files and checkpoints of absurd sizes, future result files, and the report's options and layout."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnist_batch
from mnist_batch import results
from mnist_batch.model import DEFAULT_CHECKPOINT, file_sha256
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
    crashed_run(cli, [folder / "0.png"], out)  # its rows came from the bundled lenet
    result = classify(cli, folder, "--out", out, "--resume", "--checkpoint", "smallbn")
    line = one_line(result, 2, "lenet.safetensors", "smallbn.safetensors", "--resume")
    assert "--checkpoint" in line
    assert not out.exists() and list(results.parts_dir(out).glob("part-*.parquet"))
    # the same weights under another name are the same checkpoint: the run resumes
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    result = classify(cli, folder, "--out", out, "--resume", "--checkpoint", copy)
    assert result.exit_code == 0, result.stderr
    assert set(rows(out)["checkpoint_sha256"]) == {file_sha256(DEFAULT_CHECKPOINT)} and rows(out).height == 3


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


@pytest.mark.parametrize("inputs", [None, 5, [1], b"images"])
def test_classify_files_checks_its_inputs(digits, tmp_path, inputs):
    with pytest.raises(TypeError, match="inputs"):
        mnist_batch.classify_files(inputs, out=tmp_path / "o.parquet")


@pytest.mark.parametrize("options", [{"batch_size": "8"}, {"max_pixels": True}, {"device": None},
                                     {"checkpoint": 5}])
def test_a_classifier_checks_its_argument_types(options):
    with pytest.raises(TypeError, match=next(iter(options))):
        mnist_batch.Classifier(**options)
