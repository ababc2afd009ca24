"""Summaries of result files, against labels when there are any.

    result file(s) -> polars lazy scan -> join labels -> aggregates -> renderers

Every figure comes from small group-bys (by status, by predicted/true digit, by
confidence bin), collected in one streaming pass, so ten million rows fit in bounded memory.
"""

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mnist_batch import images, results
from mnist_batch.errors import USAGE, UserError
from mnist_batch.files import write_atomic, write_text_atomic

REPORT_SHAPE = "mnist-batch-report/1"  # bump when the JSON shape changes
CALIBRATION_BINS = 15
HISTOGRAM_BINS = 20
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95}
MISCLASSIFIED = pl.col("label").is_not_null() & (pl.col("pred") != pl.col("label"))


@dataclass(frozen=True)
class ReportOptions:
    inputs: tuple[str, ...]
    labels: Path | None = None
    labels_root: Path | None = None
    labels_from_dirs: bool = False
    review_threshold: float = 0.9
    json_out: str | None = None  # a file, or "-" for stdout
    html: Path | None = None
    review: Path | None = None
    min_accuracy: float | None = None
    gallery: int = 24


def expand(inputs: tuple[str, ...]) -> list[str]:
    """Files and globs -> sorted existing files; a pattern that matches nothing is an error."""
    files = []
    for item in inputs:
        if os.path.isdir(item):  # a directory of Parquet parts, as the Ray engine writes
            item = os.path.join(item, "*.parquet")
        matched = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        matched = [m for m in matched if not os.path.basename(m).startswith(".")]
        if not matched or not all(os.path.isfile(m) for m in matched):
            raise UserError(f"result file {item} not found; give .parquet or .csv files written by classify", USAGE)
        files.extend(matched)
    if not files:
        raise UserError("no result files given", USAGE)
    return sorted(set(files))


def scan_results(files: list[str]) -> pl.LazyFrame:
    frames = []
    for file in files:
        frame = results.scan(file)
        missing = [c for c in ("path", "status", "pred", "confidence") if c not in frame.collect_schema()]
        if missing:
            raise UserError(f"{file} is not an mnist-batch result file (no column {missing[0]!r})")
        frames.append(frame)
    combined = pl.concat(frames, how="diagonal_relaxed")
    if len(files) > 1:
        # The same input in several files (incremental runs): the newest version of the file wins.
        combined = combined.sort("file_mtime_ns", nulls_last=False, maintain_order=True).unique(
            "path", keep="last", maintain_order=False)
    return combined


def read_labels(path: Path, root: Path | None) -> pl.LazyFrame:
    """path,label pairs from CSV or Parquet; paths taken as written, or relative to root."""
    if not path.is_file():
        raise UserError(f"labels file {path} not found", USAGE)
    try:
        frame = pl.scan_csv(path, infer_schema=False) if path.suffix.lower() == ".csv" else pl.scan_parquet(path)
        columns = frame.collect_schema().names()
    except Exception as error:
        raise UserError(f"cannot read labels file {path}: {error}") from error
    for needed in ("path", "label"):
        if needed not in columns:
            raise UserError(f"labels file {path} has no {needed!r} column (it needs path,label)", USAGE)
    frame = frame.select(pl.col("path").cast(pl.String), pl.col("label").cast(pl.String).str.strip_chars())
    bad = frame.filter(~pl.col("label").is_in([str(d) for d in range(10)])).head(1).collect()
    if bad.height:
        raise UserError(f"labels file {path}: label {bad['label'][0]!r} for {bad['path'][0]} is not a digit 0-9")
    if root is not None:
        frame = frame.with_columns(path=pl.lit(str(root).rstrip("/") + "/") + pl.col("path"))
    return frame.with_columns(path=normalized("path"), label=pl.col("label").cast(pl.Int8))


def normalized(column: str) -> pl.Expr:
    return pl.col(column).str.strip_prefix("./")


