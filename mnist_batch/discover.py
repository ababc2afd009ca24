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
    """Paths from a --files-from file (or '-' for stdin), one per line. Only the line ending
    (\n or \r\n) is removed, so names keep their spaces; blank lines are skipped. A list with
    NUL bytes (`find -print0`) is split on them instead: no name can hold a NUL, so none is
    lost. Bytes that are not UTF-8 stay as they are on disk (surrogate escapes), so such files
    are found."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read --files-from {source}: {error.strerror}", USAGE) from error
    text = os.fsdecode(data)
    if "\0" in text:
        names = text.split("\0")
    else:
        names = [line.removesuffix("\r") for line in text.split("\n")]
    return [normalise(name) for name in names if name.strip()]


def normalise(path: str) -> str:
    """One spelling per file: `./` segments and doubled or trailing slashes are dropped
    (a.png, ./a.png and dir//a.png -> a.png, dir/a.png). `..` is kept: through a symlinked
    folder it may not mean the parent."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    joined = "/".join(parts)
    return "/" + joined if path.startswith("/") else joined or "."


def walk(root: str, seen_dirs: set) -> list[str]:
    """Image files under root, depth-first without recursion (trees may be thousands deep).
    A folder that cannot be listed is returned itself, so that it gets an `unreadable` row;
    a name like an image that cannot be stat'ed (a symlink loop, a dangling link) too."""
    found, folders = [], [root]
    while folders:
        folder = folders.pop()
        try:
            info = os.stat(folder)
        except OSError:
            found.append(folder)
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            continue  # a symlink loop, or a folder reached twice
        seen_dirs.add((info.st_dev, info.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError:
            found.append(folder)
            continue
        prefix = "" if folder == "." else folder.rstrip("/") + "/"
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                folders.append(prefix + entry.name)
            elif is_image_name(entry.name):
                found.append(prefix + entry.name)
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
    """Sorted, de-duplicated, normalised input paths. An input named on the command line must
    exist when the run starts (a typo is a usage error); a path in a --files-from list that
    does not exist is kept and becomes a `missing` row, since a list can be stale."""
    named = [normalise(item) for item in inputs]
    absent = [item for item in named if not os.path.lexists(item)]
    if absent:
        raise UserError(f"{absent[0]}: no such file or folder; check the spelling", USAGE)
    named += read_list(files_from) if files_from else []
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
