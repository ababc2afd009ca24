"""The Python API: the same decoding, preprocessing, model and rows as `mnist-batch classify`.

    clf = Classifier()                                  # the bundled checkpoint
    frame = clf.predict(["a.png", pil_image, array])    # polars DataFrame, one row per item
    digit, confidence = clf.predict_one(pil_image)
    summary = classify_files(["scans/"], out="preds.parquet")   # the whole CLI job

Arguments are checked at the door: a value of the wrong type is a TypeError naming it, before
any work, never a flag read by its truth (overwrite="no" overwrites nothing).
"""

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from mnist_batch import reading, records, results, run_files
from mnist_batch.engines import run_engine
from mnist_batch.options import ClassifyOptions, RayOptions
from mnist_batch.storage import on_the_driver, output_location

PATH = (str, os.PathLike)
# classify_files' keyword options (ClassifyOptions' fields, less those it sets itself), each with
# the types it takes, what to call them in an error, and whether None is allowed.
OPTION_TYPES = {
    "out": (PATH, "a path", True), "out_dir": (PATH, "a path", True),
    "files_from": (PATH, "a path or '-'", True),
    "include": ((str,), "a glob or a list of globs", False), "exclude": ((str,), "a glob or a list of globs", False),
    "format": ((str,), "'parquet' or 'csv'", True), "checkpoint": (PATH, "a path or a bundled name", True),
    "device": ((str,), "'auto', 'cpu', 'cuda' or 'mps'", False),
    "workers": ((int,), "an int", False), "batch_size": ((int,), "an int", False),
    "max_pixels": ((int,), "an int", False), "min_digit_score": ((int, float), "a number from 0 to 1", False),
    "incremental": ((bool,), "True or False", False), "overwrite": ((bool,), "True or False", False),
    "resume": ((bool,), "True or False", False),
}
OPTION_NAMES = frozenset(ClassifyOptions.__dataclass_fields__) - {"inputs", "progress"}  # == OPTION_TYPES' keys


def check_type(function: str, name: str, value, types: tuple, expected: str, nullable: bool = False) -> None:
    """A TypeError naming the argument when `value` is not of `types` (a bool is no int)."""
    if value is None and nullable:
        return
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise TypeError(f"{function}() argument {name} takes {expected}, not {type(value).__name__} {shown}")


