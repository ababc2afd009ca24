"""classify on the CPU without torch: the checkpoint's ONNX export, run by ONNX Runtime, gives
torch's rows; it is made once per checkpoint and kept only where no one else can replace it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mnist_batch import onnx_inference, synthetic
from mnist_batch.checkpoints import WEIGHTS, file_sha256
from mnist_batch.model import Inference
from tests.conftest import write_pngs


@pytest.mark.parametrize("name", ["lenet", "smallbn"])
def test_onnx_runtime_gives_torchs_rows(name, mnist_test):
    """MNIST digits, scan-like ones and non-digits: the same probabilities and digit scores within
    1e-5, the same predicted digit, as the network run by torch."""
    rng = np.random.default_rng(5)
    scans = [synthetic.scanned_digit(mnist_test.images[i], rng) for i in range(200)]
    from mnist_batch import records

    digits = np.concatenate([
        mnist_test.images[:2000],
        records.stack_digits([d.digit for d in map(records.digit_of, scans) if d.status == records.OK]),
        synthetic.non_digit_bank(200, mnist_test.images, seed=3),
    ])
    ok = [True] * len(digits)
    fast, by_torch = onnx_inference.load(name, "cpu", cpu_threads=2), Inference(name, "cpu")
    assert isinstance(fast, onnx_inference.OnnxInference)
    assert np.abs(fast.log_probs(digits) - by_torch.log_probs(digits)).max() < 1e-4
    probs, digit_score = fast.scores(digits, ok)
    expected, expected_score = by_torch.scores(digits, ok)
    assert np.abs(probs - expected).max() < 1e-5
    assert (probs.argmax(1) == expected.argmax(1)).all()
    assert (digit_score is None) == (expected_score is None) == (name == "lenet")
    if digit_score is not None:
        assert np.abs(digit_score - expected_score).max() < 1e-5


def test_rows_the_network_is_unsure_of_get_a_second_look(mnist_test):
    """A row whose top probability is under SURE: the mean over the digit as it is and moved by
    each nudge (black coming in). A sure row: the network's probabilities as they are."""
    from mnist_batch import records
    from mnist_batch.checkpoints import NUDGES, SURE, split_scores

    rng = np.random.default_rng(2)
    decoded = [records.digit_of(synthetic.scanned_digit(mnist_test.images[i], rng)) for i in range(300)]
    digits = records.stack_digits([d.digit for d in decoded if d.status == records.OK])
    inference = onnx_inference.load("smallbn", "cpu")
    probs, _ = inference.scores(digits, [True] * len(digits))
    first = split_scores(inference.log_probs(digits), inference.temperature)[0]
    unsure = first.max(axis=1) < SURE
    assert 5 <= unsure.sum() < len(digits) // 2
    assert (probs[~unsure] == first[~unsure]).all()
    framed = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    looks = [first] + [split_scores(inference.log_probs(framed[:, 2 - down : 30 - down, 2 - right : 30 - right].copy()),
                                    inference.temperature)[0] for down, right in NUDGES]
    assert np.abs(probs[unsure] - np.mean(looks, axis=0)[unsure]).max() < 1e-6


def classify(folder: Path, out: Path, cache: Path, *args) -> tuple[pl.DataFrame, bool]:
    """The real CLI in a new process: its rows, and whether torch was imported."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mnist_batch", "classify", folder, "--out", out,
                           "--device", "cpu", "--quiet", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return pl.read_parquet(out), "torch" in imported


def test_classify_with_a_bundled_checkpoint_never_imports_torch(tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:60], mnist_test.labels[:60])
    rows, imported_torch = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache")
    assert not imported_torch
    assert rows["status"].to_list() == ["ok"] * 60
    assert (rows["pred"].to_numpy() == rows["path"].map_elements(lambda p: int(Path(p).parent.name),
                                                                  return_dtype=pl.Int64).to_numpy()).mean() > 0.95


def test_ones_own_checkpoint_is_exported_once_then_read_without_torch(tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:40], mnist_test.labels[:40])
    mine = shutil.copy(WEIGHTS / "smallbn.safetensors", tmp_path / "mine.safetensors")
    cache = tmp_path / "cache"
    first, exported_with_torch = classify(tmp_path / "in", tmp_path / "1.parquet", cache, "--checkpoint", mine)
    assert exported_with_torch
    assert (cache / "mnist-batch" / "onnx" / f"{file_sha256(mine)}.onnx").is_file()
    again, imported_torch = classify(tmp_path / "in", tmp_path / "2.parquet", cache, "--checkpoint", mine)
    assert not imported_torch
    assert again.drop("run_id", strict=False).equals(first.drop("run_id", strict=False))


def test_an_export_planted_in_a_cache_others_can_write_is_never_used(tmp_path, mnist_test):
    """An export in a world-writable cache folder, labelled with the user's checkpoint: it would decide
    every row. Here it is LeNet's network, which has no digit score; the rows must be smallbn's."""
    import onnx

    write_pngs(tmp_path / "in", mnist_test.images[:20], mnist_test.labels[:20])
    mine = shutil.copy(WEIGHTS / "smallbn.safetensors", tmp_path / "mine.safetensors")
    planted = onnx.load(WEIGHTS / "lenet.onnx")
    onnx.helper.set_model_props(planted, {"checkpoint_sha256": file_sha256(mine), "temperature": "1.0",
                                          "classes": "11"})
    folder = tmp_path / "cache" / "mnist-batch" / "onnx"
    folder.mkdir(parents=True)
    onnx.save(planted, folder / f"{file_sha256(mine)}.onnx")
    folder.chmod(0o777)
    rows, _ = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache", "--checkpoint", mine)
    assert rows["digit_score"].null_count() == 0
    assert rows["checkpoint_sha256"].unique().to_list() == [file_sha256(mine)]


def test_a_damaged_export_in_the_cache_is_made_again(tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:20], mnist_test.labels[:20])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    cached = tmp_path / "cache" / "mnist-batch" / "onnx" / f"{file_sha256(mine)}.onnx"
    cached.parent.mkdir(parents=True, mode=0o700)
    cached.write_bytes(b"not an onnx file")
    rows, _ = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache", "--checkpoint", mine)
    assert rows["status"].to_list() == ["ok"] * 20
    assert cached.read_bytes().startswith(b"\x08")  # an ONNX model (protobuf) again


@pytest.mark.parametrize("checkpoint", sorted(WEIGHTS.glob("*.safetensors")), ids=lambda path: path.stem)
def test_each_bundled_checkpoint_ships_its_own_export(checkpoint):
    """`make bundle` writes NAME.onnx beside NAME.safetensors: an export of another checkpoint
    (a re-bundle without it) would be passed over, and every run would import torch again."""
    inference = onnx_inference.OnnxInference(checkpoint, checkpoint.with_suffix(".onnx").read_bytes())
    assert inference.sha256 == file_sha256(checkpoint)
