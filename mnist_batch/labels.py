"""Labels files: `path,label` pairs in CSV or Parquet, as `report --labels` and
`train --extra` read them. Extra columns are allowed (a `report --review` file is one),
and so is an empty label: a row left for a person to fill in."""

import os
from pathlib import Path

import polars as pl

from mnist_batch.errors import USAGE, UserError

DIGITS = [str(digit) for digit in range(10)]


def read_labels_file(path: Path) -> pl.DataFrame:
    """All rows of a labels file as strings: `path`, and `label` stripped (null when empty or NaN)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"labels file {path} is a folder; give a CSV or Parquet file with path,label columns", USAGE)
    if not path.is_file():
        raise UserError(f"labels file {path} not found", USAGE)
    try:
        if path.suffix.lower() == ".csv":
            frame = pl.read_csv(path, infer_schema=False, glob=False)
        else:
            frame = pl.read_parquet(path, glob=False)
    except Exception as error:  # polars raises many types for a file that is not a table
        raise UserError(f"cannot read labels file {path}: {str(error).splitlines()[0]}; "
                        "give a CSV or Parquet file with path,label columns", USAGE) from error
    for needed in ("path", "label"):
        if needed not in frame.columns:
            raise UserError(f"labels file {path} has no {needed!r} column (it needs path,label)", USAGE)
    if frame.schema["label"].is_float():  # pandas writes a missing label as NaN: it is an empty label
        frame = frame.with_columns(pl.col("label").fill_nan(None))
    label = pl.col("label").cast(pl.String).str.strip_chars()
    # A Parquet label column of floats reads "7.0": the digit is what counts.
    label = label.str.replace(r"^(\d)\.0+$", "${1}")
    return frame.select(pl.col("path").cast(pl.String), pl.when(label == "").then(None).otherwise(label).alias("label"))


def resolve(path: str, root: Path | None) -> str:
    """The file a labels file's path names: relative paths are relative to `root` when given,
    else to the current folder. `..` is left to the kernel (as discover.normalise does): through
    a symlinked folder it need not mean the parent."""
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)
