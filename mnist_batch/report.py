"""Summaries of result files, against labels when there are any.

    result file(s) -> polars lazy scan -> join labels -> aggregates -> renderers

Every figure comes from small group-bys (by status, by predicted/true digit, by
confidence bin), collected in one streaming pass, so ten million rows fit in bounded memory.
"""

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mnist_batch import labels, records, results, storage
from mnist_batch.errors import USAGE, UserError, log, shown
from mnist_batch.files import write_atomic, write_text_atomic
from mnist_batch.stats import wilson_interval

REPORT_SHAPE = "mnist-batch-report/3"  # bump when the JSON shape changes; 3 added not_digit and risk_coverage
CALIBRATION_BINS = 15
HISTOGRAM_BINS = 20
FAILED_SHOWN = 100  # failed and blank inputs listed in the HTML page; the rest are counted
# Confidence thresholds of the risk-coverage table: what share of the classified rows each keeps,
# and how many of those are right, so that a user can choose what goes to manual review.
RISK_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95}
MISCLASSIFIED = pl.col("label").is_not_null() & (pl.col("pred") != pl.col("label"))
FAILED = ~pl.col("status").is_in([records.OK, records.BLANK, records.NOT_DIGIT])  # as records.is_failed


def unsure(threshold: float) -> pl.Expr:
    """A classified row below the review threshold; a threshold of 1 takes every one, even a
    confidence of exactly 1.0 (a softmax in float32 reaches it)."""
    return (pl.col("confidence") < threshold) | (threshold >= 1.0)


@dataclass(frozen=True)
class ReportOptions:
    inputs: tuple[str, ...]
    labels: Path | None = None
    labels_root: Path | None = None
    labels_from_dirs: bool = False
    review_threshold: float = 0.9
    json_out: Path | None = None
    html: Path | None = None
    review: Path | None = None
    min_accuracy: float | None = None
    gallery: int = 24


def expand(inputs: tuple[str, ...]) -> list[str]:
    """Files and globs -> sorted existing files; a pattern that matches nothing is an error."""
    files = []
    for item in inputs:
        if storage.is_uri(item):  # read by polars, with the store's settings from the environment
            files.extend(storage.result_objects(item))
            continue
        if os.path.isdir(item):  # a directory of Parquet parts, as the Ray engine writes
            item = os.path.join(glob.escape(item), "*.parquet")
        # A file that exists is taken as named, even if its name holds [ ] * or ?
        matched = sorted(glob.glob(item)) if glob.has_magic(item) and not os.path.isfile(item) else [item]
        matched = [m for m in matched if not os.path.basename(m).startswith(".")]
        if not matched or not all(os.path.isfile(m) for m in matched):
            raise UserError(f"result file {shown(item)} not found; give .parquet or .csv files written by classify",
                            USAGE)
        files.extend(matched)
    if not files:
        raise UserError("no result files given", USAGE)
    return sorted(set(files))


# The columns report reads, and the kind of type each must have.
REQUIRED_COLUMNS = {"path": "string", "status": "string", "pred": "integer", "confidence": "float"}


# Columns report uses when they are there (result files of older versions lack some).
OPTIONAL_COLUMNS = {"file_mtime_ns": pl.Int64, "checkpoint": pl.String, "checkpoint_sha256": pl.String}


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def column_kind(dtype: pl.DataType) -> str:
    if dtype == pl.String:
        return "string"
    if dtype.is_integer():
        return "integer"
    return "float" if dtype.is_float() else str(dtype)


def scan_result_file(file: str) -> pl.LazyFrame:
    """One result file, its schema checked: a file from another tool, or a 0-byte one, is one line."""
    try:
        frame = results.scan_as_written(file)
        schema = frame.collect_schema()
    except Exception as error:  # polars raises several types for a file it cannot parse
        raise UserError(f"{shown(file)} is not a result file mnist-batch can read ({shown(first_line(error))}); "
                        "give .parquet or .csv files written by classify") from None
    for column, kind in REQUIRED_COLUMNS.items():
        if column not in schema:
            raise UserError(f"{shown(file)} is not an mnist-batch result file (no column {column!r})")
        if column_kind(schema[column]) != kind and not (kind == "float" and schema[column].is_integer()):
            raise UserError(f"{shown(file)}: column {column!r} holds {schema[column]} values, not {kind}s; "
                            "is it a result file written by classify?")
    return results.with_current_columns(results.with_file_id(frame))