class Classifier:
    """A checkpoint loaded once; predict() takes paths, PIL images and numpy arrays of any
    size and mode, and returns rows of the result schema (path is null for in-memory items)."""

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto",
                 batch_size: int = 1024, max_pixels: int = reading.DEFAULT_MAX_PIXELS,
                 min_digit_score: float = results.DEFAULT_MIN_DIGIT_SCORE):
        from mnist_batch import onnx_inference

        check_type("Classifier", "checkpoint", checkpoint, PATH, "a path or a bundled name", nullable=True)
        check_type("Classifier", "device", device, (str,), "'auto', 'cpu', 'cuda' or 'mps'")
        check_type("Classifier", "batch_size", batch_size, (int,), "an int")
        check_type("Classifier", "max_pixels", max_pixels, (int,), "an int")
        check_type("Classifier", "min_digit_score", min_digit_score, (int, float), "a number from 0 to 1")
        if batch_size < 1 or max_pixels < 1:
            raise ValueError(f"batch_size ({batch_size}) and max_pixels ({max_pixels}) must be 1 or more")
        if not 0.0 <= min_digit_score <= 1.0:
            raise ValueError(f"min_digit_score ({min_digit_score}) must be between 0 and 1")
        self.inference = onnx_inference.load_inference(checkpoint, device)
        self.batch_size, self.max_pixels, self.min_digit_score = batch_size, max_pixels, min_digit_score

    def predict(self, items) -> pl.DataFrame:
        """One row per item, in the order given; a bad item is a row with its status and error.
        One image given alone (a path, a PIL image, a 2-D or H x W x 1/3/4 array) is one item;
        an (N, H, W) or (N, H, W, C) array is N images. Bytes, None and other values that are
        neither an image nor a list of them are a TypeError."""
        items = as_items(items)
        frames = [self.predict_chunk(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        return pl.concat(frames) if frames else results.empty_rows()

    def predict_one(self, item) -> tuple[int, float]:
        """(digit, confidence) of one image; ValueError naming the status when it cannot be classified."""
        row = self.predict([item]).row(0, named=True)
        if row["status"] != records.OK:
            raise ValueError(f"not classified: {row['status']}: {row['error']}")
        return row["pred"], row["confidence"]

    def predict_chunk(self, items: list) -> pl.DataFrame:
        paths = [str(item) if isinstance(item, str | Path) else None for item in items]
        decoded = [records.load_path(path, self.max_pixels) if path is not None
                   else records.load_image(item, self.max_pixels) for path, item in zip(paths, items, strict=True)]
        chunk = records.DecodedChunk.of(paths, decoded)
        return results.predict_rows(chunk, self.inference, self.min_digit_score)


def as_items(items) -> list:
    """What predict() was given, as a list of items: one image alone is one item."""
    if is_one_image(items):
        return [items]
    if isinstance(items, bytes | bytearray | memoryview):
        raise TypeError(f"predict() got {type(items).__name__}, which would be one item per byte: pass a list "
                        "of images, or a path; for an image file's bytes, pass Image.open(io.BytesIO(data))")
    if not isinstance(items, Iterable):
        raise TypeError(f"predict() takes an image (a path, a PIL image or a numpy array) or a list of them, "
                        f"not {type(items).__name__}")
    return list(items)


def is_one_image(items) -> bool:
    """An image passed where a list belongs: iterating it would give characters or pixel rows.
    An array is a stack of images only as (N, H, W) or (N, H, W, C); any other shape is one
    item (a bad one gets its row)."""
    if isinstance(items, np.ndarray):
        return items.ndim not in (3, 4) or (items.ndim == 3 and items.shape[2] in (1, 3, 4))
    return isinstance(items, str | Path | Image.Image)


def classify_files(inputs: Iterable[str | Path] = (), *, engine: str = "local", address: str | None = None,
                   actors: int = 0, progress: bool = False, **options) -> run_files.ClassifySummary:
    """`mnist-batch classify` from Python: `inputs` are files and folders (one str or Path is
    one input), and the CLI's options are keyword arguments
    (out=, out_dir=, incremental=, files_from=, include=, exclude=, format=, checkpoint=, device=,
    workers=, batch_size=, overwrite=, resume=, max_pixels=). Raises errors.UserError for what
    the CLI reports as one line, and TypeError for an argument of the wrong type."""
    started = time.perf_counter()
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"classify_files() got an unknown option {unknown[0]!r}; "
                        f"the options are {', '.join(sorted(OPTION_NAMES))}")
    check_type("classify_files", "engine", engine, (str,), "'local' or 'ray'")
    check_type("classify_files", "address", address, (str,), "a Ray address", nullable=True)
    check_type("classify_files", "actors", actors, (int,), "an int")
    check_type("classify_files", "progress", progress, (bool,), "True or False")
    raw_out = options.get("out")
    for name, value in options.items():
        types, expected, nullable = OPTION_TYPES[name]
        if name in ("include", "exclude"):  # one glob, or several
            globs = tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else (value,)
            for glob in globs:
                check_type("classify_files", name, glob, types, expected)
            options[name] = globs
            continue
        check_type("classify_files", name, value, types, expected, nullable)
        if types is PATH and value is not None:
            options[name] = output_location(os.fspath(value)) if name in ("out", "out_dir") else os.fspath(value)
    driver_out = on_the_driver(raw_out)
    opts = ClassifyOptions(inputs=input_names(inputs), progress=progress, **options)
    return run_engine(engine, opts, RayOptions(address=address, actors=actors, driver_out=driver_out), started)


def input_names(inputs) -> tuple[str, ...]:
    """classify_files' inputs: one path, or an iterable of paths (never the characters of one)."""
    if isinstance(inputs, PATH):
        inputs = [inputs]
    elif isinstance(inputs, bytes | bytearray) or not isinstance(inputs, Iterable):
        raise TypeError(f"classify_files() argument inputs takes a path or a list of paths, "
                        f"not {type(inputs).__name__}")
    names = []
    for item in inputs:
        check_type("classify_files", "inputs", item, PATH, "a path or a list of paths")
        names.append(os.fspath(item))
    return tuple(names)
