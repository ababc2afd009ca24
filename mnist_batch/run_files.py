"""The files of a classify run: the output's lock, part files, the merge and its summary.

A run streams rows into part files in a hidden folder beside --out (RunFiles); a
finished run merges them, sorted by path, into a temporary file that is renamed onto
--out. A crash leaves --out untouched and the parts in place for --resume. An --out-dir
holds one result file per run (new_output_path), which incremental runs read (covered_inputs).
"""

import fcntl
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from mnist_batch import errors, records
from mnist_batch.errors import LOCKED, USAGE, UserError, log, shown
from mnist_batch.files import open_lock_file, planted_link, remove_temporaries, write_atomic, write_failure
from mnist_batch.results import SCHEMA, SCHEMA_VERSION, VERSION_KEY, empty_rows, status_counts, with_file_id

FORMATS = ("parquet", "csv")


def output_format(out: Path, requested: str | None) -> str:
    suffix = out.suffix.lower().lstrip(".")
    if requested:
        if requested not in FORMATS:
            raise UserError(f"unknown --format {requested!r}; use parquet or csv", USAGE)
        if suffix in FORMATS and suffix != requested:  # readers go by the name: CSV in x.parquet misleads them
            raise UserError(f"--format {requested} contradicts the name {out}: name it .{requested}", USAGE)
        return requested
    if suffix in FORMATS:
        return suffix
    raise UserError(f"cannot tell the format of {out}: name it .parquet or .csv, or pass --format", USAGE)


STAMP = "%Y%m%dT%H%M%S%fZ"  # predictions-<STAMP>.parquet: sorts as it runs


def new_output_path(directory: Path) -> Path:
    """A new result file named by the UTC time, and never before the newest result file there:
    incremental runs take the last row of each input in name order, so a clock that went back
    (an NTP step, a wrong hardware clock) must not put a new run's rows behind an older run's."""
    now = datetime.now(timezone.utc)
    stamps = []
    for file in result_files(directory):
        try:
            stamps.append(datetime.strptime(file.name[len("predictions-"):-len(".parquet")], STAMP))
        except ValueError:  # a name not made by this function
            pass
    newest = max(stamps, default=None)
    if newest is not None and now.replace(tzinfo=None) <= newest:
        log(f"the clock ({now:%Y-%m-%d %H:%M:%S} UTC) is behind the newest result file in {shown(directory)} "
            f"({newest:%Y-%m-%d %H:%M:%S}): this run's file is named just after it, so that its rows count as newer")
        now = newest + timedelta(microseconds=1)
    return Path(directory) / f"predictions-{now.strftime(STAMP)}.parquet"


# Errors of the moment rather than of the file's content: an incremental run tries them again.
TRANSIENT = frozenset({"missing", "unreadable", "crashed"})


def result_files(directory: Path) -> list[Path]:
    """An --out-dir's result files, oldest first; other Parquet files there (a review file) are not results."""
    return sorted(Path(directory).glob("predictions-*.parquet"))


def covered_inputs(directory: Path) -> set[tuple[str, int, int]]:
    """(file_id, size, mtime) of every input whose newest row in `directory` needs no retry:
    a row of a transient error (TRANSIENT) does not cover its input. A file there that is not
    a result file is set aside (set_aside): else it would stop every later run."""
    frames = []
    # One read per file: files of older schema versions have other columns; these four are in all.
    columns = {name: SCHEMA[name] for name in ("path", "file_size", "file_mtime_ns", "status")}
    for file in result_files(directory):
        try:
            frame = with_file_id(pl.scan_parquet(file, glob=False)).select("file_id", *columns).collect()
        except pl.exceptions.PolarsError as error:
            if "os error" in str(error):  # cannot be read now (permissions, I/O): the file may be fine
                raise UserError(f"cannot read the result file {shown(file)} ({first_line(error)}): "
                                "check it and its folder") from None
            set_aside(file, first_line(error))
            continue
        except OSError as error:
            raise UserError(f"cannot read the result file {shown(file)} ({error.strerror}): "
                            "check it and its folder") from None
        if frame.drop("file_id").schema != pl.Schema(columns):
            set_aside(file, "its columns are not those of a result file")
            continue
        frames.append(frame.drop("path"))
    if not frames:
        return set()
    frame = (pl.concat(frames).filter(pl.col("file_id").is_not_null())
             .unique(subset="file_id", keep="last", maintain_order=True)
             .filter(~pl.col("status").is_in(list(TRANSIENT))).drop("status"))
    return set(frame.iter_rows())


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def set_aside(file: Path, reason: str) -> None:
    """Rename a file named like a result file that cannot be read as one to NAME.bad: kept for a
    person to look at, and out of the way of every later incremental run and report."""
    bad = file.with_name(f"{file.name}.bad")
    try:
        os.replace(file, bad)  # replaces whatever has that name, never writes through it
    except OSError as error:
        raise UserError(f"{shown(file)} is not a readable result file ({shown(reason)}), and renaming it to "
                        f"{shown(bad.name)} failed ({error.strerror}): move it out of the folder") from None
    log(f"{shown(file)} is not a readable result file ({shown(reason)}): renamed it to {shown(bad.name)}, "
        "so that it stops no later run; the inputs it covered are classified again")


