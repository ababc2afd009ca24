"""THE result file: its schema, how rows are built, and how files are written.

A run streams rows into part files in a hidden folder beside --out; a finished run
merges them, sorted by path, into a temporary file that is renamed onto --out. A crash
leaves --out untouched and the parts in place for --resume.
"""

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from mnist_batch.errors import USAGE, UserError

SCHEMA_VERSION = "1"
PROB_COLUMNS = [f"prob_{digit}" for digit in range(10)]
# Changing a column's name, type or meaning bumps SCHEMA_VERSION and the README's table.
SCHEMA = {
    "path": pl.String,  # the input path as discovered (relative paths stay relative)
    "status": pl.String,  # ok, blank, or an error kind (missing, unreadable, empty, not_image, ...)
    "error": pl.String,  # why the input was not classified; null when status is ok
    "pred": pl.Int8,  # predicted digit 0-9; null unless status is ok
    "confidence": pl.Float32,  # probability of pred
    **{column: pl.Float32 for column in PROB_COLUMNS},  # softmax over the ten digits
    "file_size": pl.Int64,  # bytes when read; null if the file could not be stat'ed
    "file_mtime_ns": pl.Int64,  # modification time, ns since the Unix epoch
    "checkpoint": pl.String,  # file name of the checkpoint that produced the row
    "checkpoint_sha256": pl.String,
}
FORMATS = ("parquet", "csv")


def output_format(out: Path, requested: str | None) -> str:
    if requested:
        if requested not in FORMATS:
            raise UserError(f"unknown --format {requested!r}; use parquet or csv", USAGE)
        return requested
    suffix = out.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise UserError(f"cannot tell the format of {out}: name it .parquet or .csv, or pass --format", USAGE)


def build_rows(
    paths: list[str],
    statuses: list[str],
    errors: list[str | None],
    probs: np.ndarray,
    sizes: list[int | None],
    mtimes: list[int | None],
    checkpoint: str,
    checkpoint_sha256: str,
) -> pl.DataFrame:
    """One row per input. `probs` is (n, 10) float32; its rows for inputs that are not ok are ignored."""
    ok = np.array([status == "ok" for status in statuses], dtype=bool)
    columns = {
        "path": paths,
        "status": statuses,
        "error": errors,
        "pred": np.where(ok, probs.argmax(axis=1), 0).astype(np.int8),
        "confidence": probs.max(axis=1).astype(np.float32),
        **{column: probs[:, digit].astype(np.float32) for digit, column in enumerate(PROB_COLUMNS)},
        "file_size": sizes,
        "file_mtime_ns": mtimes,
        "checkpoint": [checkpoint] * len(paths),
        "checkpoint_sha256": [checkpoint_sha256] * len(paths),
    }
    frame = pl.DataFrame(columns, schema=SCHEMA)
    only_ok = ["pred", "confidence", *PROB_COLUMNS]
    return frame.with_columns(
        pl.when(pl.Series(ok)).then(pl.col(column)).otherwise(None).alias(column) for column in only_ok
    )


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def write_atomic(path: Path, write) -> None:
    """write(tmp) into a hidden temporary file beside `path`, then rename it onto `path`:
    readers see the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_part(directory: Path, sequence: int, frames: list[pl.DataFrame]) -> None:
    """Each part is complete or absent."""
    write_atomic(directory / f"part-{sequence:06d}.parquet", pl.concat(frames).write_parquet)


def new_output_path(directory: Path) -> Path:
    """A new result file named by the UTC time: unique, and sorted names are in run order."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return Path(directory) / f"predictions-{stamp}.parquet"


def covered_inputs(directory: Path) -> set[tuple[str, int, int]]:
    """(path, size, mtime) of every input that a result file in `directory` has a row for."""
    files = sorted(Path(directory).glob("*.parquet"))
    if not files:
        return set()
    frame = pl.scan_parquet(files).select("path", "file_size", "file_mtime_ns").collect()
    return set(frame.iter_rows())


def remove_unfinished_merge(out: Path) -> None:
    """A run killed while merging leaves its temporary file; the next run for --out removes it."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        tmp.unlink(missing_ok=True)


def remove_crashed_runs(directory: Path) -> None:
    """What crashed runs left in an --out-dir; the next incremental run redoes their inputs."""
    for stale in Path(directory).glob(".predictions-*.parquet.parts"):
        shutil.rmtree(stale, ignore_errors=True)
    for tmp in Path(directory).glob(".predictions-*.parquet.tmp-*"):
        tmp.unlink(missing_ok=True)


def existing_parts(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []


def done_paths(directory: Path) -> set[str]:
    """Inputs that already have a row in the parts of an interrupted run."""
    parts = existing_parts(directory)
    if not parts:
        return set()
    return set(pl.scan_parquet(parts).select("path").collect()["path"].to_list())


def finish(directory: Path, out: Path, fmt: str) -> int:
    """Merge the parts, sorted by path, into --out atomically; returns the row count."""
    parts = existing_parts(directory)
    frame = pl.scan_parquet(parts).sort("path") if parts else empty_rows().lazy()
    rows = frame.select(pl.len()).collect().item()

    def sink(tmp: Path) -> None:
        if fmt == "parquet":
            frame.sink_parquet(tmp, metadata={"mnist_batch_schema_version": SCHEMA_VERSION}, sync_on_close="all")
        else:
            frame.sink_csv(tmp, sync_on_close="all")

    write_atomic(out, sink)
    shutil.rmtree(directory, ignore_errors=True)
    return rows


def scan(path: str | Path) -> pl.LazyFrame:
    """A result file (Parquet or CSV) as a lazy frame with the documented types."""
    path = str(path)
    if path.lower().endswith(".csv"):
        return pl.scan_csv(path, schema_overrides=SCHEMA)
    return pl.scan_parquet(path)
