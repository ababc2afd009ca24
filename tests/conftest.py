import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_batch.cli import app

# CPU time of the test run, not what any test asserts. The tests run on a 2-core machine shared with
# other work: torch's OpenMP threads spin waiting for each other (OMP_WAIT_POLICY=PASSIVE lets them
# sleep instead; it changes no result), and glibc handed each large tensor back to the kernel on free
# and faulted in fresh zeroed pages for the next one (over a quarter of the suite's CPU time was system
# time). Set here, before anything imports torch (nothing above does), they reach this process and
# every subprocess a test starts (which inherit os.environ); a test that wants other values sets its own.
RUNTIME_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
                    "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_TOP_PAD_": str(64 << 20)}
for _name, _value in RUNTIME_SETTINGS.items():
    os.environ.setdefault(_name, _value)


def keep_freed_memory() -> None:
    """What the MALLOC_ variables do for a new process, for this one (glibc reads them at start)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    for option, name in ((m_trim_threshold, "MALLOC_TRIM_THRESHOLD_"), (m_top_pad, "MALLOC_TOP_PAD_"),
                         (m_mmap_threshold, "MALLOC_MMAP_THRESHOLD_")):
        libc.mallopt(option, int(os.environ[name]))


keep_freed_memory()


def pytest_collection_modifyitems(items):
    """`make test` runs the tests on several workers (pytest-xdist, --dist loadgroup). A module's
    tests stay on one worker, where they share its fixtures; every test that starts a Ray cluster
    goes to the same one, since two clusters starting side by side can take each other's ports."""
    for item in items:
        uses_ray = {"ray_cluster", "two_node_cluster"} & set(item.fixturenames)
        # The tests that read one training run (below) share it only on one worker.
        group = "ray" if uses_ray else "trained" if "trained_with_writers" in item.fixturenames else None
        item.add_marker(pytest.mark.xdist_group(group or item.module.__name__))


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """A cache of the test run's own: classify keeps ONNX exports of test checkpoints there, never in
    the user's ~/.cache, and no export left there by an earlier run (of older code) decides a test."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files, through $MNIST_BATCH_DATA (the Makefile sets it)."""
    env = os.environ.get("MNIST_BATCH_DATA")
    if env and (Path(env) / "t10k-images-idx3-ubyte").is_file():
        return Path(env)
    message = f"real MNIST files not found: set MNIST_BATCH_DATA (now {env!r})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_test(mnist_dir):
    from mnist_batch import data

    return data.load("t10k", mnist_dir)


@pytest.fixture(scope="session")
def classifier():
    """The Python API's classifier on the bundled checkpoint, loaded once."""
    import mnist_batch

    return mnist_batch.Classifier(device="cpu")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole test session: starting one costs seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_with_writers(tmp_path_factory, mnist_dir):
    """`train --arch ARCH --augment-writers --dry-run --device cpu` for real on MNIST, and `evaluate`
    of the checkpoint it wrote, run once per network for the session (tests that each check something
    else of the same run share it; none may change its folder): ARCH -> (train, out folder, evaluate)."""
    runs = {}

    def trained(arch: str):
        if arch not in runs:
            out = tmp_path_factory.mktemp(f"trained-{arch}") / arch
            train = run_cli("train", "--arch", arch, "--augment-writers", "--dry-run", "--device", "cpu",
                            "--data-dir", mnist_dir, "--out", out, "--json")
            evaluated = run_cli("evaluate", "--checkpoint", out / f"{arch}.safetensors", "--device", "cpu",
                                "--data-dir", mnist_dir, "--json")
            runs[arch] = train, out, evaluated
        return runs[arch]

    return trained


def run_cli(*args, input=None):
    """The real CLI in-process; stdout and stderr kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def patched_environment(tmp_path: Path, code: str, environment: dict | None = None) -> dict:
    """`environment` (else this process's) for a Python subprocess that runs `code` first: a
    sitecustomize module in tmp_path/patches, put at the front of PYTHONPATH. A test makes a fault
    certain with it in a real process (a signal inside a library call, a missing package)."""
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "sitecustomize.py").write_text(code)
    base = os.environ if environment is None else environment
    return {**base, "PYTHONPATH": os.pathsep.join([str(patches), os.environ.get("PYTHONPATH", "")])}


def signalled_call(module: str, function: str, error: str, from_call: int = 1) -> str:
    """Code for patched_environment: `module.function`, from its `from_call`-th call on, sends this
    process SIGTERM inside itself and raises RuntimeError(error) for whatever follows, as a library
    that swallows a stop signal and raises an error of its own does."""
    return f"""
import importlib, os, signal
target = importlib.import_module({module!r})
real, calls = getattr(target, {function!r}), [0]
def signalled(*args, **kwargs):
    calls[0] += 1
    if calls[0] < {from_call}:
        return real(*args, **kwargs)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    except BaseException:
        raise RuntimeError({error!r})
setattr(target, {function!r}, signalled)
"""


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray) -> list[Path]:
    """MNIST digits as PNG files under folder/<label>/."""
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / str(label) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def write_tiled_pngs(folder: Path, test, distinct: int, copies: int) -> list[Path]:
    """The first `distinct` MNIST test digits, `copies` times over: many files quickly, for runs
    that must last long enough to be killed or interrupted."""
    return write_pngs(folder, np.tile(test.images[:distinct], (copies, 1, 1)), np.tile(test.labels[:distinct], copies))


def interruptible_classify(folder: Path, out: Path) -> list:
    """A classify command for tests that stop it mid-run: one worker, small batches, so a part
    file appears every 64 rows; the output stays at argument 4 (command[:4] + [other] + command[5:])."""
    return [Path(sys.executable).parent / "mnist-batch", "classify", folder, "--out", out,
            "--quiet", "--workers", "1", "--batch-size", "16"]


@pytest.fixture
def cli():
    return run_cli
