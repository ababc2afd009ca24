"""The report as one self-contained HTML page: tables, plots and a gallery, images inline."""

import base64
import html
import io

import polars as pl
from PIL import Image, ImageOps

from mnist_batch import images, plots

THUMBNAIL = 96

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.2em 0.7em; text-align: right; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
.figures img { max-width: 32em; margin: 0.5em; border: 1px solid #eee; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { width: 9em; font-size: 0.8em; border: 1px solid #ddd; padding: 0.4em; word-break: break-all; }
.card img { width: 96px; height: 96px; object-fit: contain; background: #eee; display: block; }
.wrong { border-color: #c33; } .missing { color: #999; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def thumbnail(path: str) -> str | None:
    """The source image, shrunk; None when it cannot be read any more."""
    try:
        data, _ = images.read_file(path)  # guarded: the path may have become a FIFO or a link to /dev/zero
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "PNG")
            return data_uri(buffer.getvalue())
    except Exception:  # the report must not fail because a source file moved on
        return None


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def gallery(rows: pl.DataFrame) -> str:
    cards = []
    for row in rows.iter_rows(named=True):
        label = row.get("label")
        wrong = label is not None and label != row["pred"]
        src = thumbnail(row["path"])
        image = f'<img src="{src}" alt="input">' if src else '<div class="missing">image not readable</div>'
        truth = f", true {label}" if label is not None else ""
        cards.append(f'<div class="card{" wrong" if wrong else ""}">{image}'
                     f"<b>predicted {row['pred']}{truth}</b><br>confidence {row['confidence']:.3f}"
                     f"<br>{html.escape(row['path'])}</div>")
    return f'<div class="gallery">{"".join(cards)}</div>' if cards else "<p>nothing to show</p>"


def render(summary: dict, gallery_rows: pl.DataFrame, histogram_bins: int, calibration_bins: int) -> str:
    status = summary["status"]
    parts = [
        f"<h1>mnist-batch report</h1><p>{summary['rows']:,} inputs from "
        f"{html.escape(', '.join(summary['files']))}</p>",
        "<h2>Inputs</h2>",
        table(["ok", "blank", "failed", *status["errors"]],
              [[status["ok"], status["blank"], status["failed"], *status["errors"].values()]]),
        "<h2>Predictions</h2>",
        table([str(d) for d in range(10)], [[summary["predicted"][str(d)] for d in range(10)]]),
        table(list(summary["confidence"]),
              [[f"{v:.4f}" if v is not None else "" for v in summary["confidence"].values()]]),
        f"<p>{summary['below_threshold']:,} classified inputs below the review threshold "
        f"{summary['review_threshold']}.</p>",
    ]
    figures = [plots.confidence_histogram(summary["confidence_histogram"], histogram_bins)]
    labels = summary["labels"]
    if labels and labels["evaluated"]:
        low, high = labels["accuracy_ci95"]
        parts += [
            "<h2>Accuracy</h2>",
            f"<p><b>{labels['accuracy']:.2%}</b> (95% CI {low:.2%} to {high:.2%}) on {labels['evaluated']:,} "
            f"labelled inputs (labels from {labels['source']}); expected calibration error "
            f"{labels['ece']:.4f} over {calibration_bins} bins. {labels['unlabelled_rows']:,} rows without label; "
            f"{labels['unmatched_labels']:,} labels matching no row; {labels['labelled_not_classified']:,} "
            "labelled inputs not classified.</p>",
            table(["digit", "precision", "recall", "F1", "support"],
                  [[d, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
                   for d, r in labels["per_class"].items()]),
            table(["true", "predicted", "count"],
                  [[p["true"], p["predicted"], p["count"]] for p in labels["most_confused"]]),
        ]
        figures = [plots.confusion_heatmap(labels["confusion"]), figures[0],
                   plots.reliability_diagram(labels["calibration_bins"], labels["ece"])]
    parts.append('<h2>Plots</h2><div class="figures">' +
                 "".join(f'<img src="{data_uri(png)}" alt="plot">' for png in figures) + "</div>")
    parts.append("<h2>Inputs to look at</h2><p>Misclassified first, then the least confident.</p>")
    parts.append(gallery(gallery_rows))
    body = "\n".join(parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mnist-batch report</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
