"""THE result file: its schema, the rows built from a chunk, and the readers of result files.

A result row per input, the same columns from every engine and the Python API; files of older
schema versions read back with this version's columns. The files of a run (parts, lock, merge,
summary) are run_files.py.
"""

import os
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from mnist_batch import records
from mnist_batch.discover import escaped

SCHEMA_VERSION = "2"  # 2 added file_id, digit_score, min_digit_score and the not_digit status
PROB_COLUMNS = [f"prob_{digit}" for digit in range(10)]
# Changing a column's name, type or meaning bumps SCHEMA_VERSION and the README's table.
SCHEMA = {
    "path": pl.String,  # the input path as discovered, normalised; non-UTF-8 bytes as \xNN (stored_path)
    # The file's identity, however its path was spelt: the absolute path, symlinks resolved,
    # escaped so that no two files share one (discover.escaped); null for in-memory images.
    "file_id": pl.String,
    "status": pl.String,  # ok, blank, not_digit, or an error kind (missing, unreadable, empty, not_image, ...)
    "error": pl.String,  # why the input was not classified; null when status is ok
    "pred": pl.Int8,  # predicted digit 0-9; null unless status is ok
    "confidence": pl.Float32,  # probability of pred
    # softmax over the ten digits; for a row under checkpoints.SURE, the mean of it over a second look
    **{column: pl.Float32 for column in PROB_COLUMNS},
    # How much the input looks like one handwritten digit, 0-1: 1 - the network's probability of
    # "not a digit"; 0 for an input that held only printed lines. Null for a network without that
    # output (lenet) and for inputs that were not read.
    "digit_score": pl.Float32,
    "min_digit_score": pl.Float32,  # the run's threshold: a digit_score below it made the row not_digit
    "file_size": pl.Int64,  # bytes when read; null if the file could not be stat'ed
    "file_mtime_ns": pl.Int64,  # modification time, ns since the Unix epoch; null outside 1677-2262 (what fits)
    "checkpoint": pl.String,  # file name of the checkpoint that produced the row
    "checkpoint_sha256": pl.String,
}
def stored_path(path: str) -> str:
    r"""The path as the result file spells it, for people to read. A name that is not valid UTF-8
    (an old share's caf<E9>.png) keeps its undecodable bytes as backslash escapes: caf\xe9.png,
    as a name typed with a backslash reads. The file_id column tells the two apart."""
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


DEFAULT_MIN_DIGIT_SCORE = 0.25  # below it a row is not_digit; the rates it gives are in docs/benchmarks.md


def predict_rows(chunk: records.DecodedChunk, inference, min_digit_score: float = DEFAULT_MIN_DIGIT_SCORE
                 ) -> pl.DataFrame:
    """THE step from a decoded chunk to result rows, for every engine and the Python API:
    `inference` (a model.Inference) scores the chunk's digits; rows follow."""
    probs, digit_score = inference.scores(chunk.digits, chunk.ok, min_digit_score)
    if digit_score is not None:
        probs, digit_score = likelier_reading(chunk, inference, probs, digit_score, min_digit_score)
    return build_rows(chunk, probs, digit_score, min_digit_score, inference.name, inference.sha256)


# A close call's other reading is looked at only where the first one's digit score is under this (a
# fixed level, not the run's threshold, so that a row's score does not depend on it): a mark in one
# corner makes a plain digit a close call, and its paper read as ink is the digit's outline, a 0.
DOUBTFUL_READING = 0.5


