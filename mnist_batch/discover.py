"""Walking the inputs: files, folders (recursive), lists of paths; filters; sorted order.

A file named explicitly is always an input (a bad one becomes an error row); inside a
folder only files with an image extension count, and hidden files and folders are skipped.
Folder symlinks are followed once: a loop is walked only once.
"""

import fnmatch
import os
import sys

from mnist_batch.errors import USAGE, UserError, log, shown

# Formats Pillow reads. Listed here rather than asked of Pillow: loading every plugin
# to ask costs start-up time on every run.
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .gif .tif .tiff .webp .pgm .ppm .pbm .pnm "
    ".tga .ico .pcx .sgi .rgb .ras .im .jp2 .j2k .qoi .dds .icns".split()
)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: no longer line of a list can name a file
MAX_BLANK_RUN = 4096  # blank lines in a row that end a list's reading: no list has them, /dev/zero does
LIST_READ = 1 << 16  # bytes read from a list at a time


def read_list(source: str) -> list[str]:
    """Paths from a --files-from file (or '-' for stdin), one per line. Only the line ending
    (\n or \r\n) is removed, so names keep their spaces; blank lines are skipped. A list with
    NUL bytes (`find -print0`) is split on them instead: no name can hold a NUL, so none is
    lost. Bytes that are not UTF-8 stay as they are on disk (surrogate escapes), so such files
    are found. The list is read a block at a time: a line longer than any path, or thousands of
    blank lines in a row (/dev/zero is nothing else), is a usage error naming the line, so that
    no list, however large or endless, is read whole before it is judged."""
    try:
        stream = sys.stdin.buffer if source == "-" else open(source, "rb")
    except OSError as error:
        raise UserError(f"cannot read --files-from {shown(source)}: {error.strerror}", USAGE) from error
    names: list[str] = []
    try:
        pending = read_at_least(stream, 2 * MAX_PATH_BYTES).removeprefix(UTF8_BOM)  # Notepad and Excel write one
        if wide_text(pending):
            name = "standard input" if source == "-" else shown(source)
            raise UserError(f"--files-from {name} is UTF-16 or UTF-32 text (Windows PowerShell 5 writes lists so); "
                            "save it as UTF-8, one path a line", USAGE)
        # A NUL-separated list has a NUL within its first entry's reach; a list of lines has none at all.
        separator, kind, kinds = (b"\0", "entry", "entries") if b"\0" in pending else (b"\n", "line", "lines")
        blank_run = separator * (MAX_BLANK_RUN + 1)
        number = 0  # of the entries split off so far
        while True:
            block = stream.read(LIST_READ)
            data = pending + block
            run = data.find(blank_run)
            if run >= 0:  # the first blank one: after the entry that ends there, unless the run opens the list
                first = number + 1 + (data.count(separator, 0, run) + 1 if run else 0)
                raise list_error(source, kind, first, f"begins {MAX_BLANK_RUN:,} blank {kinds} in a row")
            *complete, pending = data.split(separator)
            if not block and pending:  # the end: what is left is the last entry
                complete.append(pending)
            names += list_names(complete, separator, source, kind, number)
            number += len(complete)
            if len(pending) > MAX_PATH_BYTES + 1:  # + 1: a \r before the \n
                raise list_error(source, kind, number + 1, f"is longer than {MAX_PATH_BYTES:,} bytes")
            if not block:
                break
    except OSError as error:
        raise UserError(f"cannot read --files-from {shown(source)}: {error.strerror}", USAGE) from error
    finally:
        if source != "-":
            stream.close()
    return names


def read_at_least(stream, size: int) -> bytes:
    """`size` bytes of a stream, or all of it when it is shorter (a pipe gives less per read)."""
    data = b""
    while len(data) < size:
        block = stream.read(size - len(data))
        if not block:
            break
        data += block
    return data


def list_names(entries: list[bytes], separator: bytes, source: str, kind: str, before: int) -> list[str]:
    """Lines or NUL-separated entries of a --files-from list (`before` came earlier) -> normalised
    paths, blank ones skipped. Each check runs over all of them at once, and names the first
    entry that fails it."""
    def first(problem: str, test) -> UserError:
        return list_error(source, kind, before + next(i for i, e in enumerate(entries) if test(e)) + 1, problem)

    if separator == b"\n":
        entries = [entry.removesuffix(b"\r") for entry in entries]
        if b"\0" in b"".join(entries):
            raise first("holds a NUL byte", lambda entry: b"\0" in entry)
    if entries and max(map(len, entries)) > MAX_PATH_BYTES:
        raise first(f"is longer than {MAX_PATH_BYTES:,} bytes", lambda entry: len(entry) > MAX_PATH_BYTES)
    return [normalise(name) for name in map(os.fsdecode, entries) if name.strip()]


UTF8_BOM = b"\xef\xbb\xbf"
WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\0\0\xfe\xff")  # UTF-16 (LE, BE) and UTF-32 (LE starts as UTF-16 LE)


