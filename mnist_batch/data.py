"""MNIST IDX files: find them, check them, read them into uint8 arrays.

Lookup order: --data-dir, then $MNIST_BATCH_DATA, then the per-user cache
(~/.cache/mnist-batch, or $XDG_CACHE_HOME/mnist-batch). Each place may hold the
files directly or in torchvision's MNIST/raw layout, raw or gzipped.
"""

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mnist_batch.errors import UserError

ENV_VAR = "MNIST_BATCH_DATA"

# MD5 of the uncompressed files (a .gz is checked after decompression).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
COUNTS = {"train": 60_000, "t10k": 10_000}


class Split(NamedTuple):
    images: np.ndarray  # (n, 28, 28) uint8
    labels: np.ndarray  # (n,) uint8
    md5: dict[str, str]  # file name -> MD5, recorded in checkpoints


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-batch"


def data_directory(data_dir: Path | None) -> tuple[Path, str]:
    """Where MNIST is looked for, and which setting said so (for error messages)."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    env = os.environ.get(ENV_VAR)
    return (Path(env), f"${ENV_VAR}") if env else (cache_dir(), "the cache")


def find_file(directory: Path, name: str) -> Path | None:
    for folder in (directory, directory / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def locate(names: list[str], data_dir: Path | None = None, download: bool = False) -> dict[str, Path]:
    """Paths of the named MNIST files, or a UserError saying which is missing and what to do."""
    directory, source = data_directory(data_dir)
    if download:
        fetch(directory)
    found = {name: find_file(directory, name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise UserError(
            f"MNIST file {missing[0]} not found in {directory} ({source}); "
            f"point --data-dir or ${ENV_VAR} at the folder holding the IDX files, or add --download"
        )
    return found  # type: ignore[return-value]


def fetch(directory: Path) -> None:
    """Download with torchvision's MNIST class, which knows the mirrors and checks MD5s."""
    from torchvision.datasets import MNIST

    directory.mkdir(parents=True, exist_ok=True)
    try:
        MNIST(root=str(directory), train=True, download=True)
        MNIST(root=str(directory), train=False, download=True)
    except Exception as error:  # network errors come in many types; all mean the same to the user
        raise UserError(f"could not download MNIST into {directory}: {error}") from error


def read_idx(path: Path, magic: int, count: int) -> tuple[np.ndarray, str]:
    """Read one IDX file, checking magic number, sizes and MD5; returns (array, md5)."""
    name = path.name.removesuffix(".gz")
    dims = 3 if magic == IMAGES_MAGIC else 1
    size = 4 + 4 * dims + count * (28 * 28 if dims == 3 else 1)
    try:
        # No more than the file should hold, and one byte to tell a longer one: a gzip bomb named
        # like MNIST inflated whole took 4.7 GB of memory for every 2 MB of it.
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as file:
            raw = file.read(size + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"cannot read MNIST file {path}: {error}; replace it or use --download") from error
    digest = hashlib.md5(raw).hexdigest()
    if digest != MD5[name]:
        raise UserError(
            f"MNIST file {path} is corrupt (MD5 {digest}, expected {MD5[name]}); "
            "replace it with the original or use --download"
        )
    # The MD5 already pins the content; the header check guards against a swapped name.
    header = np.frombuffer(raw[:4], ">u4")[0]
    if header != magic:
        raise UserError(f"MNIST file {path} has magic {header}, expected {magic}")
    shape = tuple(int(n) for n in np.frombuffer(raw[4 : 4 + 4 * dims], ">u4"))
    if shape[0] != count:
        raise UserError(f"MNIST file {path} holds {shape[0]} items, expected {count}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape), digest


def load(split: str, data_dir: Path | None = None, download: bool = False) -> Split:
    """One split, "train" (60,000 images) or "t10k" (the 10,000 test images)."""
    names = [f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"]
    paths = locate(names, data_dir, download)
    images, images_md5 = read_idx(paths[names[0]], IMAGES_MAGIC, COUNTS[split])
    labels, labels_md5 = read_idx(paths[names[1]], LABELS_MAGIC, COUNTS[split])
    return Split(images, labels, {names[0]: images_md5, names[1]: labels_md5})