def remove_crashed_runs(directory: Path) -> None:
    """What crashed runs left in an --out-dir; the next incremental run redoes their inputs.
    Only called while holding the folder's lock, so no live run's files are touched."""
    for stale in Path(directory).glob(".predictions-*.parquet.parts"):
        shutil.rmtree(stale, ignore_errors=True)
    for tmp in Path(directory).glob(".predictions-*.parquet.tmp-*"):
        tmp.unlink(missing_ok=True)


class OutputLock:
    """An exclusive lock on one output (--out, or an --out-dir folder), held from start to
    finish of a run: a second run for the same output exits at once with LOCKED (75) naming
    the holder's pid, rather than deleting its parts or replacing its file. The kernel
    releases it when the process dies, so a crashed run never leaves it held."""

    def __init__(self, output: Path, folder: bool = False):
        """`folder`: the output is a folder of result files (--out-dir), locked by
        `.mnist-batch.lock` inside it; a file's lock is `.NAME.lock` beside it."""
        output = Path(output)
        self.path = output / ".mnist-batch.lock" if folder else output.parent / f".{output.name}.lock"
        # A stop signal now would leave the lock file behind: it waits for __enter__, which releases.
        errors.defer_stop_signals()
        try:
            self.take(output)
        except BaseException:
            errors.end_deferral()
            raise

    def take(self, output: Path) -> None:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fd = open_lock_file(self.path)  # never through a link planted in its place
            except OSError as error:
                blocking = [part for part in (self.path.parent, *self.path.parent.parents) if os.path.isfile(part)]
                if blocking:
                    raise UserError(f"cannot write {shown(output)}: {shown(blocking[-1])} is a file, not a folder; "
                                    "give an output in a folder") from None
                raise UserError(f"cannot write {shown(output)}: creating {shown(self.path)} failed ({error.strerror}); "
                                "give an output in a folder you can write to") from None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(self.fd)
                raise UserError(f"another run (pid {shown(holder)}) is writing {shown(output)}; "
                                "wait for it to finish, or stop it", LOCKED) from None
            # A run that finished meanwhile removed the file we opened: lock the new one.
            if self.is_current():
                break
            os.close(self.fd)
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            self.release()
            raise

    def is_current(self) -> bool:
        try:
            return os.path.samestat(os.fstat(self.fd), os.lstat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees it gone and retries
        os.close(self.fd)

    def __enter__(self) -> "OutputLock":
        try:
            errors.resume_stop_signals()  # raises the stop signal that came while the lock was taken
        except KeyboardInterrupt:
            self.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


class RunFiles:
    """The files of one run for one output: rows go into part files in a hidden folder
    beside `out`, each complete or absent; finish() merges them, sorted by path, and
    renames the merge onto `out`. A crash leaves `out` as it was and the parts for --resume."""

    def __init__(self, out: Path, fmt: str, resume: bool = False, part_rows: int = 4096, publish=None):
        # part_rows: rows per part file, what a crash can cost and what --resume skips
        # publish(out): called on the merged file before the parts go (the upload of an output URI)
        self.out, self.fmt, self.part_rows, self.publish = Path(out), fmt, part_rows, publish
        self.parts = parts_dir(self.out)
        if self.parts.is_symlink():  # rows would go where the link points, and --resume would read them there
            raise planted_link(self.parts, "folder")
        remove_temporaries(self.out)  # a merge cut short by a crash
        existing = self.part_files()
        if existing and not resume:
            log(f"removing {len(existing)} part files of an unfinished earlier run in {shown(self.parts)} "
                "(use --resume to continue it instead)")
            shutil.rmtree(self.parts)
            existing = []
        if resume and not existing:
            log(f"--resume: no rows of an earlier run are kept in {shown(self.parts)}: classifying every input")
        self.sequence = len(existing)
        self.buffered: list[pl.DataFrame] = []
        self.buffered_rows = 0
        self.next_flush = 0.0  # the first rows are written at once: an early stop keeps them
        self.done: set[str] = self.kept_ids() if existing else set()  # file_ids that --resume skips
        self.kept_rows = len(self.done)  # rows in the part files
        self.dropped: set[str] = set()  # file_ids of rows left out of the result (inputs no longer given)

    def kept_ids(self) -> set[str]:
        """file_id of the inputs that already have a row in the parts; a part that is not rows of
        this schema (a disk error, a hand-made file, a part of an older version) is one line, not a
        polars error."""
        try:
            parts = self.scan_parts()
            if parts.collect_schema() != pl.Schema(SCHEMA):
                raise ValueError("not rows of this version's result schema")
            return set(parts.select("file_id").collect()["file_id"])
        except (pl.exceptions.PolarsError, OSError, ValueError) as error:
            raise UserError(f"cannot resume: the rows kept in {shown(self.parts)} are unreadable "
                            f"({str(error).splitlines()[0]}); rerun without --resume to start afresh") from None

    def keep_only(self, ids: set[str]) -> int:
        """--resume with other inputs: the result holds only rows of the files `ids` (file_id),
        as an uninterrupted run of the current command would. Returns how many rows go."""
        self.dropped = self.done - ids
        self.done -= self.dropped
        return len(self.dropped)

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def scan_parts(self) -> pl.LazyFrame:
        parts = self.part_files()
        return pl.scan_parquet(parts, glob=False) if parts else empty_rows().lazy()

    def add(self, rows: pl.DataFrame) -> None:
        self.buffered.append(rows)
        self.buffered_rows += rows.height
        if self.buffered_rows >= self.part_rows or time.monotonic() >= self.next_flush:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next part file."""
        if not self.buffered:
            return
        frame = pl.concat(self.buffered)
        rows = frame.height
        try:
            write_atomic(self.parts / f"part-{self.sequence:06d}.parquet", frame.write_parquet, own_folder=True)
        except (OSError, pl.exceptions.PolarsError) as error:
            kept = (f"the {self.kept_rows:,} rows written before are kept there: rerun the same command with "
                    "--resume to continue" if self.kept_rows else "no rows were kept: rerun the command")
            raise UserError(f"cannot write the rows of {shown(self.out)} into {shown(self.parts)}: "
                            f"{write_failure(error, self.parts)}; {kept}") from None
        # One assignment with no call in it, which a stop signal cannot split: a stop between the part's
        # number and the buffer wrote the same rows again as the next part (classify.interrupted
        # flushes), and --resume gave them twice. Before it, a flush again writes the same part again.
        (self.buffered, self.buffered_rows, self.sequence,
         self.kept_rows) = [], 0, self.sequence + 1, self.kept_rows + rows
        self.next_flush = time.monotonic() + PART_SECONDS

    def discard_if_empty(self) -> None:
        """Remove the parts folder when it holds no part: nothing for --resume to find."""
        if not self.part_files():
            shutil.rmtree(self.parts, ignore_errors=True)

    def finish(self) -> Counter:
        """Merge the parts into `out` atomically, remove them; the file's rows by status."""
        self.flush()
        frame = self.scan_parts()
        if self.dropped:
            frame = frame.filter(~pl.col("file_id").is_in(list(self.dropped)))
        frame = frame.sort("path")

        def sink(file) -> None:
            if self.fmt == "parquet":
                frame.sink_parquet(file, metadata={VERSION_KEY: SCHEMA_VERSION})
            else:
                frame.sink_csv(file)  # raw values: a data contract, not a spreadsheet (README)

        counts = status_counts(frame)
        try:
            write_atomic(self.out, sink)
        except (OSError, pl.exceptions.PolarsError) as error:
            raise UserError(f"cannot write {shown(self.out)}: {write_failure(error, self.out.parent)}; every row "
                            f"is kept in {shown(self.parts)}: rerun the same command with --resume to finish the run"
                            ) from None
        if self.publish is not None:
            self.publish(self.out)
        shutil.rmtree(self.parts, ignore_errors=True)
        return counts


PART_SECONDS = 10.0  # a part file at least this often: what a crash or Ctrl-C can cost


@dataclass(frozen=True)
class ClassifySummary:
    """What a classify run did; both engines return it and `classify --json` prints it.
    Counts describe the whole result file (after --resume too), not only this run's rows."""

    out: str | None  # None when an incremental run found nothing new
    format: str | None
    inputs: int  # inputs discovered for this run
    rows: int  # rows in the result file
    classified_now: int  # inputs read and classified by this run (the rest came from --resume parts)
    ok: int
    blank: int
    not_digit: int
    failed: int
    statuses: dict[str, int]
    seconds: float  # wall time of the whole command
    images_per_second: float  # classified_now / seconds
    pipeline_images_per_second: float  # steady state: first batch through the model to the last
    workers: int
    device: str
    checkpoint: str | None

    @classmethod
    def of(cls, counts: Counter, **fields) -> "ClassifySummary":
        seconds, now = fields["seconds"], fields["classified_now"]
        return cls(rows=sum(counts.values()), ok=counts[records.OK], blank=counts[records.BLANK],
                   not_digit=counts[records.NOT_DIGIT],
                   failed=sum(n for status, n in counts.items() if records.is_failed(status)),
                   statuses=dict(sorted(counts.items())),
                   images_per_second=now / seconds if seconds > 0 else 0.0, **fields)

    def to_dict(self) -> dict:
        return asdict(self)
