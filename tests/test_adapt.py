"""`adapt`: a checkpoint adapted to a batch's own writers without labels; its provenance, its guards."""

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from mnist_batch import adapt, synthetic, train
from mnist_batch.checkpoints import WEIGHTS, file_sha256

FEW_STEPS = ("--steps", "3", "--threads", "1", "--quiet")


def metadata_of(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in f.metadata().items()}


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def writers(tmp_path_factory, mnist_test):
    """80 MNIST test digits written as dark ink on light paper, larger than 28x28, as scans are."""
    folder = tmp_path_factory.mktemp("writers")
    paths = []
    for i in range(80):
        ink = np.asarray(Image.fromarray(mnist_test.images[i]).resize((56, 56), Image.BICUBIC), np.float32)
        path = folder / f"{i:03d}.png"
        Image.fromarray((235 - ink * 0.8).astype(np.uint8)).save(path)
        paths.append(str(path))
    return folder, paths, mnist_test.labels[:80]


def test_an_adapted_checkpoint_records_what_it_was_adapted_on(cli, tmp_path, writers, mnist_dir):
    folder, paths, labels = writers
    out = tmp_path / "adapted"
    result = cli("adapt", folder, "--from", "smallbn", "--out", out, "--data-dir", mnist_dir, *FEW_STEPS)
    assert result.exit_code == 0, result.stderr
    checkpoint = out / "smallbn-adapted.safetensors"  # told apart from the base by its name alone
    assert str(checkpoint) in result.stdout
    meta = metadata_of(checkpoint)
    adapted = meta["adapted"]
    assert adapted["inputs"] == [str(folder)] and adapted["images"] == len(paths)
    assert adapted["inputs_sha256"] == hashlib.sha256("".join(f"{p}\n" for p in sorted(paths)).encode()).hexdigest()
    assert 50 <= adapted["confident_labels"] <= len(paths)
    assert (adapted["confidence"], adapted["min_digit_score"]) == (0.95, 0.5)
    assert [done["steps"] for done in adapted["rounds"]] == [3, 3, 3]  # three rounds by default
    assert adapted["kept"] == "self-training" and adapted["rounds_kept"] == 3
    assert adapted["mnist_test_accuracy_after"] >= adapt.MNIST_FLOOR == 0.994
    base = WEIGHTS / "smallbn.safetensors"
    assert meta["base_checkpoint"] == {"checkpoint": base.name, "sha256": file_sha256(base),
                                       "test_accuracy": metadata_of(base)["test_accuracy"]}
    assert meta["test_accuracy"] == adapted["mnist_test_accuracy_after"]
    base_meta = metadata_of(base)  # what fine-tuning and classify read of the base carries over
    assert (meta["hyperparameters"], meta["temperature"]) == (base_meta["hyperparameters"], base_meta["temperature"])

    # then labelled fine-tuning on top: first adapt, then fine-tune
    labels_file = tmp_path / "labels.csv"
    with open(labels_file, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *zip(paths[:30], labels[:30], strict=True)])
    tuned = cli("train", "--from", checkpoint, "--extra", labels_file, "--out", tmp_path / "tuned", "--dry-run",
                "--data-dir", mnist_dir, "--device", "cpu", "--threads", "1", "--quiet", "--json")
    assert tuned.exit_code == 0, tuned.stderr
    assert json.loads(tuned.stdout)["base_checkpoint"]["sha256"] == file_sha256(checkpoint)


def test_adapting_on_non_digits_alone_is_refused_and_writes_nothing(cli, tmp_path, mnist_test, mnist_dir):
    rng = np.random.default_rng(0)
    folder = tmp_path / "not-digits"
    folder.mkdir()
    for i in range(60):  # letters and empty printed form fields: no answer may become a label
        drawn = synthetic.non_digit(rng, ("letter", "empty_box")[i % 2], mnist_test.images, mnist_test.labels)
        drawn.save(folder / f"{i:02d}.png")
    out = tmp_path / "adapted"
    result = cli("adapt", folder, "--out", out, "--data-dir", mnist_dir, *FEW_STEPS)
    one_line_error(result, 1, "of the 60 images read as digits", "not changed")
    assert not out.exists()


def test_adapting_on_one_image_repeated_is_one_line_and_writes_nothing(cli, tmp_path, mnist_test, mnist_dir):
    """Sixty copies of one digit: re-estimated on them, the statistics left no sure digit to label,
    and the empty set of labels stopped the run with a RuntimeError from the sampler."""
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(60):
        Image.fromarray(255 - mnist_test.images[0]).save(folder / f"{i:02d}.png")
    out = tmp_path / "adapted"
    result = cli("adapt", folder, "--out", out, "--data-dir", mnist_dir, *FEW_STEPS)
    assert result.exit_code == 1 and "Traceback" not in result.stderr and "RuntimeError" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "nothing was written" in error and "give more images" in error, result.stderr
    assert not out.exists()


def test_a_run_that_would_write_over_its_own_base_is_refused(cli, tmp_path, writers, mnist_dir):
    """train --from DIR/lenet-tuned.safetensors --out DIR (and adapt alike) wrote the new network
    over its base, whose SHA-256 the metadata then named: a file that was gone."""
    out = tmp_path / "out"
    out.mkdir()
    tuned, adapted = out / "lenet-tuned.safetensors", out / "smallbn-adapted.safetensors"
    shutil.copy(WEIGHTS / "lenet.safetensors", tuned)
    shutil.copy(WEIGHTS / "smallbn.safetensors", adapted)
    extra = tmp_path / "extra.csv"
    extra.write_text(f"path,label\n{next(writers[0].rglob('*.png'))},7\n")
    before = file_sha256(tuned), file_sha256(adapted)
    one_line_error(cli("train", "--from", tuned, "--extra", extra, "--out", out, "--data-dir", mnist_dir, "--quiet"),
                   2, "is the file this run would write", "another --out")
    one_line_error(cli("adapt", writers[0], "--from", adapted, "--out", out, "--data-dir", mnist_dir, *FEW_STEPS),
                   2, "is the file this run would write", "another --out")
    assert (file_sha256(tuned), file_sha256(adapted)) == before


