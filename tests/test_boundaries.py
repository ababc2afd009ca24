"""Arguments at the edges (issue 19, items 7, 9, 10, 16, 17): a resume under another checkpoint,
the Python API's argument types, labels files with empty paths, conflicts and repeats, list
files and checkpoints of absurd sizes, future result files, and the report's options and layout."""

import sys
from pathlib import Path

import pytest

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
