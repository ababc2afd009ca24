"""Labels files: `path,label` pairs in CSV or Parquet, as `report --labels` and
`train --extra` read them. Extra columns are allowed (a `report --review` file is one),
and so is an empty label: a row left for a person to fill in. An empty path with a label
is refused; a row with neither (a spreadsheet's blank line) is no row at all.

A review file in CSV is made to be opened in a spreadsheet, so no cell of it may start a
formula (OWASP's CSV injection advice): a text cell that starts with = + - @, a tab or a
carriage return gets a ' in front, which spreadsheets take as "this is text". Reading a
CSV labels file takes that ' off again, so the paths match their files. A cell that starts
with ' followed by one of those characters (or another ') gets one too, so that the rule
reverses exactly.

A label names its file by identity (discover.file_ids): its path is resolved against a root
folder (--labels-root, --extra-root, else the current folder), symlinks and all, and meets the
result row whose file_id is the same, however either side spelt the path.
"""

import os
from pathlib import Path

import polars as pl

from mnist_batch.discover import file_ids
from mnist_batch.errors import USAGE, UserError, log, shown

DIGITS = [str(digit) for digit in range(10)]
SHOWN_CONFLICTS = 3  # conflicting paths named in the error; the rest are counted
FORMULA_START = "=+\\-@\t\r"  # (a regex class) what makes a spreadsheet cell a formula
QUOTED = f"^([{FORMULA_START}]|'[{FORMULA_START}'])"  # cells that get a ' (and keep it: then it was doubled)


def label_text(label: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A label column of any type as stripped text, null when empty (or NaN, as pandas writes a
    missing one). A whole float reads "7.0": the digit is what counts; 7.5 stays "7.5", no digit."""
    if dtype.is_float():
        label = label.fill_nan(None)
    text = label.cast(pl.String).str.strip_chars().str.replace(r"^(\d)\.0+$", "${1}")
    return pl.when(text == "").then(None).otherwise(text)


def spreadsheet_safe(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Every text column with a ' before a cell that a spreadsheet would run as a formula."""
    text = [name for name, dtype in frame.collect_schema().items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(QUOTED)).then("'" + pl.col(name)).otherwise(pl.col(name)).alias(name)
        for name in text)


def from_spreadsheet(column: pl.Expr) -> pl.Expr:
    """What spreadsheet_safe wrote, as it was."""
    return pl.when(column.str.contains(f"^'[{FORMULA_START}']")).then(column.str.slice(1)).otherwise(column)


