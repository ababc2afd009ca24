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

from mnist_batch import model, onnx_inference, synthetic
from mnist_batch.checkpoints import WEIGHTS, file_sha256
from mnist_batch.errors import UserError
from mnist_batch.model import Inference
from tests.conftest import patched_environment, signalled_call, write_pngs


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
        synthetic.non_digit_bank(200, mnist_test.images, mnist_test.labels, seed=3),
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


def test_rows_below_the_minimum_digit_score_get_no_second_look(mnist_test):
    """Generated non-digits beside MNIST digits: the rows whose digit score is under the minimum
    (classify writes them as not_digit, without probabilities) are not looked at again; every other
    row's probabilities are those of a run with no minimum."""
    digits = np.concatenate([mnist_test.images[:300],
                             synthetic.non_digit_bank(300, mnist_test.images, mnist_test.labels, seed=4)])
    inference = onnx_inference.load("smallbn", "cpu")
    seen = []

    def log_probs(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return inference.log_probs(batch)

    from mnist_batch.checkpoints import NUDGES, SURE, row_scores, split_scores

    ok = [True] * len(digits)
    every, score = row_scores(log_probs, digits, ok, inference.temperature)
    unsure = split_scores(inference.log_probs(digits), inference.temperature)[0].max(axis=1) < SURE
    seen.clear()
    probs, same_score = row_scores(log_probs, digits, ok, inference.temperature, 0.25)
    kept = ~(score < 0.25)  # results.build_rows rejects the others
    assert (unsure & ~kept).sum() > 100 and (unsure & kept).sum() >= 5  # both kinds are tested
    assert seen == [len(digits), len(NUDGES) * int((unsure & kept).sum())]
    assert np.abs(probs[kept] - every[kept]).max() < 1e-6 and (same_score == score).all()
    # A row whose score is the minimum itself is kept, and looked at again.
    at = int(np.flatnonzero(unsure & kept)[0])
    probs = row_scores(inference.log_probs, digits, ok, inference.temperature, float(score[at]))[0]
    assert np.abs(probs[at] - every[at]).max() < 1e-6


def classify(folder: Path, out: Path, cache: Path, *args, notes: list | None = None) -> tuple[pl.DataFrame, bool]:
    """The real CLI in a new process: its rows, and whether torch was imported; its notes, the
    lines of stderr that are not import times, go into `notes` when given."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mnist_batch", "classify", folder, "--out", out,
                           "--device", "cpu", "--quiet", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    if notes is not None:
        notes.extend(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return pl.read_parquet(out), "torch" in imported


def cache_notes(notes: list, folder: Path, why: str) -> list:
    start = f"mnist-batch: note: the export cache {folder} {why}, so it is not used"
    return [line for line in notes if line.startswith(start)]


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
    notes = []
    rows, _ = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache", "--checkpoint", mine, notes=notes)
    assert rows["digit_score"].null_count() == 0
    assert rows["checkpoint_sha256"].unique().to_list() == [file_sha256(mine)]
    # The user learns why every run exports again, and what to do, once.
    assert len(cache_notes(notes, folder, "can be written by others")) == 1, notes
    assert "chmod 700" in cache_notes(notes, folder, "can be written by others")[0]


def test_a_cache_folder_that_is_a_symlink_is_neither_read_nor_written(tmp_path, mnist_test):
    """A link where the export folder should be: whoever can change where it points could swap in
    a folder of planted exports between the check and the read. The folder is checked and used
    through one descriptor, and a link is not opened at all."""
    write_pngs(tmp_path / "in", mnist_test.images[:20], mnist_test.labels[:20])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "cache" / "mnist-batch").mkdir(parents=True)
    (tmp_path / "cache" / "mnist-batch" / "onnx").symlink_to(elsewhere)
    notes = []
    rows, _ = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache", "--checkpoint", mine, notes=notes)
    assert rows["status"].to_list() == ["ok"] * 20
    assert not list(elsewhere.iterdir())
    assert len(cache_notes(notes, tmp_path / "cache" / "mnist-batch" / "onnx", "is a symlink")) == 1, notes


def test_a_damaged_export_in_the_cache_is_made_again(tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:20], mnist_test.labels[:20])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    cached = tmp_path / "cache" / "mnist-batch" / "onnx" / f"{file_sha256(mine)}.onnx"
    cached.parent.mkdir(parents=True, mode=0o700)
    cached.write_bytes(b"not an onnx file")
    rows, _ = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache", "--checkpoint", mine)
    assert rows["status"].to_list() == ["ok"] * 20
    assert cached.read_bytes().startswith(b"\x08")  # an ONNX model (protobuf) again


def test_the_python_api_writes_no_telemetry_file_and_leaves_the_environment_as_it_was(tmp_path):
    """ONNX Runtime's telemetry writes $TMPDIR/.ses on import unless told not to; the API must not
    leave that setting behind in the caller's environment either."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    code = ("import os, numpy, mnist_batch; c = mnist_batch.Classifier('lenet', device='cpu'); "
            "print(c.predict_one(numpy.zeros((28, 28), numpy.uint8) + 255 * numpy.eye(28, dtype=numpy.uint8))[0], "
            "'ORT_DISABLE_TELEMETRY' in os.environ)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(spool), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "False"
    assert not list(spool.iterdir())


def test_an_altered_export_in_the_cache_is_made_again(tmp_path, mnist_test):
    """One weight of a kept export changed (a bit flip on disk, an edit), its metadata intact: it
    no longer gives the answers to the probe that torch gave, so it is made again, not trusted."""
    import onnx
    from onnx import numpy_helper

    write_pngs(tmp_path / "in", mnist_test.images[:20], mnist_test.labels[:20])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    honest, _ = classify(tmp_path / "in", tmp_path / "honest.parquet", tmp_path / "cache", "--checkpoint", mine)
    cached = tmp_path / "cache" / "mnist-batch" / "onnx" / f"{file_sha256(mine)}.onnx"
    altered = onnx.load(cached)
    weights = altered.graph.initializer[0]
    values = numpy_helper.to_array(weights).copy()
    values.flat[0] += 0.5
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))
    onnx.save(altered, cached)
    rows, imported_torch = classify(tmp_path / "in", tmp_path / "out.parquet", tmp_path / "cache", "--checkpoint", mine)
    assert imported_torch  # made again
    probabilities = pl.col("^prob_.*$")
    assert np.abs(rows.select(probabilities).to_numpy() - honest.select(probabilities).to_numpy()).max() < 1e-6
    assert onnx.load(cached).graph.initializer[0] == onnx.load(WEIGHTS / "lenet.onnx").graph.initializer[0]