def test_a_run_that_would_forget_mnist_writes_nothing(cli, tmp_path, writers, mnist_dir, monkeypatch):
    monkeypatch.setattr(adapt, "MNIST_FLOOR", 1.0)  # no network reaches it
    out = tmp_path / "adapted"
    result = cli("adapt", writers[0], "--out", out, "--data-dir", mnist_dir, "--rounds", "0", *FEW_STEPS)
    one_line_error(result, 1, "below 100.0%", "nothing was written")
    assert not out.exists()


def test_a_self_training_that_forgets_falls_back_to_the_batch_norm_statistics(cli, tmp_path, writers, mnist_dir):
    out = tmp_path / "adapted"
    result = cli("adapt", writers[0], "--out", out, "--data-dir", mnist_dir, "--lr", "5", *FEW_STEPS)
    assert result.exit_code == 0, result.stderr
    assert "writing the BatchNorm re-estimation alone" in result.stderr
    adapted = metadata_of(out / "smallbn-adapted.safetensors")["adapted"]
    assert adapted["kept"] == "batch-norm" and adapted["rounds"][0]["mnist_test_accuracy"] < adapt.MNIST_FLOOR
    assert adapted["mnist_test_accuracy_after"] == adapted["mnist_test_accuracy_batch_norm"] >= adapt.MNIST_FLOOR


def test_a_round_that_forgets_falls_back_to_the_round_before(cli, tmp_path, writers, mnist_dir, monkeypatch):
    real_fit, rates = train.fit, []

    def fit_second_round_at_a_rate_that_forgets(model, stream, epochs, steps, lr, test, progress):
        rates.append(lr)
        return real_fit(model, stream, epochs, steps, 5.0 if len(rates) == 2 else lr, test, progress)

    monkeypatch.setattr(train, "fit", fit_second_round_at_a_rate_that_forgets)
    out = tmp_path / "adapted"
    result = cli("adapt", writers[0], "--out", out, "--data-dir", mnist_dir, "--rounds", "3", *FEW_STEPS)
    assert result.exit_code == 0, result.stderr
    assert "round 2 left MNIST test" in result.stderr and "writing round 1's network" in result.stderr
    checkpoint = out / "smallbn-adapted.safetensors"
    adapted = metadata_of(checkpoint)["adapted"]
    assert len(rates) == 2 and len(adapted["rounds"]) == 2  # no third round after a round that forgot
    first, second = adapted["rounds"]
    assert second["mnist_test_accuracy"] < adapt.MNIST_FLOOR <= first["mnist_test_accuracy"]
    assert adapted["kept"] == "self-training" and adapted["rounds_kept"] == 1
    # the file holds round 1's weights, not round 2's
    evaluated = cli("evaluate", "--checkpoint", checkpoint, "--data-dir", mnist_dir, "--device", "cpu", "--json")
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(first["mnist_test_accuracy"], abs=1e-4)


@pytest.mark.parametrize("args, code, fragment", [
    ((), 2, "no inputs"),
    (("nosuch",), 2, "nosuch: no such file or folder"),
    (("{empty}",), 2, "no image files found"),
    (("{writers}", "--from", "lenet"), 2, "needs a smallbn checkpoint"),
    (("{writers}", "--from", "{tmp}/missing.safetensors"), 1, "missing.safetensors not found"),
    (("{writers}", "--confidence", "2"), 2, "--confidence 2.0"),
    (("{writers}", "--rounds", "-1"), 2, "--rounds -1"),
])
def test_bad_adapt_input_is_one_line(cli, tmp_path, writers, args, code, fragment):
    (tmp_path / "empty").mkdir()
    given = [arg.format(empty=tmp_path / "empty", writers=writers[0], tmp=tmp_path) for arg in args]
    one_line_error(cli("adapt", *given, "--out", tmp_path / "out"), code, fragment)
    assert not (tmp_path / "out").exists()


def test_labels_between_rounds_come_from_the_network_in_eval_mode(mnist_test):
    """A round of training leaves the network in train mode. The next round's labels were read in
    it, BatchNorm using (and updating) the statistics of each 128-image piece: the second round of
    `adapt` then lost 2-4 points instead of gaining (scanned other writers, bench_accuracy.py adapt)."""
    from mnist_batch.checkpoints import split_scores
    from mnist_batch.model import Inference

    inference = Inference("smallbn", "cpu")
    digits = mnist_test.images[:300].copy()
    # the prediction copy, eval mode, without the second look (adapt reads the network's own answers)
    expected, expected_score = split_scores(inference.log_probs(digits), inference.temperature)
    statistics = {name: buffer.clone() for name, buffer in inference.model.named_buffers()}
    inference.model.train()  # as train.fit leaves it
    probs, digit_score = adapt.model_scores(inference, digits)
    assert np.abs(probs - expected).max() < 1e-5 and np.abs(digit_score - expected_score).max() < 1e-5
    assert all((buffer == statistics[name]).all() for name, buffer in inference.model.named_buffers())