def likelier_reading(chunk: records.DecodedChunk, inference, probs: np.ndarray, digit_score: np.ndarray,
                     min_digit_score: float) -> tuple[np.ndarray, np.ndarray]:
    """An input whose paper was a close call (a thick marker's tight crop) was read both ways round
    (digitize.readings): where the first reading is doubtful, the one the network finds more like a
    digit gives the row's probabilities and digit score. With narrowing too, a thick pen's crops
    42 -> 17 of 1,000 digits not_digit (this step alone: 42 -> 24); no row of the other benches'
    digit sets and non-digits changes (docs/benchmarks.md)."""
    rows, _, other_probs, other_score = other_readings_kept(chunk, inference, digit_score, min_digit_score)
    if not len(rows):
        return probs, digit_score
    probs, digit_score = probs.copy(), digit_score.copy()
    probs[rows], digit_score[rows] = other_probs, other_score
    return probs, digit_score


def other_readings_kept(chunk: records.DecodedChunk, inference, digit_score: np.ndarray, min_digit_score: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The close calls whose first reading is doubtful and whose other reading scores higher as a
    digit: their input rows, their indices in chunk.other_ways, and that reading's probabilities
    and digit scores."""
    doubtful = np.flatnonzero(digit_score[chunk.other_way_rows] < DOUBTFUL_READING)
    rows = chunk.other_way_rows[doubtful]
    if not len(rows):
        return rows, doubtful, np.zeros((0, 10), np.float32), np.zeros(0, np.float32)
    other_probs, other_score = inference.scores(chunk.other_ways[doubtful], [True] * len(rows), min_digit_score)
    better = other_score > digit_score[rows]
    return rows[better], doubtful[better], other_probs[better], other_score[better]


def as_classify_reads(chunk: records.DecodedChunk, inference) -> records.DecodedChunk:
    """`chunk` with each close call's digit the reading classify keeps for it (likelier_reading):
    what learns from a set's digits (adapt, train --extra) sees a thick marker's ink, not its
    paper. A network without a digit score keeps the first readings, as classify does (the chunk is
    returned as it is, its second readings still attached)."""
    if not len(chunk.other_way_rows) or not inference.knows_non_digits:
        return chunk
    # Only digit scores are needed (the first look's): a minimum of 1 spares the unsure rows the second
    # look, which changes only their probabilities.
    digit_score = np.ones(len(chunk.statuses), np.float32)  # only the close calls' first readings are scored
    close_calls = chunk.other_way_rows
    digit_score[close_calls] = inference.scores(chunk.digits_at(close_calls), [True] * len(close_calls), 1.0)[1]
    rows, ways, _, _ = other_readings_kept(chunk, inference, digit_score, 1.0)
    return chunk.with_readings(rows, chunk.other_ways[ways])


def build_rows(chunk: records.DecodedChunk, probs: np.ndarray, digit_score: np.ndarray | None, min_digit_score: float,
               checkpoint: str, checkpoint_sha256: str) -> pl.DataFrame:
    """One row per input of `chunk`, built from its arrays (no Python per row: the main process
    builds every row of a run). `probs` is (n, 10) float32 and `digit_score` (n,) or None (a
    network without the "not a digit" output); their rows for inputs that are not OK are ignored."""
    n = len(chunk.paths)
    classified = chunk.ok  # went through the network
    found_empty = chunk.statuses == records.NOT_DIGIT_CODE  # preprocessing found only printed lines: no digit
    scored = found_empty | (classified if digit_score is not None else False)
    score = np.where(found_empty, 0.0, 0.0 if digit_score is None else digit_score).astype(np.float32)
    rejected = classified & scored & (score < min_digit_score)
    ok = classified & ~rejected
    statuses = np.where(rejected, records.NOT_DIGIT_CODE, chunk.statuses)
    errors = pl.Series("error", [None] * n, pl.String)
    errors.scatter(np.fromiter(chunk.errors, np.int64, len(chunk.errors)), list(chunk.errors.values()))
    below = np.flatnonzero(rejected)  # few: a message each
    errors.scatter(below, [f"digit score {value:.3f} is below the minimum {min_digit_score:g}: "
                           "not one handwritten digit" for value in score[below].tolist()])
    columns = {
        "path": stored_paths(chunk.paths),
        "file_id": chunk.ids,
        "status": STATUS_NAMES.gather(statuses),
        "error": errors,
        "pred": np.where(ok, probs.argmax(axis=1), 0).astype(np.int8),
        "confidence": probs.max(axis=1).astype(np.float32),
        **{column: probs[:, digit].astype(np.float32) for digit, column in enumerate(PROB_COLUMNS)},
        "digit_score": score,
        "min_digit_score": np.full(n, min_digit_score, np.float32),
        "file_size": chunk.sizes,
        "file_mtime_ns": chunk.mtimes,
        "checkpoint": pl.repeat(checkpoint, n, dtype=pl.String, eager=True),
        "checkpoint_sha256": pl.repeat(checkpoint_sha256, n, dtype=pl.String, eager=True),
    }
    frame = pl.DataFrame(columns, schema=SCHEMA)
    only_where = {"digit_score": scored, "file_size": chunk.sized, "file_mtime_ns": chunk.timed,
                  **dict.fromkeys(["pred", "confidence", *PROB_COLUMNS], ok)}
    return frame.with_columns(pl.when(pl.Series(mask)).then(pl.col(column)).otherwise(None)
                              .alias(column) for column, mask in only_where.items())


STATUS_NAMES = pl.Series("status", records.STATUSES, pl.String)  # STATUS_NAMES.gather(codes): the status column


def stored_paths(paths: list[str | None]) -> list[str | None]:
    """stored_path of each path; a chunk of plain ASCII local paths (the usual one) as it is."""
    if None not in paths and "".join(paths).isascii():
        return paths
    return [None if path is None else stored_path(path) for path in paths]


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def with_file_id(frame: pl.LazyFrame) -> pl.LazyFrame:
    """One result file's rows with a file_id: a file written before the column existed gets the
    identity its paths most likely had, made absolute against the current folder (the cron job
    runs where it ran before), and null where a backslash leaves the old spelling ambiguous:
    such rows identify no file, so an incremental run classifies their files again."""
    if "file_id" in frame.collect_schema():
        return frame
    base = escaped(os.path.realpath(".")).rstrip("/") + "/"
    path = pl.col("path")
    old_id = (pl.when(path.str.contains("\\", literal=True)).then(None)
              .when(path.str.starts_with("/")).then(path).otherwise(pl.lit(base) + path))
    return frame.with_columns(file_id=old_id)


def status_counts(frame: pl.LazyFrame) -> Counter:
    return Counter(dict(frame.group_by("status").len().collect().iter_rows()))


def scan(path: str | Path) -> pl.LazyFrame:
    """A result file (Parquet or CSV) as a lazy frame with the documented types."""
    return with_current_columns(scan_as_written(path))


def scan_as_written(path: str | Path) -> pl.LazyFrame:
    """A result file with only the columns it holds (report checks them: a file of another tool
    must not pass as a result file whose columns are all null).
    Paths are names, never patterns (glob=False): a folder may be called runs[2026]."""
    path = str(path)
    if path.lower().endswith(".csv"):
        return pl.scan_csv(path, schema_overrides=SCHEMA, glob=False)
    return pl.scan_parquet(path, glob=False)


def with_current_columns(frame: pl.LazyFrame) -> pl.LazyFrame:
    """A result file of an older schema version, given this version's columns: the columns it
    lacks are null (version 1 had no digit_score or min_digit_score)."""
    have = frame.collect_schema().names()
    return frame.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in SCHEMA.items() if name not in have)


VERSION_KEY = "mnist_batch_schema_version"  # a Parquet result file's SCHEMA_VERSION, in its key-value metadata


def schema_version(path: str | Path) -> str | None:
    """The result schema version a Parquet result file records; None for CSV, for parts and
    files written without one, and for what cannot be read (its scan says why)."""
    if str(path).lower().endswith(".csv"):
        return None
    try:
        return pl.read_parquet_metadata(path).get(VERSION_KEY)
    except Exception:  # polars raises several types for a file that is not Parquet
        return None