@pytest.mark.parametrize("checkpoint", sorted(WEIGHTS.glob("*.safetensors")), ids=lambda path: path.stem)
def test_each_bundled_checkpoint_ships_its_own_export(checkpoint):
    """`make bundle` writes NAME.onnx beside NAME.safetensors: an export of another checkpoint
    (a re-bundle without it) would be passed over, and every run would import torch again."""
    exported = checkpoint.with_suffix(".onnx").read_bytes()
    inference = onnx_inference.OnnxInference(checkpoint, exported, file_sha256(checkpoint))
    assert inference.sha256 == file_sha256(checkpoint)


def test_a_checkpoint_rewritten_while_it_is_exported_is_never_kept_under_its_old_hash(tmp_path, monkeypatch):
    """A training run replaces the checkpoint while classify exports it: the export, of the new
    network, was kept under the old file's SHA-256, and every later run of the old checkpoint
    gave the new network's rows. Made certain here: the file is replaced as the exporter reads it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mine = shutil.copy(WEIGHTS / "smallbn.safetensors", tmp_path / "mine.safetensors")
    real_load = model.load_checkpoint

    def load_after_a_rewrite(path, device="cpu"):
        shutil.copy(WEIGHTS / "lenet.safetensors", mine)
        return real_load(path, device)

    monkeypatch.setattr(model, "load_checkpoint", load_after_a_rewrite)
    with pytest.raises(UserError, match="changed while it was being read"):
        onnx_inference.load(mine, "cpu")
    monkeypatch.setattr(model, "load_checkpoint", real_load)
    shutil.copy(WEIGHTS / "smallbn.safetensors", mine)
    assert onnx_inference.load(mine, "cpu").knows_non_digits  # smallbn's network, not LeNet's


def without_a_home(tmp_path: Path) -> dict:
    """The environment of an account with no $HOME and no entry in the password database (a
    container run under an arbitrary user id): Path.home() raises RuntimeError."""
    environment = {name: value for name, value in os.environ.items() if name not in ("HOME", "XDG_CACHE_HOME")}
    return patched_environment(tmp_path, """
