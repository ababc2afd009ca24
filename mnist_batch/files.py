"""Writing outputs so that a crash never leaves half a file, and so that no file is ever
written through a symlink planted in its place: every output of every job (result files,
part files, Ray output folders, checkpoints, metrics, plots, reports) goes through
write_atomic, and lock files through open_lock_file.

The folder beside an output (a results folder that a cron job run as root writes) may be
writable by others. A file written by path would follow a link planted under its name, so
an output is written into a new file that nothing else can have named (O_EXCL | O_NOFOLLOW,
an unguessable name), through its open descriptor, and renamed onto the output: a rename
replaces a link put at the output's name, it never writes the file the link points to.
"""

import errno
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from mnist_batch.errors import FAILURE, UserError, shown

# A new file only: fails on anything already there, a symlink included, rather than opening it.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def planted_link(path: Path, what: str = "file") -> UserError:
    """The one-line refusal of a symlink found where mnist-batch writes its own file."""
    try:
        target = f" to {shown(os.readlink(path))}"
    except OSError:
        target = ""
    return UserError(f"refusing to write the {what} {shown(path)}: it is a symbolic link{target}, "
                     "and mnist-batch never writes through one; remove it and run again")


def temporary_name(name: str) -> str:
    """A hidden name beside `name`, unique and unguessable: the rename stays on one file system."""
    return f".{name}.tmp-{os.getpid()}-{secrets.token_hex(8)}"


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def open_folder(folder: Path, own: bool = False) -> int:
    """A descriptor of `folder`, created when missing. `own`: a folder that mnist-batch makes for
    itself (a run's parts): a symlink in its place is refused, not followed."""
    folder = Path(folder)
    try:
        if own:
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(folder)  # never follows a link at `folder`: it fails on anything there
            except FileExistsError:
                pass
            return os.open(folder, FOLDER | os.O_NOFOLLOW)
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, FOLDER)
    except OSError as error:
        if own and folder.is_symlink():
            raise planted_link(folder, "folder") from None
        raise UserError(f"cannot write into {shown(folder)}: {error.strerror}; "
                        "give an output in a folder you can write to") from None


def write_atomic(path: Path, write, own_folder: bool = False) -> None:
    """write(file) into a new temporary file beside `path` (a binary file object), then rename it
    onto `path`: readers see the old output or the whole new one, never half of it. A symlink at
    `path` is replaced by the output, never written through. `own_folder`: path's folder is one
    that mnist-batch made for itself (open_folder's `own`)."""
    path = Path(path)
    folder = open_folder(path.parent, own=own_folder)
    try:
        write_in_folder(folder, path, write)
    finally:
        os.close(folder)


def write_in_folder(folder: int, path: Path, write, mode: int = 0o666) -> None:
    """write_atomic's work in a folder already open (`folder`, a descriptor: checked once, it cannot
    be swapped for another before the write); `path` names the output, of which the file name is
    used. `mode`: of the new file, before the umask. A device, FIFO or socket at `path` is refused:
    the rename would put a file in its place (root's cron job writing over /dev/null)."""
    try:
        there = os.stat(path.name, dir_fd=folder, follow_symlinks=False).st_mode
    except FileNotFoundError:
        there = None
    if there is not None and special_file(there):
        raise special_output(path, there)
    tmp = temporary_name(path.name)
    try:
        fd = os.open(tmp, NEW_FILE, mode, dir_fd=folder)
    except FileExistsError:  # only if someone raced us to an unguessable name
        raise UserError(f"refusing to write {shown(path)}: something was put in the place of its temporary "
                        f"file {shown(path.parent / tmp)}; remove it and run again") from None
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.rename(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=folder)
        except OSError:
            pass
        raise


SPECIAL_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO (named pipe)",
                 stat.S_IFSOCK: "socket"}


def special_file(mode: int) -> bool:
    """A device, FIFO or socket: no output of mnist-batch may take its place."""
    return stat.S_IFMT(mode) in SPECIAL_KINDS


def special_output(path: Path, mode: int, code: int = FAILURE, hint: str = "") -> UserError:
    return UserError(f"refusing to write {shown(path)}: it is a {SPECIAL_KINDS[stat.S_IFMT(mode)]}, not a file; "
                     f"give the path of a file{hint}", code)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda file: file.write(text.encode()))


def write_folder_atomic(path: Path, write) -> None:
    """write(tmp) fills a new temporary folder beside `path` (the Ray engine's folder of parts),
    then it takes `path`'s place, an old folder there included."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temporary_name(path.name)
    os.mkdir(tmp)  # new: fails on anything at the unguessable name, a symlink included
    try:
        write(tmp)
        if path.is_dir() or path.is_symlink():
            # A folder cannot be renamed onto a folder that has files: move the old one (or a link) aside first.
            old = path.parent / temporary_name(path.name)
            os.replace(path, old)
            os.replace(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
    finally:
        remove(tmp)


def open_lock_file(path: Path) -> int:
    """A lock file opened for reading and writing (created when missing), never through a symlink
    planted in its place: a link, or anything but a plain file with one name, is refused."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError:
        if path.is_symlink():
            raise planted_link(path, "lock file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "has other names (hard links)" if stat.S_ISREG(info.st_mode) else "is not a plain file"
        raise UserError(f"refusing to use the lock file {shown(path)}: it {kind}; remove it and run again")
    return fd


NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EFBIG: "the file size limit (ulimit -f) is reached"}
LOW_SPACE = 1 << 20  # bytes free below which a failed write is put down to a full disk


def write_failure(error: BaseException, folder: Path) -> str:
    """Why writing into `folder` failed, for a one-line message. polars wraps a failed write in
    its own errors, "(os error 28)" at best and "Invalid thrift: transport error" at worst, so a
    disk with (almost) no space left is named as the reason whatever the error says."""
    code = getattr(error, "errno", None)
    if code is None and (found := re.search(r"\(os error (\d+)\)", str(error))):
        code = int(found.group(1))
    mount = mount_point(folder)
    try:
        info = os.statvfs(mount)
        free = info.f_bavail * info.f_frsize
    except OSError:
        free = None
    if code in NO_ROOM or (free is not None and free < LOW_SPACE):
        reason = NO_ROOM.get(code, NO_ROOM[errno.ENOSPC])
        space = "" if free is None else f", {free // 1024:,} KiB free"
        return f"{reason}: the file system at {shown(mount)}{space}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def mount_point(folder: Path) -> Path:
    """The mount point of the file system holding `folder` (or its nearest existing parent)."""
    path = Path(os.path.abspath(folder))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def remove_temporaries(path: Path) -> None:
    """What a run killed mid-write left beside `path`; the next run for the same output removes it."""
    for tmp in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        remove(tmp)
