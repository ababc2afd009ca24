"""Two result files on the same inputs side by side (`report --compare A B`): the accuracy of
each against labels, the inputs where they disagree and which one was right on those. What a
user deciding whether a tuned checkpoint beats its base needs.

    two result files -> labels joined to each -> one row per input (A's and B's outcome) -> figures
"""

import json
import math
import os
from pathlib import Path

import polars as pl

from mnist_batch import records, report, results
from mnist_batch.errors import USAGE, UserError, log, shown
from mnist_batch.files import write_text_atomic
from mnist_batch.stats import wilson_interval

COMPARE_SHAPE = "mnist-batch-compare/1"  # bump when the JSON shape changes
DISAGREEMENTS_LISTED = 100  # disagreements in the JSON and the HTML table; all are counted
SIDES = ("a", "b")
SIDE_COLUMNS = ("path", "status", "pred", "confidence", "digit_score", "min_digit_score", *results.PROB_COLUMNS,
                "checkpoint", "checkpoint_sha256", "label")


def outcome(side: str) -> pl.Expr:
    """What a run said about an input: its digit when classified, else its status (blank, not_digit, an error)."""
    return (pl.when(pl.col(f"status_{side}") == records.OK).then(pl.col(f"pred_{side}").cast(pl.String))
            .otherwise(pl.col(f"status_{side}")))


def right(side: str) -> pl.Expr:
    return (pl.col(f"status_{side}") == records.OK) & (pl.col(f"pred_{side}") == pl.col("label"))


def side_frame(files: list[str], side: str, opts: report.ReportOptions) -> tuple[pl.LazyFrame, str | None]:
    """One side's rows with their labels, keyed by the file's identity (file_id; the path in files
    that have none), its columns named with the side's suffix."""
    frame, source, _ = report.attach_labels(report.scan_results(files), opts)
    frame = frame.select(_key=pl.coalesce("file_id", "path"),
                         **{f"{column}_{side}": pl.col(column) for column in SIDE_COLUMNS})
    # An input twice on one side (two runs' CSVs joined into one) would be joined twice: "-3 only in A".
    repeated = frame.select(pl.len() - pl.col("_key").n_unique()).collect(engine="streaming").item()
    if repeated:
        log(f"note: {', '.join(map(shown, files))} hold{'s' if len(files) == 1 else ''} {repeated:,} rows of inputs "
            "that have a row already; each input is compared by its first row")
        frame = frame.unique("_key", keep="first", maintain_order=True)
    return frame, source


def mcnemar_p(only_a: int, only_b: int) -> float | None:
    """Two-sided exact McNemar test: the chance of a split at least this uneven of the inputs that
    exactly one run got right, were both runs equally good."""
    n = only_a + only_b
    if not n:
        return None
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def check_options(opts: report.ReportOptions) -> tuple[list[str], list[str]]:
    if len(opts.inputs) != 2:
        raise UserError(f"--compare takes two result files (the base first, then the other), not {len(opts.inputs)}",
                        USAGE)
    if opts.review or opts.min_accuracy is not None:
        raise UserError("--review and --min-accuracy are for one set of results: drop them with --compare", USAGE)
    if opts.gallery < 0:
        raise UserError(f"--gallery {opts.gallery}: give 0 (no gallery) or more inputs to show", USAGE)
    if opts.labels_root is not None and opts.labels is None:
        raise UserError("--labels-root goes with --labels FILE: it is where that file's relative paths start", USAGE)
    files = [report.expand((item,)) for item in opts.inputs]
    if set(map(os.path.realpath, files[0])) & set(map(os.path.realpath, files[1])):
        raise UserError(f"--compare {shown(opts.inputs[0])} {shown(opts.inputs[1])}: the same result file on both "
                        "sides; give two different runs", USAGE)
    report.check_outputs(opts, files[0] + files[1])
    return files


