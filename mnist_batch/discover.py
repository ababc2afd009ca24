"""Walking the inputs: files, folders (recursive), lists of paths; filters; sorted order.

A file named explicitly is always an input (a bad one becomes an error row); inside a
folder only files with an image extension count, and hidden files and folders are skipped.
Folder symlinks are followed once: a loop is walked only once.
"""

import fnmatch
import os
import sys
from pathlib import Path

from mnist_batch.errors import USAGE, UserError

# Formats Pillow reads. Listed here rather than asked of Pillow: loading every plugin
# to ask costs start-up time on every run.
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .gif .tif .tiff .webp .pgm .ppm .pbm .pnm "
    ".tga .ico .pcx .sgi .rgb .ras .im .jp2 .j2k .qoi .dds .icns".split()
)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def read_list(source: str) -> list[str]:
    """Paths from a --files-from file (or '-' for stdin), one per line; blank lines ignored."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise UserError(f"cannot read --files-from {source}: {error.strerror}", USAGE) from error
    return [line.strip() for line in text.splitlines() if line.strip()]


def walk(root: str, seen_dirs: set) -> list[str]:
    found = []
    try:
        info = os.stat(root)
    except OSError:
        return found
    if (info.st_dev, info.st_ino) in seen_dirs:
        return found  # a symlink loop, or a folder reached twice
    seen_dirs.add((info.st_dev, info.st_ino))
    try:
        entries = list(os.scandir(root))
    except OSError as error:
        print(f"mnist-batch: warning: cannot list {root}: {error.strerror}; skipped", file=sys.stderr)
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            continue
        if is_dir:
            found.extend(walk(entry.path, seen_dirs))
        elif is_image_name(entry.name):
            found.append(entry.path)
    return found


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def discover(
    inputs: list[str],
    files_from: str | None = None,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> list[str]:
    """Sorted, de-duplicated input paths. A named path that does not exist is kept: it
    becomes an error row, so a typo in a list is reported, not silently lost."""
    named = list(inputs) + (read_list(files_from) if files_from else [])
    if not named:
        raise UserError("no inputs: give image files or folders, or --files-from LIST", USAGE)
    seen_dirs: set = set()
    paths = []
    for item in named:
        if os.path.isdir(item):
            paths.extend(walk(item, seen_dirs))
        else:
            paths.append(item)
    if include:
        paths = [p for p in paths if matches(p, include)]
    if exclude:
        paths = [p for p in paths if not matches(p, exclude)]
    return sorted(set(paths))