def read_labels_file(path: Path) -> pl.DataFrame:
    """All rows of a labels file as strings: `path`, and `label` stripped (null when empty or NaN)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"labels file {shown(path)} is a folder; give a CSV or Parquet file with path,label columns",
                        USAGE)
    if not path.is_file():
        raise UserError(f"labels file {shown(path)} not found", USAGE)
    csv = path.suffix.lower() == ".csv"
    try:
        frame = pl.read_csv(path, infer_schema=False, glob=False) if csv else pl.read_parquet(path, glob=False)
    except Exception as error:  # polars raises many types for a file that is not a table
        raise UserError(f"cannot read labels file {shown(path)}: {shown(str(error).splitlines()[0])}; "
                        "give a CSV or Parquet file with path,label columns", USAGE) from error
    for needed in ("path", "label"):
        if needed not in frame.columns:
            raise UserError(f"labels file {shown(path)} has no {needed!r} column (it needs path,label)", USAGE)
        if frame.schema[needed].is_nested() or frame.schema[needed] == pl.Object:
            raise UserError(f"labels file {shown(path)}: its {needed!r} column holds {frame.schema[needed]} "
                            f"values; give one {'path as text' if needed == 'path' else 'digit'} per row", USAGE)
    label = label_text(pl.col("label"), frame.schema["label"]).alias("label")
    paths = pl.col("path").cast(pl.String)
    if csv:  # a review file's paths as they were before spreadsheet_safe (any CSV is read so)
        paths = from_spreadsheet(paths)
    try:
        frame = frame.select(paths.alias("path"), label)
    except pl.exceptions.PolarsError as error:  # bytes that are no UTF-8 text, say, in a Parquet binary column
        raise UserError(f"labels file {shown(path)}: its path or label column cannot be read as text "
                        f"({shown(str(error).splitlines()[0])}); give paths and labels as UTF-8 text", USAGE) from None
    no_path = pl.col("path").is_null() | (pl.col("path").str.strip_chars() == "")
    where = frame.with_row_index("row").filter(no_path & pl.col("label").is_not_null()).head(1)
    if where.height:
        row, label = where["row"][0], where["label"][0]
        place = f"line {row + 2}" if csv else f"row {row + 1}"  # a CSV's line 1 is its header
        raise UserError(f"labels file {shown(path)}, {place}: label {shown(repr(label))} has an empty path; "
                        "give the image's path, or delete the row", USAGE)
    return frame.filter(~(no_path & pl.col("label").is_null()))


def one_label_each(frame: pl.DataFrame, key: str, source: str, noun: str = "path") -> pl.DataFrame:
    """`frame` with one row per `key` (the file a row names): repeats with the same label go,
    with a note; different labels for one key are a usage error naming the first few."""
    repeated = (frame.group_by(key).agg(n=pl.len(), labels=pl.col("label").unique().sort())
                .filter(pl.col("n") > 1).sort(key))
    conflicting = repeated.filter(pl.col("labels").list.len() > 1)
    if conflicting.height:
        examples = "; ".join(f"{shown(name)}: {', '.join(map(str, given))}"
                             for name, given in conflicting.head(SHOWN_CONFLICTS).select(key, "labels").iter_rows())
        more = "; ..." if conflicting.height > SHOWN_CONFLICTS else ""
        raise UserError(f"{source} gives {conflicting.height:,} {noun}s different labels ({examples}{more}): "
                        f"keep one label per {noun}", USAGE)
    if repeated.height:
        log(f"note: {source} lists {repeated.height:,} {noun}s more than once with the same label; "
            f"{int(repeated['n'].sum()) - repeated.height:,} repeated rows ignored")
        frame = frame.unique(key, keep="first", maintain_order=True)
    return frame


def resolve(path: str, root: Path | None) -> str:
    """The file a labels file's path names: relative paths are relative to `root` when given,
    else to the current folder. `..` is left to the kernel (as discover.normalise does): through
    a symlinked folder it need not mean the parent."""
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)


def read_digit_labels(path: Path, root: Path | None) -> pl.DataFrame:
    """A labels file for report: `path` as written, its `file_id` (resolved against `root`, else
    the current folder) and an Int8 `label`, one per file. Rows with an empty label (a review file
    not yet filled in) are left out; a label that is not a digit, or two labels for one file
    however spelt, are usage errors."""
    every_row = read_labels_file(path)
    frame = every_row.filter(pl.col("label").is_not_null())
    if every_row.height and not frame.height:
        log(f"note: labels file {shown(path)} has {every_row.height:,} rows but no label filled in "
            "(a --review file gets its label column empty): fill in the label column")
    bad = frame.filter(~pl.col("label").is_in(DIGITS)).head(1)
    if bad.height:
        raise UserError(f"labels file {shown(path)}: label {shown(repr(bad['label'][0]))} for {shown(bad['path'][0])} "
                        "is not a digit 0-9")
    ids = file_ids([resolve(name, root) for name in frame["path"]])
    frame = frame.select("path", pl.Series("file_id", ids, pl.String), pl.col("label").cast(pl.Int8))
    return one_label_each(frame, "file_id", f"labels file {shown(path)}", noun="file")


def join_labels(frame: pl.LazyFrame, label_rows: pl.DataFrame, labels_file: Path) -> tuple[pl.LazyFrame, int]:
    """Result rows with an Int8 `label` (null where none matches), and the count of labels that
    match no row. A label meets the row of its file (file_id); a row without a file_id (an object
    store's, or an in-memory image's) meets a label whose path is written as the row's path."""
    by_id = label_rows.lazy().select("file_id", _label_by_id="label")
    by_path = label_rows.lazy().select(pl.col("path").alias("_path"), _label_by_path="label").unique("_path")
    no_id = pl.col("file_id").is_null()
    joined = (frame.drop("label", strict=False).with_columns(_path=pl.when(no_id).then(pl.col("path")))
              .join(by_id, on="file_id", how="left").join(by_path, on="_path", how="left")
              .with_columns(label=pl.coalesce("_label_by_id", "_label_by_path"))
              .drop("_path", "_label_by_id", "_label_by_path"))
    unmatched_labels = (label_rows.lazy().join(frame.select("file_id"), on="file_id", how="anti")
                        .join(frame.filter(no_id).select("path"), on="path", how="anti"))
    unmatched, row_example = (f.item() for f in pl.collect_all([
        unmatched_labels.select(pl.len()), frame.select(pl.col("path").min())]))
    if label_rows.height and unmatched * 2 > label_rows.height:
        label_example = unmatched_labels.select(pl.col("path").min()).collect().item()
        log(f"{unmatched:,} of {label_rows.height:,} labels in {shown(labels_file)} match no result row. A label "
            f"meets the row of its file, its path taken from --labels-root (else the current folder); e.g. label "
            f"path {shown(repr(label_example))}, result path {shown(repr(row_example))}")
    return joined, unmatched