def warn_if_newer(files: list[str]) -> None:
    """One line when result files come from a newer mnist-batch: their columns may mean what
    this version does not know; the figures are given, but may be wrong."""
    newer = [(file, version) for file in files if (version := results.schema_version(file)) is not None
             and not (version.isdigit() and int(version) <= int(results.SCHEMA_VERSION))]
    if newer:
        file, version = newer[0]
        log(f"warning: {len(newer)} of the result files ({shown(file)}{', ...' if len(newer) > 1 else ''}) were "
            f"written by a newer mnist-batch (result schema version {shown(version)}; this one knows up to "
            f"{results.SCHEMA_VERSION}): the figures may be wrong; upgrade mnist-batch to read them")


def scan_results(files: list[str]) -> pl.LazyFrame:
    frames = [scan_result_file(file) for file in files]
    warn_if_newer(files)
    combined = pl.concat(frames, how="diagonal_relaxed")
    present = combined.collect_schema()
    combined = combined.with_columns(pl.lit(None, dtype).alias(column) for column, dtype in OPTIONAL_COLUMNS.items()
                                     if column not in present)
    if len(files) > 1:
        combined = newest_row_per_file(combined)
    return combined


def same_inputs_other_checkpoints(files: list[str]) -> None:
    """Two result files given to a plain report that hold the same inputs under different
    checkpoints are two runs to compare, not one run to merge: one line says so."""
    first, second = (scan_result_file(file).select("checkpoint_sha256", _key=pl.coalesce("file_id", "path"))
                     for file in files)
    shared = (first.join(second, on="_key", how="inner")
              .filter(pl.col("checkpoint_sha256").ne_missing(pl.col("checkpoint_sha256_right"))).select(pl.len()))
    try:
        count = shared.collect(engine="streaming").item()
    except pl.exceptions.PolarsError:
        return  # the report itself names what is wrong with the files
    if count:
        log(f"warning: {shown(files[0])} and {shown(files[1])} hold {count:,} of the same inputs classified with "
            f"different checkpoints; this report keeps one row per input; to compare the two runs: "
            f"mnist-batch report --compare {shown(files[0])} {shown(files[1])}")


