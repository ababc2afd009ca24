"""Package, data, model, checkpoints, train and evaluate, through the real CLI."""

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mnist_batch.checkpoints import WEIGHTS, split_scores
from mnist_batch.errors import UserError
from mnist_batch.model import Inference, LeNet, normalize

LENET = WEIGHTS / "lenet.safetensors"

BIN = Path(sys.executable).parent


def test_torchvision_imports_in_installed_environment():
    done = subprocess.run([sys.executable, "-c", "import torchvision, torchvision.transforms.v2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_lenet_has_the_original_notebooks_architecture():
    model = LeNet()
    assert sum(p.numel() for p in model.parameters()) == 60_074
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_help_version_and_exit_codes(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for word in ("train", "evaluate", "classify", "report", "Exit codes"):
        assert word in result.stdout
    for command in ("train", "evaluate", "classify", "report"):
        assert "Example" in cli(command, "--help").stdout
    assert cli("--version").stdout.startswith("mnist-batch ")


def test_console_script_runs_as_a_subprocess(mnist_dir):
    done = subprocess.run([BIN / "mnist-batch", "evaluate", "--json", "--data-dir", mnist_dir],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 10_000
    module = subprocess.run([sys.executable, "-m", "mnist_batch", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and "mnist-batch" in module.stdout


@pytest.mark.parametrize("name, target", [(None, 0.996), ("lenet", 0.99), ("smallbn", 0.996)])
def test_bundled_checkpoints_score_their_targets_and_match_their_metadata(cli, mnist_dir, name, target):
    result = cli("evaluate", "--json", "--data-dir", mnist_dir, *(["--checkpoint", name] if name else []))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["checkpoint"]).name == f"{name or 'smallbn'}.safetensors"
    assert report["accuracy"] >= target
    assert report["accuracy"] == pytest.approx(report["recorded_test_accuracy"], abs=1e-4)
    assert len(report["per_class_accuracy"]) == 10


@pytest.mark.parametrize("name", ["lenet", "smallbn"])
def test_prediction_with_batch_norm_folded_and_small_cpu_batches_gives_the_trained_networks_scores(name, mnist_test):
    """Inference runs a copy with each BatchNorm folded into its layer, 128 images at a time on
    the CPU: the rows must be those of the network as trained and saved, within 1e-5."""
    inference = Inference(name, "cpu")
    digits = mnist_test.images[:3000].copy()
    probs, digit_score = split_scores(inference.log_probs(digits), inference.temperature)
    with torch.inference_mode():
        log_probs = inference.model(normalize(torch.from_numpy(digits.copy())))
    expected, expected_score = split_scores(log_probs.numpy(), inference.temperature)
    assert abs(probs - expected).max() < 1e-5
    assert (digit_score is None) == (name == "lenet")
    if digit_score is not None:
        assert abs(digit_score - expected_score).max() < 1e-5
    if name == "smallbn":
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in inference.predictor.modules())


def test_pieces_of_a_batch_side_by_side_give_the_rows_bit_for_bit(mnist_test):
    """classify runs the pieces of a batch on one thread per core, each on one torch thread:
    a machine with more cores must not give other rows (torch's own threads round differently)."""
    digits = mnist_test.images[:2000].copy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = Inference("smallbn", "cpu").scores(digits, [True] * len(digits))
        side_by_side = Inference("smallbn", "cpu", cpu_threads=3).scores(digits, [True] * len(digits))
    finally:
        torch.set_num_threads(threads)
    assert (alone[0] == side_by_side[0]).all() and (alone[1] == side_by_side[1]).all()


def one_line_error(result, *words):
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


def test_missing_data_directory_is_one_line(cli, tmp_path):
    one_line_error(cli("evaluate", "--data-dir", tmp_path), "t10k-images-idx3-ubyte", "--download")


def test_corrupt_or_gzipped_data(cli, tmp_path, mnist_dir):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(mnist_dir / name, tmp_path / name)
    # gzip is read as well as raw
    raw = (mnist_dir / "t10k-images-idx3-ubyte").read_bytes()
    # level 6, gzip's own default: Python's 9 takes 2 CPU-s more for a file 2% smaller
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw, compresslevel=6))
    assert cli("evaluate", "--data-dir", tmp_path).exit_code == 0
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes((mnist_dir / "t10k-labels-idx1-ubyte").read_bytes()[:-10])
    one_line_error(cli("evaluate", "--data-dir", tmp_path), "t10k-labels-idx1-ubyte", "corrupt")


def test_a_gzip_bomb_named_like_mnist_is_read_no_further_than_mnist_goes(cli, tmp_path, mnist_dir):
    """256 MB of zeros in a 250 kB .gz: inflated whole it took memory by the gigabyte before the
    MD5 check refused it. Only what the file should hold, and a byte more, is read."""
    import tracemalloc

    from mnist_batch import data

    shutil.copy(mnist_dir / "t10k-labels-idx1-ubyte", tmp_path / "t10k-labels-idx1-ubyte")
    bomb = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", 9) as file:
        for _ in range(16):
            file.write(bytes(1 << 24))
    one_line_error(cli("evaluate", "--data-dir", tmp_path), "t10k-images-idx3-ubyte.gz", "corrupt")
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="corrupt"):
            data.read_idx(bomb, data.IMAGES_MAGIC, 10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # MNIST's test images are 7.8 MB


def test_bad_checkpoints_fail_with_one_line(cli, tmp_path, mnist_dir):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(LENET.read_bytes()[:5000])
    one_line_error(cli("evaluate", "--checkpoint", truncated, "--data-dir", mnist_dir), "truncated.safetensors")

    not_a_checkpoint = tmp_path / "photo.safetensors"
    not_a_checkpoint.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    one_line_error(cli("evaluate", "--checkpoint", not_a_checkpoint, "--data-dir", mnist_dir), "not a readable")

    other = tmp_path / "other.safetensors"
    save_file(load_file(LENET), str(other), metadata={"architecture": json.dumps("resnet18")})
    one_line_error(cli("evaluate", "--checkpoint", other, "--data-dir", mnist_dir), "resnet18", "lenet")

    reshaped = tmp_path / "reshaped.safetensors"
    tensors = load_file(LENET)
    tensors["fc3.weight"] = torch.zeros(5, 84)
    save_file(tensors, str(reshaped), metadata={"architecture": json.dumps("lenet")})
    one_line_error(cli("evaluate", "--checkpoint", reshaped, "--data-dir", mnist_dir), "fc3.weight", "(10, 84)")

    one_line_error(cli("evaluate", "--checkpoint", tmp_path / "absent.safetensors"), "not found")


def test_debug_shows_the_traceback(cli, tmp_path):
    from mnist_batch.errors import UserError

    debugged = cli("--debug", "evaluate", "--checkpoint", tmp_path / "absent.safetensors")
    assert isinstance(debugged.exception, UserError)  # raised through: the traceback shows
    plain = cli("evaluate", "--checkpoint", tmp_path / "absent.safetensors")
    assert isinstance(plain.exception, SystemExit) and plain.exit_code == 1  # one line instead


def test_dry_run_trains_end_to_end_on_real_mnist(cli, tmp_path, mnist_dir):
    out = tmp_path / "run"
    result = cli("train", "--dry-run", "--data-dir", mnist_dir, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True and len(summary["history"]) == 1
    for name in ("lenet.safetensors", "metrics.json", "loss.png", "accuracy.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "metrics.json").read_text())["history"][0]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy"} <= set(history)
    # evaluate reproduces the accuracy recorded in the checkpoint's metadata
    evaluated = json.loads(cli("evaluate", "--checkpoint", out / "lenet.safetensors",
                               "--data-dir", mnist_dir, "--json").stdout)
    assert evaluated["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-4)
    assert evaluated["accuracy"] > 0.5  # ten batches already learn something


def test_same_seed_gives_same_weights_on_cpu(cli, tmp_path, mnist_dir):
    def weights(seed, name):
        out = tmp_path / name
        args = ("train", "--dry-run", "--device", "cpu", "--threads", "1", "--seed", seed, "--data-dir", mnist_dir,
                "--out", out)  # the threads are chosen by the load otherwise, and they change the sums' order
        assert cli(*args).exit_code == 0
        return load_file(out / "lenet.safetensors")

    first, second, other = weights(7, "a"), weights(7, "b"), weights(8, "c")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


def test_unavailable_device_is_a_user_error(cli, mnist_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # CI has none, so CI always runs this
    one_line_error(cli("train", "--device", "cuda", "--dry-run", "--data-dir", mnist_dir, "--out", tmp_path),
                   "cuda", "not available")


@pytest.mark.parametrize("arch", ["lenet", "smallbn"])
def test_the_recorded_figures_are_exactly_what_evaluate_gives_for_the_written_checkpoint(trained_with_writers, arch):
    trained, out, evaluation = trained_with_writers(arch)  # shared with test_real_writers.py
    assert trained.exit_code == 0, trained.stderr
    recorded = json.loads((out / "metrics.json").read_text())
    assert evaluation.exit_code == 0, evaluation.stderr
    evaluated = json.loads(evaluation.stdout)
    assert evaluated["recorded_test_accuracy"] == recorded["test_accuracy"] == evaluated["accuracy"]
    assert (recorded["test_loss"], recorded["per_class_accuracy"]) == (evaluated["loss"],
                                                                         evaluated["per_class_accuracy"])
    assert recorded["history"][-1]["test_accuracy"] == evaluated["accuracy"]


@pytest.mark.parametrize("ready, requested, threads", [("1/150", 0, 2), ("2/150", 0, 1), ("3/150", 0, 1),
                                                       ("9/150", 0, 1), ("9/150", 2, 2)])
def test_train_takes_one_thread_per_core_that_other_processes_leave_free(tmp_path, ready, requested, threads):
    from mnist_batch.cores import threads_for

    loadavg = tmp_path / "loadavg"
    loadavg.write_text(f"2.00 1.50 1.00 {ready} 4242\n")  # the tasks ready to run count this process
    assert threads_for(requested, 2, loadavg) == threads


def test_train_records_the_threads_it_used(cli, tmp_path, mnist_dir):
    out = tmp_path / "run"
    assert cli("train", "--dry-run", "--threads", "1", "--device", "cpu", "--data-dir", mnist_dir,
               "--out", out).exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["threads"] == 1


def test_a_gpu_trains_with_larger_batches_unless_told_otherwise():
    from mnist_batch.train import TrainOptions, recipe

    assert recipe(TrainOptions(), torch.device("cpu")) == (256, 0.015)  # the CPU recipe as before
    assert recipe(TrainOptions(), torch.device("cuda")) == (512, 0.02)
    assert recipe(TrainOptions(batch_size=64, lr=0.001), torch.device("cuda")) == (64, 0.001)