import pwd
def getpwuid(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")
pwd.getpwuid = getpwuid
""", environment)


@pytest.mark.parametrize("checkpoint", ["smallbn", "mine"])
def test_classify_runs_where_there_is_no_home_for_a_cache(checkpoint, tmp_path, mnist_test):
    """Without a cache, a bundled checkpoint's export serves, and one's own is exported anew each run."""
    write_pngs(tmp_path / "in", mnist_test.images[:10], mnist_test.labels[:10])
    shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    named = checkpoint if checkpoint != "mine" else str(tmp_path / "mine.safetensors")
    done = subprocess.run([sys.executable, "-m", "mnist_batch", "classify", tmp_path / "in", "--out",
                           tmp_path / "out.parquet", "--device", "cpu", "--quiet", "--checkpoint", named],
                          capture_output=True, text=True, env=without_a_home(tmp_path))
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(tmp_path / "out.parquet")["status"].to_list() == ["ok"] * 10


def test_an_unreadable_checkpoint_is_the_same_one_line_error_as_before(tmp_path, mnist_test):
    """Hashing it for its export said "PermissionError: ..." instead of naming the checkpoint."""
    write_pngs(tmp_path / "in", mnist_test.images[:4], mnist_test.labels[:4])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    mine.chmod(0)
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    done = subprocess.run([*as_user, sys.executable, "-m", "mnist_batch", "classify", tmp_path / "in", "--out",
                           tmp_path / "out.parquet", "--device", "cpu", "--quiet", "--checkpoint", mine],
                          capture_output=True, text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert done.returncode == 1
    assert done.stderr.startswith(f"mnist-batch: error: checkpoint {mine} is not a readable safetensors file")
    assert len(done.stderr.splitlines()) == 1


def test_a_stop_signal_that_torch_turns_into_an_error_while_exporting_is_an_interruption(tmp_path, mnist_test):
    """Not an export that failed: no note, no fallback to torch loading the checkpoint again after
    the stop. Made certain here: SIGTERM inside the exporter, swallowed and raised as a RuntimeError."""
    environment = patched_environment(tmp_path, signalled_call("torch.onnx", "export", "the exporter's own error"),
                                      {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    write_pngs(tmp_path / "in", mnist_test.images[:4], mnist_test.labels[:4])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    done = subprocess.run([sys.executable, "-m", "mnist_batch", "classify", tmp_path / "in", "--out",
                           tmp_path / "out.parquet", "--device", "cpu", "--quiet", "--checkpoint", mine],
                          capture_output=True, text=True, env=environment)
    assert done.returncode == 130, done.stderr
    assert done.stderr.startswith("mnist-batch: error: interrupted") and "note" not in done.stderr


def test_a_fault_of_its_own_while_reading_a_stored_export_is_not_taken_for_a_damaged_export(monkeypatch):
    """Only what ONNX Runtime raises for a model it cannot load, or metadata that is not this
    checkpoint's, sends load on to the next export; anything else is a fault to be seen, not an
    export made again with torch at every run."""
    def export_again(*args):
        raise AssertionError("exported again")

    def faulty_session(*args, **kwargs):
        raise TypeError("a fault of the code")

    monkeypatch.setattr(onnx_inference, "export", export_again)
    monkeypatch.setattr(onnx_inference.runtime(), "InferenceSession", faulty_session)
    with pytest.raises(TypeError, match="a fault of the code"):
        onnx_inference.load("lenet", "cpu")


def test_an_unreadable_export_in_the_cache_is_made_again(tmp_path, mnist_test):
    write_pngs(tmp_path / "in", mnist_test.images[:4], mnist_test.labels[:4])
    mine = shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "mine.safetensors")
    cached = tmp_path / "cache" / "mnist-batch" / "onnx" / f"{file_sha256(mine)}.onnx"
    cached.parent.mkdir(parents=True, mode=0o700)
    shutil.copy(WEIGHTS / "lenet.onnx", cached)
    cached.chmod(0)
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    done = subprocess.run([*as_user, sys.executable, "-m", "mnist_batch", "classify", tmp_path / "in", "--out",
                           tmp_path / "out.parquet", "--device", "cpu", "--quiet", "--checkpoint", mine],
                          capture_output=True, text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert cached.stat().st_mode & 0o400  # the new export, in its place


def test_a_huge_file_given_as_checkpoint_is_refused_before_it_is_read_whole(tmp_path, mnist_test):
    """A file given by mistake, larger than the memory: hashed whole (for its export's name) before
    anything read its header, it ended in a MemoryError, or the kernel killing classify. Made
    certain here: 2 GiB of zeros (sparse) under a 1.5 GiB limit on the process's data."""
    import resource

    write_pngs(tmp_path / "in", mnist_test.images[:2], mnist_test.labels[:2])
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as file:
        file.truncate(2 << 30)

    def limit_data():
        resource.setrlimit(resource.RLIMIT_DATA, (3 << 29, 3 << 29))

    done = subprocess.run([sys.executable, "-m", "mnist_batch", "classify", tmp_path / "in", "--out",
                           tmp_path / "out.parquet", "--device", "cpu", "--quiet", "--checkpoint", huge],
                          capture_output=True, text=True, preexec_fn=limit_data,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 1
    assert done.stderr.startswith(f"mnist-batch: error: checkpoint {huge} is not a readable safetensors file")


def test_an_export_kept_before_a_checkpoint_rule_does_not_pass_the_checkpoint_by(tmp_path, mnist_test):
    """A NaN temperature was let through when its export was made and kept: the kept export must
    not make the checkpoint's NaN rows now that the checkpoint is refused for it."""
    import onnx
    from safetensors.numpy import load_file, save_file

    write_pngs(tmp_path / "in", mnist_test.images[:4], mnist_test.labels[:4])
    mine = tmp_path / "mine.safetensors"
    save_file(load_file(WEIGHTS / "lenet.safetensors"), str(mine), metadata={"architecture": '"lenet"',
                                                                             "temperature": "NaN"})
    kept = onnx.load(WEIGHTS / "lenet.onnx")
    onnx.helper.set_model_props(kept, {"checkpoint_sha256": file_sha256(mine), "temperature": "nan", "classes": "10"})
    folder = tmp_path / "cache" / "mnist-batch" / "onnx"
    folder.mkdir(parents=True, mode=0o700)
    onnx.save(kept, folder / f"{file_sha256(mine)}.onnx")
    done = subprocess.run([sys.executable, "-m", "mnist_batch", "classify", tmp_path / "in", "--out",
                           tmp_path / "out.parquet", "--device", "cpu", "--quiet", "--checkpoint", mine],
                          capture_output=True, text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 1
    assert done.stderr.startswith(f"mnist-batch: error: checkpoint {mine}: metadata 'temperature' is NaN, not a")
    assert len(done.stderr.splitlines()) == 1