def attach_labels(frame: pl.LazyFrame, opts: ReportOptions) -> tuple[pl.LazyFrame, str | None, int]:
    """Adds an Int8 'label' column (null where unknown); returns (frame, source, unmatched labels)."""
    if opts.labels and opts.labels_from_dirs:
        raise UserError("--labels and --labels-from-dirs are two label sources: pick one", USAGE)
    if opts.labels:
        labels = read_labels(opts.labels, opts.labels_root)
        keyed = frame.with_columns(_key=normalized("path"))
        unmatched = labels.join(keyed.select(path="_key"), on="path", how="anti").select(pl.len()).collect().item()
        joined = keyed.drop("label", strict=False).join(
            labels.rename({"path": "_key"}), on="_key", how="left").drop("_key")
        return joined, "file", unmatched
    if opts.labels_from_dirs:
        folder = pl.col("path").str.extract(r"(?:^|/)([0-9])/[^/]+$")
        return frame.with_columns(label=folder.cast(pl.Int8)), "dirs", 0
    if "label" in frame.collect_schema():
        label = pl.col("label").cast(pl.Int8, strict=False)
        bad = frame.filter(pl.col("label").is_not_null() & (label.is_null() | ~label.is_between(0, 9)))
        if bad.select(pl.len()).collect().item():
            raise UserError("the results' label column holds values that are not digits 0-9")
        return frame.with_columns(label=label), "column", 0
    return frame.with_columns(label=pl.lit(None, pl.Int8)), None, 0


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> list[float]:
    """95% confidence interval of a proportion; sound near 0% and 100%, unlike the normal one."""
    if total == 0:
        return [0.0, 0.0]
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def summarise(frame: pl.LazyFrame, source: str | None, unmatched: int, threshold: float) -> dict:
    ok = pl.col("status") == "ok"
    classified = frame.filter(ok)
    labelled = classified.filter(pl.col("label").is_not_null())
    queries = [
        frame.group_by("status").agg(n=pl.len()),
        classified.group_by("pred").agg(n=pl.len()),
        classified.select(
            mean=pl.col("confidence").mean(),
            low=(pl.col("confidence") < threshold).sum(),
            min=pl.col("confidence").min(),
            max=pl.col("confidence").max(),
            **{name: pl.col("confidence").quantile(q, "linear") for name, q in QUANTILES.items()},
        ),
        frame.select(unlabelled=pl.col("label").is_null().sum(),
                     labelled_not_classified=(pl.col("label").is_not_null() & ~ok).sum()),
        labelled.group_by("label", "pred").agg(n=pl.len()),
        labelled.with_columns(
            bin=(pl.col("confidence") * CALIBRATION_BINS).floor().clip(0, CALIBRATION_BINS - 1).cast(pl.Int32)
        ).group_by("bin").agg(n=pl.len(), confidence=pl.col("confidence").mean(),
                              accuracy=(pl.col("pred") == pl.col("label")).mean()),
        classified.with_columns(
            bin=(pl.col("confidence") * HISTOGRAM_BINS).floor().clip(0, HISTOGRAM_BINS - 1).cast(pl.Int32),
            correct=pl.when(pl.col("label").is_null()).then(None).otherwise(pl.col("pred") == pl.col("label")),
        ).group_by("bin", "correct").agg(n=pl.len()),
    ]
    by_status, by_pred, confidence, label_counts, pairs, calibration, histogram = pl.collect_all(
        queries, engine="streaming")

    statuses = dict(zip(by_status["status"], by_status["n"], strict=True))
    rows = sum(statuses.values())
    errors = {k: v for k, v in sorted(statuses.items()) if images.is_failed(k)}
    conf = confidence.row(0, named=True)
    summary = {
        "shape": REPORT_SHAPE,
        "rows": rows,
        "status": {"ok": statuses.get("ok", 0), "blank": statuses.get("blank", 0),
                   "failed": sum(errors.values()), "errors": errors},
        "predicted": {str(d): int(dict(zip(by_pred["pred"], by_pred["n"], strict=True)).get(d, 0)) for d in range(10)},
        "confidence": {k: conf[k] for k in ("min", *QUANTILES, "max", "mean")},
        "review_threshold": threshold,
        "below_threshold": int(conf["low"] or 0),
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
    summary["labels"] = {
        "source": source,
        "evaluated": evaluated,
        "correct": correct,
        "accuracy": correct / evaluated if evaluated else None,
        "accuracy_ci95": wilson_interval(correct, evaluated),
        "unlabelled_rows": int(counts["unlabelled"]),
        "labelled_not_classified": int(counts["labelled_not_classified"]),
        "unmatched_labels": unmatched,
        "per_class": per_class,
        "confusion": confusion,
        "most_confused": [{"true": t, "predicted": p, "count": n} for n, t, p in confused[:10]],
        "ece": ece,
        "calibration_bins": bins,
    }
    return summary


def review_rows(frame: pl.LazyFrame, threshold: float) -> pl.LazyFrame:
    """What a person should look at: failures, blank pages, low confidence, and misclassifications."""
    reason = (pl.when(pl.col("status") == images.BLANK).then(pl.lit("blank"))
              .when(pl.col("status") != images.OK).then(pl.lit("failed"))
              .when(MISCLASSIFIED).then(pl.lit("misclassified"))
              .when(pl.col("confidence") < threshold).then(pl.lit("low_confidence")))
    return frame.with_columns(review_reason=reason).filter(pl.col("review_reason").is_not_null())


def report(opts: ReportOptions) -> dict:
    if not 0.0 <= opts.review_threshold <= 1.0:
        raise UserError("--review-threshold is a probability between 0 and 1", USAGE)
    if opts.min_accuracy is not None and not 0.0 <= opts.min_accuracy <= 1.0:
        raise UserError("--min-accuracy is a fraction between 0 and 1, e.g. 0.98", USAGE)
    files = expand(opts.inputs)
    frame, source, unmatched = attach_labels(scan_results(files), opts)
    if opts.min_accuracy is not None and source is None:
        raise UserError("--min-accuracy needs labels: --labels FILE, --labels-from-dirs or a label column", USAGE)
    summary = {"files": files} | summarise(frame, source, unmatched, opts.review_threshold)

    if opts.review:
        fmt = results.output_format(opts.review, None)
        rows = review_rows(frame, opts.review_threshold).sort("path")
        write_atomic(opts.review, rows.sink_parquet if fmt == "parquet" else rows.sink_csv)
    if opts.json_out and opts.json_out != "-":
        write_text_atomic(Path(opts.json_out), json.dumps(summary, indent=2) + "\n")
    if opts.html:
        from mnist_batch import report_html

        page = report_html.render(summary, gallery_rows(frame, opts.gallery).collect(), HISTOGRAM_BINS,
                                  CALIBRATION_BINS)
        write_text_atomic(opts.html, page)
    return summary


def gallery_rows(frame: pl.LazyFrame, count: int) -> pl.LazyFrame:
    """Misclassified inputs first, then the least confident: what the HTML gallery shows."""
    return (frame.filter(pl.col("status") == "ok").with_columns(_right=(~MISCLASSIFIED).cast(pl.Int8))
            .bottom_k(count, by=["_right", "confidence"]).sort("_right", "confidence").drop("_right"))
