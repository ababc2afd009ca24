"""The Python API: the same decoding, preprocessing, model and rows as `mnist-batch classify`.

    clf = Classifier()                                  # the bundled checkpoint
    frame = clf.predict(["a.png", pil_image, array])    # polars DataFrame, one row per item
    digit, confidence = clf.predict_one(pil_image)
    summary = classify_files(["scans/"], out="preds.parquet")   # the whole CLI job
"""

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from mnist_batch import images, results
from mnist_batch.options import ClassifyOptions, RayOptions, run_engine

# classify_files' keyword options: ClassifyOptions' fields, less those it sets itself.
OPTION_NAMES = frozenset(ClassifyOptions.__dataclass_fields__) - {"inputs", "progress"}


class Classifier:
    """A checkpoint loaded once; predict() takes paths, PIL images and numpy arrays of any
    size and mode, and returns rows of the result schema (path is null for in-memory items)."""

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto",
                 batch_size: int = 1024, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                 min_digit_score: float = results.DEFAULT_MIN_DIGIT_SCORE):
        from mnist_batch.model import Inference

        if batch_size < 1 or max_pixels < 1:
            raise ValueError(f"batch_size ({batch_size}) and max_pixels ({max_pixels}) must be 1 or more")
        self.inference = Inference(checkpoint, device)
        if not 0.0 <= min_digit_score <= 1.0:
            raise ValueError(f"min_digit_score ({min_digit_score}) must be between 0 and 1")
        self.batch_size, self.max_pixels, self.min_digit_score = batch_size, max_pixels, min_digit_score

    def predict(self, items: Iterable) -> pl.DataFrame:
        """One row per item, in the order given; a bad item is a row with its status and error.
        One image given alone (a path, a PIL image, a 2-D or H x W x 1/3/4 array) is one item;
        an (N, H, W) array is N images."""
        items = [items] if is_one_image(items) else list(items)
        frames = [self.predict_chunk(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        return pl.concat(frames) if frames else results.empty_rows()

    def predict_one(self, item) -> tuple[int, float]:
        """(digit, confidence) of one image; ValueError naming the status when it cannot be classified."""
        row = self.predict([item]).row(0, named=True)
        if row["status"] != images.OK:
            raise ValueError(f"not classified: {row['status']}: {row['error']}")
        return row["pred"], row["confidence"]

    def predict_chunk(self, items: list) -> pl.DataFrame:
        paths = [str(item) if isinstance(item, str | Path) else None for item in items]
        decoded = [images.load_path(path, self.max_pixels) if path is not None
                   else images.load_image(item, self.max_pixels) for path, item in zip(paths, items, strict=True)]
        chunk = images.DecodedChunk.of(paths, decoded)
        return results.predict_rows(chunk, self.inference, self.min_digit_score)


def is_one_image(items) -> bool:
    """An image passed where a list belongs: iterating it would give characters or pixel rows."""
    if isinstance(items, np.ndarray):
        return items.ndim == 2 or (items.ndim == 3 and items.shape[2] in (1, 3, 4))
    return isinstance(items, str | Path | Image.Image)


def classify_files(inputs: Iterable[str | Path] = (), *, engine: str = "local", address: str | None = None,
                   actors: int = 0, progress: bool = False, **options) -> results.ClassifySummary:
    """`mnist-batch classify` from Python: `inputs` are files and folders (one str or Path is
    one input), and the CLI's options are keyword arguments
    (out=, out_dir=, incremental=, files_from=, include=, exclude=, format=, checkpoint=, device=,
    workers=, batch_size=, overwrite=, resume=, max_pixels=). Raises errors.UserError for what
    the CLI reports as one line."""
    started = time.perf_counter()
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"classify_files() got an unknown option {unknown[0]!r}; "
                        f"the options are {', '.join(sorted(OPTION_NAMES))}")
    if isinstance(inputs, str | Path):  # one folder or file, not its characters
        inputs = [inputs]
    paths = {name: Path(options[name]) for name in ("out", "out_dir") if options.get(name) is not None}
    globs = {name: (options[name],) if isinstance(options[name], str) else tuple(options[name])
             for name in ("include", "exclude") if name in options}
    opts = ClassifyOptions(inputs=tuple(str(item) for item in inputs), progress=progress,
                           **(options | paths | globs))
    return run_engine(engine, opts, RayOptions(address=address, actors=actors), started)