def wide_text(head: bytes) -> bool:
    """Whether a list is UTF-16 or UTF-32: a byte-order mark; or, without one, every other byte NUL
    and a line break as such text writes it (`printf '%s\\0' 0 1 2` has the NULs, but no line break).
    Read as bytes, its NULs would split it into one-character entries, and "/" and "." entries name
    whole trees."""
    even, odd = any(head[0::2]), any(head[1::2])  # all NUL (/dev/zero) is no text
    return head.startswith(WIDE_BOMS) or (even != odd and (b"\n\0" in head or b"\0\n" in head))


def list_error(source: str, kind: str, number: int, problem: str) -> UserError:
    name = "standard input" if source == "-" else shown(source)
    return UserError(f"--files-from {name}: {kind} {number:,} {problem}; give a list of paths, one per line "
                     "or NUL-separated (find -print0)", USAGE)


def normalise(path: str) -> str:
    """One spelling per file: `./` segments and doubled or trailing slashes are dropped
    (a.png, ./a.png and dir//a.png -> a.png, dir/a.png). `..` is kept: through a symlinked
    folder it may not mean the parent."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    joined = "/".join(parts)
    return "/" + joined if path.startswith("/") else joined or "."


def escaped(path: str) -> str:
    r"""A path as text that names exactly one file: each byte that is not UTF-8 becomes \xNN and
    every backslash of the name itself is doubled. The Latin-1 name caf<E9>.png is `caf\xe9.png`;
    a name typed with a backslash, `caf\xe9.png`, is `caf\\xe9.png`."""
    if path.isascii() and "\\" not in path:
        return path
    try:
        raw = path.encode("utf-8", "surrogateescape")  # the bytes on disk (os.fsdecode made it so)
    except UnicodeEncodeError:  # a lone surrogate passed as a str: it can name no file on disk
        raw = path.encode("utf-8", "surrogatepass")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def file_ids(paths: list[str | None]) -> list[str | None]:
    """The identity of each file (None for None, an in-memory image): its absolute path with every
    symlink resolved, escaped(), so that `a.png`, `/in/a.png` and `link-to-in/a.png` are one file,
    and two folders' `./a.png` are two. Relative paths start at the current folder. A folder is
    resolved once for all its files; a file costs one lstat (itself a symlink or not)."""
    real_folders: dict[str, str] = {}

    def resolved(path: str) -> str:
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):  # a folder named by itself: '/', 'a/.', 'a/..'
            return os.path.realpath(path)
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder or ".")
        full = os.path.join(real_folders[folder], name)
        return os.path.realpath(full) if os.path.islink(full) else full

    def resolved_or_absolute(path: str) -> str:
        try:
            return resolved(path)
        except ValueError:  # a NUL or a lone surrogate (the Python API): no file has that name
            return os.path.abspath(path)

    from mnist_batch.storage import is_uri

    # An object's identity is its URI: it has no folder to resolve.
    return [None if path is None else path if is_uri(path) else escaped(resolved_or_absolute(path))
            for path in paths]


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
    objects: dict | None = None,
) -> list[str]:
    """Sorted, normalised input paths, one per file (file_ids: `inbox` and `/srv/inbox` name the
    same files; the first spelling is kept). An input named on the command line must
    exist when the run starts (a typo is a usage error); a path in a --files-from list that
    does not exist is kept and becomes a `missing` row, since a list can be stale.
    Object-store URIs (s3://bucket/prefix/) are listed like folders (storage.list_objects);
    `objects`, when given, receives each object's (size, mtime_ns) from the listing."""
    from mnist_batch import storage

    uris = [item for item in inputs if storage.is_uri(item)]
    listed: dict = {}
    for uri in uris:
        listed.update(storage.list_objects(uri, include, exclude))
    if objects is not None:
        objects.update(listed)
    named = [normalise(storage.local_path(item)) for item in inputs if not storage.is_uri(item)]
    absent = [item for item in named if not os.path.lexists(item)]
    if absent:
        raise UserError(f"{shown(absent[0])}: no such file or folder; check the spelling", USAGE)
    named += read_list(files_from) if files_from else []
    if not named and not uris:
        raise UserError("no inputs: give image files or folders, or --files-from LIST", USAGE)
    seen_dirs: set = set()
    paths = []
    for item in named:
        if os.path.isdir(item):
            paths.extend(walk(item, seen_dirs))
        else:
            paths.append(item)
    found = len(paths)
    if include:
        paths = [p for p in paths if matches(p, include)]
    if exclude:
        paths = [p for p in paths if not matches(p, exclude)]
    if found and not paths:  # a typo in a pattern would otherwise pass for an empty folder
        log(f"note: --include/--exclude matched none of the {found:,} image files found; check the patterns "
            "(each is matched against the file's name and its whole path)")
    return one_spelling_per_file(sorted(set(paths) | set(listed)))


def one_spelling_per_file(paths: list[str]) -> list[str]:
    """`paths` without those that name a file named earlier in the list (another spelling, a symlink)."""
    seen: set[str] = set()
    kept = []
    for path, file_id in zip(paths, file_ids(paths), strict=True):
        if file_id not in seen:
            seen.add(file_id)
            kept.append(path)
    if len(kept) < len(paths):
        log(f"note: {len(paths) - len(kept):,} inputs name a file that another input names too (the same "
            "folder given twice, a symlink); each file is classified once, under its first path")
    return kept
