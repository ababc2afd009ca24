"""Writing outputs so that a crash never leaves half a file: every output of every job
(result files, part files, Ray output folders, checkpoints, metrics, reports) goes
through write_atomic."""

import os
import shutil
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process: the rename stays on one file system."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: Path, write) -> None:
    """write(tmp) into a temporary file (or folder) beside `path`, then rename it onto `path`:
    readers see the old output or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    remove(tmp)
    try:
        write(tmp)
        if tmp.is_dir() and path.is_dir():
            # A folder cannot be renamed onto a folder that has files: move the old one aside first.
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
    finally:
        remove(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def remove_temporaries(path: Path) -> None:
    """What a run killed mid-write left beside `path`; the next run for the same output removes it."""
    for tmp in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        remove(tmp)