def newest_row_per_file(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Rows of several result files, one per file (file_id; the path where a row has none): the
    row of the newest version of the file wins, and a later result file's row wins a tie. Two
    files that share a relative path spelling (two folders each classified from inside) stay
    two. Merging is said on stderr: it may be wanted (incremental runs, retries) or not."""
    key = pl.coalesce("file_id", "path")
    newest = rows.sort("file_mtime_ns", nulls_last=False, maintain_order=True).filter(
        key.is_null() | key.is_last_distinct())
    total, kept = pl.collect_all([rows.select(pl.len()), newest.select(pl.len())])
    merged = total.item() - kept.item()
    if merged:
        log(f"note: {merged:,} of {total.item():,} rows are older rows of a file that a newer row also covers "
            "(incremental runs, retries, or one file given under several spellings); each file's newest row "
            "is counted")
    return newest


def attach_labels(frame: pl.LazyFrame, opts: ReportOptions) -> tuple[pl.LazyFrame, str | None, int]:
    """Adds an Int8 'label' column (null where unknown); returns (frame, source, unmatched labels)."""
    if opts.labels and opts.labels_from_dirs:
        raise UserError("--labels and --labels-from-dirs are two label sources: pick one", USAGE)
    if opts.labels:
        label_rows = labels.read_digit_labels(opts.labels, opts.labels_root)
        joined, unmatched = labels.join_labels(frame, label_rows, opts.labels)
        return joined, "file", unmatched
    if opts.labels_from_dirs:
        folder = pl.col("path").str.extract(r"(?:^|/)([0-9])/[^/]+$")
        return frame.with_columns(label=folder.cast(pl.Int8)), "dirs", 0
    schema = frame.collect_schema()
    if "label" in schema:
        text = labels.label_text(pl.col("label"), schema["label"])
        bad = frame.filter(text.is_not_null() & ~text.is_in(labels.DIGITS)).select("label").head(1).collect()
        if bad.height:
            raise UserError(f"the results' label column holds values that are not digits 0-9, "
                            f"e.g. {bad['label'][0]!r}")
        # Every value is a digit now; a number casts as it is, cheaper than through its text.
        digit = pl.col("label")
        if schema["label"].is_float():
            digit = digit.fill_nan(None)
        elif not schema["label"].is_numeric():
            digit = text
        return frame.with_columns(label=digit.cast(pl.Int8)), "column", 0
    return frame.with_columns(label=pl.lit(None, pl.Int8)), None, 0


def check_values(checks: pl.DataFrame) -> None:
    """Impossible values in a results file: one line naming the column, not an IndexError later."""
    for column, rule in VALUE_RULES.items():
        if checks[column].item():
            raise UserError(f"the result files' column {column!r} holds {checks[column].item():,} values that are "
                            f"not {rule}; were they written by classify?")
    if checks["answerless"].item():  # classify writes both for every ok row: an edited file, or another tool's
        raise UserError(f"the result files hold {checks['answerless'].item():,} rows of status 'ok' without a pred "
                        "or a confidence; were they written by classify?")


VALUE_RULES = {"status": "statuses (null)", "pred": "digits 0-9",
               "confidence": "probabilities 0-1"}


def summarise(frame: pl.LazyFrame, source: str | None, unmatched: int, threshold: float) -> dict:
    ok = pl.col("status") == records.OK
    rejected = pl.col("status") == records.NOT_DIGIT
    has_label = pl.col("label").is_not_null()
    classified = frame.filter(ok)
    labelled = classified.filter(has_label)
    right = (pl.col("pred") == pl.col("label"))
    kept = [pl.col("confidence") >= t for t in RISK_THRESHOLDS]
    queries = [
        frame.select(
            status=pl.col("status").is_null().sum(),
            pred=(pl.col("pred").is_not_null() & ~pl.col("pred").is_between(0, 9)).sum(),
            confidence=(pl.col("confidence").is_not_null() & ~pl.col("confidence").is_between(0.0, 1.0)).sum(),
            answerless=(ok & (pl.col("pred").is_null() | pl.col("confidence").is_null())).sum(),
        ),
        # the same weights under two file names are one checkpoint
        frame.group_by("checkpoint_sha256").agg(pl.col("checkpoint").first(), rows=pl.len()),
        frame.group_by("status").agg(n=pl.len()),
        classified.group_by("pred").agg(n=pl.len()),
        classified.select(
            mean=pl.col("confidence").mean(),
            low=unsure(threshold).sum(),
            min=pl.col("confidence").min(),
            max=pl.col("confidence").max(),
            **{name: pl.col("confidence").quantile(q, "linear") for name, q in QUANTILES.items()},
        ),
        frame.select(unlabelled=pl.col("label").is_null().sum(),
                     labelled_not_classified=(has_label & ~ok & ~rejected).sum(),
                     labelled_not_digit=(has_label & rejected).sum()),
        labelled.group_by("label", "pred").agg(n=pl.len()),
        labelled.with_columns(
            bin=(pl.col("confidence") * CALIBRATION_BINS).floor().clip(0, CALIBRATION_BINS - 1).cast(pl.Int32)
        ).group_by("bin").agg(n=pl.len(), confidence=pl.col("confidence").mean(),
                              accuracy=(pl.col("pred") == pl.col("label")).mean()),
        classified.with_columns(
            bin=(pl.col("confidence") * HISTOGRAM_BINS).floor().clip(0, HISTOGRAM_BINS - 1).cast(pl.Int32),
            correct=pl.when(pl.col("label").is_null()).then(None).otherwise(pl.col("pred") == pl.col("label")),
        ).group_by("bin", "correct").agg(n=pl.len()),
        classified.select(*(k.sum().alias(f"kept_{i}") for i, k in enumerate(kept)),
                          *((k & has_label).sum().alias(f"labelled_{i}") for i, k in enumerate(kept)),
                          *((k & has_label & right).sum().alias(f"correct_{i}") for i, k in enumerate(kept))),
        frame.select(pl.col("min_digit_score").drop_nulls().unique().sort().implode()),
    ]
    try:
        # Two passes: sharing one scan with the checkpoint's 64-character hashes would hold them
        # for every row in memory; and impossible values must stop before they index the tables.
        checks, by_checkpoint = pl.collect_all(queries[:2], engine="streaming")
        check_values(checks)
        if by_checkpoint.height > 1 and source is not None:  # only then is accuracy per checkpoint worth a pass
            by_checkpoint = labelled.group_by("checkpoint_sha256").agg(
                evaluated=pl.len(), correct=right.sum()).collect(engine="streaming").join(
                by_checkpoint, on="checkpoint_sha256", how="right")
        else:
            by_checkpoint = by_checkpoint.with_columns(evaluated=pl.lit(0), correct=pl.lit(0))
        by_status, by_pred, confidence, label_counts, pairs, calibration, histogram, coverage, min_scores = (
            pl.collect_all(queries[2:], engine="streaming"))
    except pl.exceptions.PolarsError as error:  # e.g. a CSV whose pred column holds words
        raise UserError(f"cannot read the result files: {first_line(error)}") from None

    statuses = dict(zip(by_status["status"], by_status["n"], strict=True))
    rows = sum(statuses.values())
    errors = {k: v for k, v in sorted(statuses.items()) if records.is_failed(k)}
    conf = confidence.row(0, named=True)
    coverage = coverage.row(0, named=True)
    summary = {
        "shape": REPORT_SHAPE,
        "rows": rows,
        "status": {"ok": statuses.get(records.OK, 0), "blank": statuses.get(records.BLANK, 0),
                   "not_digit": statuses.get(records.NOT_DIGIT, 0), "failed": sum(errors.values()), "errors": errors},
        "predicted": {str(d): int(dict(zip(by_pred["pred"], by_pred["n"], strict=True)).get(d, 0)) for d in range(10)},
        "confidence": {k: conf[k] for k in ("min", *QUANTILES, "max", "mean")},
        "review_threshold": threshold,
        "below_threshold": int(conf["low"] or 0),
        # the thresholds the rows were classified with; empty for results of schema version 1
        "min_digit_score": [round(score, 6) for score in min_scores.item()],
        "risk_coverage": [risk_coverage_row(t, statuses.get(records.OK, 0), coverage[f"kept_{i}"],
                                            coverage[f"labelled_{i}"], coverage[f"correct_{i}"])
                          for i, t in enumerate(RISK_THRESHOLDS)],
        "checkpoints": [
            {"name": row["checkpoint"], "sha256": row["checkpoint_sha256"], "rows": int(row["rows"]),
             "accuracy": row["correct"] / row["evaluated"] if row["evaluated"] else None,
             "evaluated": int(row["evaluated"] or 0)}
            for row in by_checkpoint.sort("rows", "checkpoint", descending=[True, False], nulls_last=True
                                          ).iter_rows(named=True)
        ],
        "confidence_histogram": [
            {"bin": int(b), "correct": c, "count": int(n)}
            for b, c, n in histogram.sort("bin", "correct").iter_rows()
        ],
        "labels": None,
    }
    if source is None:
        return summary

    confusion = [[0] * 10 for _ in range(10)]
    for true, pred, n in pairs.iter_rows():
        confusion[true][pred] = int(n)
    evaluated = sum(map(sum, confusion))
    correct = sum(confusion[d][d] for d in range(10))
    per_class = {}
    for d in range(10):
        support = sum(confusion[d])
        predicted = sum(confusion[t][d] for t in range(10))
        precision = confusion[d][d] / predicted if predicted else 0.0
        recall = confusion[d][d] / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(d)] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    confused = sorted(((confusion[t][p], t, p) for t in range(10) for p in range(10) if t != p and confusion[t][p]),
                      key=lambda x: (-x[0], x[1], x[2]))
    bins = [{"bin": int(b), "lower": b / CALIBRATION_BINS, "upper": (b + 1) / CALIBRATION_BINS,
             "count": int(n), "confidence": c, "accuracy": a}
            for b, n, c, a in calibration.sort("bin").iter_rows()]
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / evaluated if evaluated else 0.0
    counts = label_counts.row(0, named=True)
    labelled_rows = evaluated + counts["labelled_not_classified"] + counts["labelled_not_digit"]
    summary["labels"] = {
        "source": source,
        "evaluated": evaluated,
        "correct": correct,
        "accuracy": correct / evaluated if evaluated else None,
        "accuracy_ci95": wilson_interval(correct, evaluated),
        "unlabelled_rows": int(counts["unlabelled"]),
        "labelled_not_classified": int(counts["labelled_not_classified"]),
        # Accuracy is over the classified rows; a labelled row rejected as not a digit is counted here.
        "rejected_not_digit": int(counts["labelled_not_digit"]),
        "rejected_share": counts["labelled_not_digit"] / labelled_rows if labelled_rows else None,
        "unmatched_labels": unmatched,
        "per_class": per_class,
        "confusion": confusion,
        "most_confused": [{"true": t, "predicted": p, "count": n} for n, t, p in confused[:10]],
        "ece": ece,
        "calibration_bins": bins,
    }
    if len(summary["checkpoints"]) == 1:  # its figures are the whole figures
        summary["checkpoints"][0] |= {"accuracy": summary["labels"]["accuracy"], "evaluated": evaluated}
    return summary


def risk_coverage_row(threshold: float, classified: int, kept: int, evaluated: int, correct: int) -> dict:
    """The classified rows at confidence >= threshold: their share, and their accuracy where labelled."""
    accuracy = correct / evaluated if evaluated else None
    return {"threshold": threshold, "kept": int(kept), "coverage": kept / classified if classified else None,
            "evaluated": int(evaluated), "accuracy": accuracy, "error": None if accuracy is None else 1 - accuracy}


REVIEW_ORDER = ("not_digit", "low_confidence", "misclassified", "blank", "failed")


def review_rows(frame: pl.LazyFrame, threshold: float, labelled: bool) -> pl.LazyFrame:
    """What a person should look at, in REVIEW_ORDER: rows rejected as not a digit (highest digit
    score first: the likeliest digits among them), low confidence (least confident first), then
    misclassified, blank and failed rows by path.
    `label` is left empty for the person to fill in (train --extra reads path,label back);
    a label that was given is kept beside it as `given_label`."""
    reason = (pl.when(pl.col("status") == records.NOT_DIGIT).then(pl.lit("not_digit"))
              .when(pl.col("status") == records.BLANK).then(pl.lit("blank"))
              .when(pl.col("status") != records.OK).then(pl.lit("failed"))
              .when(MISCLASSIFIED).then(pl.lit("misclassified"))
              .when(unsure(threshold)).then(pl.lit("low_confidence")))
    within_reason = (pl.when(pl.col("review_reason") == "not_digit").then(-pl.col("digit_score"))
                     .when(pl.col("review_reason") == "low_confidence").then(pl.col("confidence")))
    given = [pl.col("label").alias("given_label")] if labelled else []
    return (frame.with_columns(review_reason=reason).filter(pl.col("review_reason").is_not_null())
            .sort(pl.col("review_reason").cast(pl.Enum(REVIEW_ORDER)), within_reason, "path", nulls_last=True)
            .select("path", pl.lit(None, pl.Int8).alias("label"), "review_reason", *given,
                    pl.exclude("path", "label", "review_reason")))


def check_outputs(opts: ReportOptions, files: list[str]) -> None:
    """No output may replace one of report's own inputs or another output, and the review file
    needs a known format."""
    inputs = {os.path.realpath(f): f for f in files}
    if opts.labels:
        inputs[os.path.realpath(opts.labels)] = str(opts.labels)
    outputs = {}
    for option, out in (("--review", opts.review), ("--json-out", opts.json_out), ("--html", opts.html)):
        if out is None:
            continue
        real = os.path.realpath(out)
        if real in inputs:
            raise UserError(f"{option} {shown(out)} is one of report's input files: write the output elsewhere", USAGE)
        if real in outputs:
            raise UserError(f"{outputs[real]} and {option} {shown(out)} name one file: one would replace the other; "
                            "give each output its own name", USAGE)
        outputs[real] = f"{option} {shown(out)}"
    if opts.review and opts.review.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"cannot tell the format of --review {shown(opts.review)}: name it .csv or .parquet", USAGE)


def report(opts: ReportOptions) -> dict:
    if not 0.0 <= opts.review_threshold <= 1.0:
        raise UserError("--review-threshold is a probability between 0 and 1", USAGE)
    if opts.min_accuracy is not None and not 0.0 <= opts.min_accuracy <= 1.0:
        raise UserError("--min-accuracy is a fraction between 0 and 1, e.g. 0.98", USAGE)
    if opts.gallery < 0:
        raise UserError(f"--gallery {opts.gallery}: give 0 (no gallery) or more inputs to show", USAGE)
    if opts.labels_root is not None and opts.labels is None:
        raise UserError("--labels-root goes with --labels FILE: it is where that file's relative paths start", USAGE)
    if opts.labels_root is not None and not Path(opts.labels_root).is_dir():
        raise UserError(f"--labels-root {opts.labels_root}: no such folder", USAGE)
    files = expand(opts.inputs)
    check_outputs(opts, files)
    if len(files) == 2:  # e.g. base.parquet tuned.parquet (many files are incremental runs)
        same_inputs_other_checkpoints(files)
    frame, source, unmatched = attach_labels(scan_results(files), opts)
    if opts.min_accuracy is not None and source is None:
        raise UserError("--min-accuracy needs labels: --labels FILE, --labels-from-dirs or a label column", USAGE)
    summary = {"files": files} | summarise(frame, source, unmatched, opts.review_threshold)
    if opts.min_accuracy is not None and not summary["labels"]["evaluated"]:
        raise UserError(f"--min-accuracy: no label matched a classified row ({unmatched:,} labels matched no row), "
                        "so there is no accuracy to check", USAGE)
    if len(summary["checkpoints"]) > 1:
        log(f"warning: the rows come from {len(summary['checkpoints'])} checkpoints; "
            "the accuracy mixes them (see the accuracy per checkpoint)")

    if opts.review:
        rows = review_rows(frame, opts.review_threshold, source is not None)
        if opts.review.suffix.lower() == ".parquet":
            write_atomic(opts.review, rows.sink_parquet)
        else:  # opened in a spreadsheet: no cell may be a live formula
            write_atomic(opts.review, labels.spreadsheet_safe(rows).sink_csv)
    if opts.json_out:
        write_text_atomic(opts.json_out, json.dumps(summary, indent=2) + "\n")
    if opts.html:
        from mnist_batch import report_html

        failed = frame.filter(FAILED).select("path", "status", "error").sort("path").head(FAILED_SHOWN)
        blank = frame.filter(pl.col("status") == records.BLANK).select("path").sort("path").head(FAILED_SHOWN)
        flagged = frame.filter((pl.col("status") == records.OK) & (
            MISCLASSIFIED | unsure(opts.review_threshold))).select(pl.len())
        gallery, rejected, failed, blank, flagged = pl.collect_all([
            gallery_rows(frame, opts.gallery), rejected_rows(frame, opts.gallery), failed, blank, flagged])
        page = report_html.render(summary, gallery, rejected, failed, blank, flagged.item(), HISTOGRAM_BINS,
                                  CALIBRATION_BINS, Path(opts.html).parent, labels_file=opts.labels)
        write_text_atomic(opts.html, page)
    return summary


def gallery_rows(frame: pl.LazyFrame, count: int) -> pl.LazyFrame:
    """Misclassified inputs first, then the least confident: what the HTML gallery shows."""
    return (frame.filter(pl.col("status") == "ok").with_columns(_right=(~MISCLASSIFIED).cast(pl.Int8))
            .bottom_k(count, by=["_right", "confidence"]).sort("_right", "confidence").drop("_right"))


def rejected_rows(frame: pl.LazyFrame, count: int) -> pl.LazyFrame:
    """Rows rejected as not a digit, the highest digit score first (the likeliest digits among
    them): what the HTML's rejected gallery shows."""
    return (frame.filter(pl.col("status") == records.NOT_DIGIT)
            .sort("digit_score", "path", descending=[True, False], nulls_last=True).head(count))