def compare(opts: report.ReportOptions) -> dict:
    files = check_options(opts)
    (a, source), (b, _) = (side_frame(side_files, side, opts) for side_files, side in zip(files, SIDES, strict=True))
    both = (a.join(b, on="_key", how="inner")
            .with_columns(label=pl.coalesce("label_a", "label_b"), path="path_a"))
    disagree = both.filter(outcome("a") != outcome("b"))
    labelled = pl.col("label").is_not_null()
    queries = [
        a.select(pl.len()), b.select(pl.len()), both.select(pl.len()),
        both.select(**{f"{name}_{side}": expr(side) for side in SIDES for name, expr in (
            ("evaluated", lambda s: (labelled & (pl.col(f"status_{s}") == records.OK)).sum()),
            ("correct", lambda s: right(s).sum()),
            ("not_classified", lambda s: (labelled & (pl.col(f"status_{s}") != records.OK)).sum()))},
                    labelled=labelled.sum()),
        disagree.select(disagree=pl.len(), labelled=labelled.sum(), only_a=right("a").sum(),
                        only_b=right("b").sum()),
        *(frame.group_by("checkpoint_sha256").agg(pl.col("checkpoint").first(), rows=pl.len())
          .sort("rows", descending=True) for frame in (a.select(checkpoint="checkpoint_a",
                                                                checkpoint_sha256="checkpoint_sha256_a"),
                                                       b.select(checkpoint="checkpoint_b",
                                                                checkpoint_sha256="checkpoint_sha256_b"))),
        listed(disagree, DISAGREEMENTS_LISTED),
    ]
    try:
        rows_a, rows_b, common, scores, split, checkpoints_a, checkpoints_b, listed_rows = pl.collect_all(
            queries, engine="streaming")
    except pl.exceptions.PolarsError as error:
        raise UserError(f"cannot read the result files: {report.first_line(error)}") from None
    scores, split = scores.row(0, named=True), split.row(0, named=True)
    runs = {}
    for side, side_files, rows, checkpoints in zip(SIDES, files, (rows_a, rows_b), (checkpoints_a, checkpoints_b),
                                                   strict=True):
        evaluated, correct = scores[f"evaluated_{side}"], scores[f"correct_{side}"]
        runs[side] = {
            "files": side_files, "rows": rows.item(),
            "checkpoints": [{"name": name, "sha256": sha, "rows": n} for sha, name, n in checkpoints.iter_rows()],
            "evaluated": evaluated, "correct": correct,
            "accuracy": correct / evaluated if evaluated else None,
            "accuracy_ci95": wilson_interval(correct, evaluated) if evaluated else None,
            "labelled_not_classified": scores[f"not_classified_{side}"],
        }
    common = common.item()
    summary = {
        "shape": COMPARE_SHAPE,
        "runs": runs,
        "inputs": {"both": common, "only_a": runs["a"]["rows"] - common, "only_b": runs["b"]["rows"] - common},
        "labels": source, "labelled": scores["labelled"],
        "same_checkpoint": {c["sha256"] for c in runs["a"]["checkpoints"]} == {
            c["sha256"] for c in runs["b"]["checkpoints"]},
        "disagreements": {"count": split["disagree"], "labelled": split["labelled"], "a_right": split["only_a"],
                          "b_right": split["only_b"],
                          "neither_right": split["labelled"] - split["only_a"] - split["only_b"],
                          "mcnemar_p": mcnemar_p(split["only_a"], split["only_b"]) if source else None},
        "disagreement_rows": [disagreement_row(row) for row in listed_rows.iter_rows(named=True)],
    }
    if not common:
        log(f"warning: {shown(opts.inputs[0])} and {shown(opts.inputs[1])} share no input (paths are compared made "
            "absolute against the current folder): run report --compare where both were classified")
    if opts.json_out:
        write_text_atomic(opts.json_out, json.dumps(summary, indent=2) + "\n")
    if opts.html:
        from mnist_batch import report_html

        write_text_atomic(opts.html, report_html.render_compare(summary, listed_rows.head(opts.gallery),
                                                               Path(opts.html).parent, opts.labels))
    return summary


def listed(disagree: pl.LazyFrame, count: int) -> pl.LazyFrame:
    """The disagreements to show: labelled ones first (where one run was right), then by path."""
    return (disagree.sort(pl.col("label").is_null(), "path").head(count)
            .with_columns(right=pl.when(right("a")).then(pl.lit("a")).when(right("b")).then(pl.lit("b"))
                          .when(pl.col("label").is_not_null()).then(pl.lit("neither"))))


def disagreement_row(row: dict) -> dict:
    return {"path": row["path"], "label": row["label"], "right": row["right"],
            **{f"{key}_{side}": row[f"{key}_{side}"] for side in SIDES for key in ("status", "pred", "confidence")}}
