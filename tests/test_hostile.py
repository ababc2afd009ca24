"""Hardening round 3 (issue 19, items 1-6): files planted by someone who can write to the
results folder, names that would forge a log line, options that a shell would glob, cells a
spreadsheet would run, and single inputs that killed a whole run. Each test pins one fix."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_batch import files, results
from tests.conftest import write_pngs

BIN = Path(sys.executable).parent
MNIST_BATCH = str(BIN / "mnist-batch")
VICTIM_TEXT = "a file outside the results folder\n"
# A name that would forge a log line and clear the screen if echoed raw.
FORGING = "evil\n2026-01-01T00:00:00Z done: nothing to see\x1b[2J\x1b[H.png"


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([MNIST_BATCH, *map(str, args)], capture_output=True, text=True, timeout=120, **kwargs)


def png(path: Path, digit: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(digit).save(path, "PNG")
    return path


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside every output folder that a planted link points to; it must never change."""
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_text() == VICTIM_TEXT


def one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# 1. No file the tool writes follows a symlink planted in its place.

@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["out-dir", "out"])
def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, mnist_test, victim, mode):
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    res = tmp_path / "res"
    res.mkdir()
    if mode == "out-dir":
        link, output = res / ".mnist-batch.lock", ["--out-dir", res]
    else:
        link, output = res / ".x.parquet.lock", ["--out", res / "x.parquet"]
    link.symlink_to(victim)
    done = run("classify", tmp_path / "inbox", *output, "--quiet")
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"lock file {link}: it is a symbolic link" in line and "remove it" in line
    assert untouched(victim) and link.is_symlink(), "the link is left for a person to look at"
    assert not list(res.glob("*.parquet"))


@pytest.mark.timeout(60)
def test_a_lock_that_does_not_exist_yet_is_never_created_through_a_dangling_link(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    (tmp_path / "res").mkdir()
    target = tmp_path / "nologin"  # a file whose mere existence does harm
    (tmp_path / "res" / ".mnist-batch.lock").symlink_to(target)
    assert run("classify", tmp_path / "inbox", "--out-dir", tmp_path / "res", "--quiet").returncode == 1
    assert not target.exists()


@pytest.mark.timeout(60)
def test_a_parts_folder_that_is_a_symlink_is_refused(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".x.parquet.parts").symlink_to(elsewhere)
    done = run("classify", tmp_path / "inbox", "--out", tmp_path / "x.parquet", "--quiet")
    assert done.returncode == 1
    assert f"folder {tmp_path / '.x.parquet.parts'}: it is a symbolic link" in one_error_line(done)
    assert not list(elsewhere.iterdir()) and not (tmp_path / "x.parquet").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_an_output_that_is_a_symlink_is_replaced_never_written_through(tmp_path, mnist_test, victim, suffix):
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    out = tmp_path / f"x.{suffix}"
    out.symlink_to(victim)
    done = run("classify", tmp_path / "inbox", "--out", out, "--overwrite", "--quiet")
    assert done.returncode == 0, done.stderr
    assert untouched(victim)
    assert not out.is_symlink() and results.scan(out).collect().height == 3

    outputs = {name: tmp_path / "reports" / name for name in ("review.csv", "figures.json", "page.html")}
    outputs["review.csv"].parent.mkdir()
    for path in outputs.values():
        path.symlink_to(victim)
    done = run("report", out, "--review", outputs["review.csv"], "--review-threshold", "1.0",
               "--json-out", outputs["figures.json"], "--html", outputs["page.html"])
    assert done.returncode == 0, done.stderr
    assert untouched(victim)
    assert not any(path.is_symlink() for path in outputs.values())
    assert json.loads(outputs["figures.json"].read_text())["rows"] == 3


@pytest.mark.timeout(120)
def test_train_outputs_that_are_symlinks_are_replaced_never_written_through(tmp_path, mnist_dir, victim):
    out = tmp_path / "trained"
    out.mkdir()
    names = ("lenet.safetensors", "metrics.json", "loss.png", "accuracy.png")
    for name in names:
        (out / name).symlink_to(victim)
    done = run("train", "--dry-run", "--out", out, "--data-dir", mnist_dir, "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    assert untouched(victim)
    assert not any((out / name).is_symlink() for name in names)


def test_a_temporary_file_swapped_for_a_link_mid_write_does_not_redirect_the_write(tmp_path, victim):
    """Someone who watches the folder sees the temporary file appear and puts a link in its place:
    the output is written through the descriptor opened with O_EXCL | O_NOFOLLOW, not by name."""
    out = tmp_path / "out.json"

    def write(target):
        (tmp,) = tmp_path.glob(".out.json.tmp-*")
        tmp.unlink()
        tmp.symlink_to(victim)
        if isinstance(target, (str, Path)):
            Path(target).write_text("new output")
        else:
            target.write(b"new output")

    files.write_atomic(out, write)
    assert untouched(victim)


def test_temporary_names_cannot_be_guessed():
    names = {files.temporary_name("x.parquet") for _ in range(100)}
    assert len(names) == 100 and all(name.startswith(".x.parquet.tmp-") for name in names)
