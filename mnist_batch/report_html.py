"""The report as one self-contained HTML page: header, tables, plots and a gallery, images inline."""

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import polars as pl
from PIL import Image, ImageOps

from mnist_batch import __version__, plots, reading, records

THUMBNAIL = 96
PROB_COLUMNS = [f"prob_{digit}" for digit in range(10)]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em; margin: 0.5em 0; }
header dt { color: #666; } header dd { margin: 0; overflow-wrap: anywhere; }
.warning { background: #fff4e0; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
td, th { padding: 0.2em 0.7em; text-align: right; } td.text, th.text { text-align: left; overflow-wrap: anywhere; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
.row { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures figure { margin: 0; max-width: 32em; } .figures img { max-width: 32em; width: 100%; border: 1px solid #eee; }
.figures figure.natural, .figures figure.natural img { max-width: 100%; width: auto; }
figcaption { font-size: 0.85em; color: #555; max-width: 40em; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { width: 13.5em; font-size: 0.8em; border: 1px solid #ddd; padding: 0.4em; border-radius: 4px; }
.card .pair { display: flex; gap: 0.3em; align-items: flex-end; }
.card .pair div { text-align: center; color: #777; font-size: 0.85em; }
.card img { width: 84px; height: 84px; object-fit: contain; background: #eee; display: block; }
.card img.digit { image-rendering: pixelated; background: #000; }
.card .path { display: block; color: #555; overflow-wrap: anywhere; word-break: normal; }
.card a { color: inherit; text-decoration: none; } .card a.path:hover { text-decoration: underline; }
.wrong { border-color: #c33; background: #fff6f6; } .missing { color: #999; width: 84px; height: 84px; }
.more { color: #555; font-style: italic; }
table.paths { min-width: 24em; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return data_uri(buffer.getvalue())


def input_images(path: str) -> tuple[str | None, str | None]:
    """The source image shrunk, and the 28x28 image the model saw (the same guarded read and
    preprocessing as classify); None for either when the file cannot be read or decoded any more."""
    try:
        data, _ = reading.read_file(path)
    except reading.ImageProblem:
        return None, None
    try:  # the report must not fail because a source file changed since
        with Image.open(io.BytesIO(data)) as image:
            source = ImageOps.exif_transpose(image)
            source.thumbnail((THUMBNAIL, THUMBNAIL))
            thumbnail = png_uri(source.convert("RGB"))
    except Exception:
        thumbnail = None
    digit = records.load(data).digit
    return thumbnail, png_uri(Image.fromarray(digit)) if digit is not None else None


def table(caption: str, header: list[str], rows: list[list], text_columns: tuple[int, ...] = ()) -> str:
    head = "".join(f'<th{" class=text" if i in text_columns else ""}>{html.escape(str(h))}</th>'
                   for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=text" if i in text_columns else ""}>{html.escape(str(c))}</td>'
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def breakable(path: str) -> str:
    """A path that wraps after its slashes, never inside a name."""
    return "/<wbr>".join(html.escape(part) for part in path.split("/"))


def top_two(row: dict) -> list[tuple[int, float]]:
    probs = np.array([row[column] or 0.0 for column in PROB_COLUMNS])
    return [(int(d), float(probs[d])) for d in np.argsort(-probs, kind="stable")[:2]]


def file_link(path: str, page_dir: Path) -> str:
    """The input file's URL relative to the page, percent-encoded (a name may hold # ? : % or
    bytes that are not UTF-8) and escaped for an attribute: the page and the inputs move together."""
    target = os.path.relpath(os.path.abspath(path), os.path.abspath(page_dir))
    return html.escape(quote(os.fsencode(target)), quote=True)


def card(row: dict, description: str, wrong: bool, page_dir: Path, no_digit: str = "not readable") -> str:
    """One input: its source image (a link to the file), the 28x28 image the model saw (or
    `no_digit` where there is none), a description and the path (a link too)."""
    source, digit = input_images(row["path"])
    link = file_link(row["path"], page_dir)
    pictures = "".join(
        f'<div>{f"<img {cls} src={uri!r} alt={alt!r}>" if uri else f"<div class=missing>{missing}</div>"}'
        f"{caption}</div>"
        for uri, cls, alt, caption, missing in ((source, "", "source image", "source", "not readable"),
                                                (digit, 'class="digit"', "28x28 model input", "model input",
                                                 no_digit)))
    return (f'<div class="card{" wrong" if wrong else ""}"><a class="pair" href="{link}">{pictures}</a>'
            f'{description}<a class="path" href="{link}">{breakable(row["path"])}</a></div>')


def truth(label) -> str:
    return f"<br>true label <b>{label}</b>" if label is not None else ""


def gallery(rows: pl.DataFrame, flagged: int, labelled: bool, page_dir: Path) -> str:
    cards = []
    for row in rows.iter_rows(named=True):
        label = row.get("label")
        (first, p1), (second, p2) = top_two(row)
        cards.append(card(row, f"predicted <b>{first}</b> ({p1:.1%}), next {second} ({p2:.1%}){truth(label)}",
                          wrong=label is not None and label != row["pred"], page_dir=page_dir))
    if not cards:
        return "<p>Nothing to show.</p>"
    more = flagged - len(cards)
    tail = (f'<p class="more">{more:,} more below the review threshold{" or misclassified" if labelled else ""}'
            " are not shown (raise --gallery, or write them all with --review).</p>") if more > 0 else ""
    return f'<div class="gallery">{"".join(cards)}</div>{tail}'


def rejected_gallery(rows: pl.DataFrame, summary: dict, page_dir: Path) -> str:
    """The rows rejected as not a digit; one with a digit label is a real digit rejected, marked as an error."""
    total = summary["status"]["not_digit"]
    if not total:
        return ("<p>No input was rejected as not a digit.</p>" if summary["min_digit_score"] else
                "<p>These results record no digit check (they were written before result schema version 2).</p>")
    cards = []
    for row in rows.iter_rows(named=True):
        score = row["digit_score"]
        minimum = row["min_digit_score"]
        description = (f"digit score <b>{score:.3f}</b>" if score is not None else "no digit score") + (
            f", below {minimum:g}" if minimum is not None else "")
        cards.append(card(row, description + truth(row.get("label")), wrong=row.get("label") is not None,
                          page_dir=page_dir, no_digit="no digit: printed lines only"))
    more = total - len(cards)
    tail = (f'<p class="more">{more:,} more are not shown (raise --gallery, or write them all with --review).</p>'
            if more > 0 else "")
    return f'<div class="gallery">{"".join(cards)}</div>{tail}'


def risk_coverage_table(rows: list[dict], labelled: bool) -> str:
    header = ["confidence >=", "kept", "share kept", *(["labelled", "accuracy", "error"] if labelled else [])]
    body = []
    for r in rows:
        figures = [f"{r['threshold']:g}", f"{r['kept']:,}", f"{r['coverage']:.2%}"]
        if labelled:
            figures += [f"{r['evaluated']:,}", *((f"{r['accuracy']:.2%}", f"{r['error']:.2%}") if r["evaluated"]
                                                 else ("", ""))]
        body.append(figures)
    return table("Kept per confidence threshold", header, body)


def header(summary: dict, labels_file) -> str:
    checkpoints = "<br>".join(
        f"{html.escape(c['name'] or 'unknown')} (sha256 {html.escape((c['sha256'] or 'unknown')[:12])}): "
        f"{c['rows']:,} rows" + (f", accuracy {c['accuracy']:.2%} on {c['evaluated']:,} labelled"
                                 if c["accuracy"] is not None and len(summary["checkpoints"]) > 1 else "")
        for c in summary["checkpoints"])
    files = "<br>".join(html.escape(f) for f in summary["files"])
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items = [("checkpoint" + ("s" if len(summary["checkpoints"]) > 1 else ""), checkpoints or "none"),
             ("result files", files)]
    if labels_file:
        items.append(("labels", html.escape(str(labels_file))))
    items.append(("made", f"{made} by mnist-batch {html.escape(__version__)}"))
    warning = ('<p class="warning">These rows come from several checkpoints: the figures below mix them; '
               "the accuracy of each is given above.</p>") if len(summary["checkpoints"]) > 1 else ""
    return ("<header><h1>mnist-batch report</h1><dl>"
            + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + f"</dl>{warning}</header>")


def failed_table(failed: pl.DataFrame, total: int) -> str:
    if not total:
        return "<p>Every input was classified, blank or rejected as not a digit.</p>"
    shown = table(f"Failed inputs: {failed.height:,} of {total:,}, by path", ["path", "status", "error"],
                  [list(row) for row in failed.iter_rows()], text_columns=(0, 2))
    more = total - failed.height
    return shown + (f'<p class="more">and {more:,} more: write them all with --review FILE.</p>' if more else "")


def row(*tables: str) -> str:
    """Tables side by side while the page is wide enough, one under the other when not."""
    return f'<div class="row">{"".join(tables)}</div>'


def figure(png: bytes, alt: str, caption: str, natural: bool = False) -> str:
    """A plot; a `natural` one is shown at its own pixel size (as wide as the page allows), so that
    the numbers inside stay readable."""
    css = ' class="natural"' if natural else ""
    return f'<figure{css}><img src="{data_uri(png)}" alt="{alt}"><figcaption>{caption}</figcaption></figure>'


def blank_table(blank: pl.DataFrame, total: int, page_dir: Path) -> str:
    """The blank inputs by path, each a link to its file: a page that should have held a digit shows."""
    if not total:
        return "<p>No input was blank.</p>"
    rows = "".join(f'<tr><td class=text><a href="{file_link(path, page_dir)}">{breakable(path)}</a></td></tr>'
                   for path in blank["path"])
    more = total - blank.height
    return (f'<table class="paths"><caption>Blank inputs (no ink): {blank.height:,} of {total:,}, by path</caption>'
            f"<tr><th class=text>path</th></tr>{rows}</table>"
            + (f'<p class="more">and {more:,} more: write them all with --review FILE.</p>' if more else ""))


def render(summary: dict, gallery_rows: pl.DataFrame, rejected_rows: pl.DataFrame, failed: pl.DataFrame,
           blank: pl.DataFrame, flagged: int, histogram_bins: int, calibration_bins: int, page_dir: Path,
           labels_file=None) -> str:
    status = summary["status"]
    labels = summary["labels"]
    labelled = bool(labels and labels["evaluated"])
    parts = [
        header(summary, labels_file),
        "<h2>Inputs</h2>",
        table(f"{summary['rows']:,} inputs by status", ["ok", "blank", "not_digit", "failed", *status["errors"]],
              [[status["ok"], status["blank"], status["not_digit"], status["failed"], *status["errors"].values()]]),
        "<h2>Predictions</h2>",
        row(table("Classified inputs by predicted digit", [str(d) for d in range(10)],
                  [[summary["predicted"][str(d)] for d in range(10)]]),
            table("Confidence of the predictions (probability of the predicted digit)", list(summary["confidence"]),
                  [[f"{v:.4f}" if v is not None else "" for v in summary["confidence"].values()]])),
        f"<p>{summary['below_threshold']:,} classified inputs below the review threshold "
        f"{summary['review_threshold']}.</p>",
    ]
    histogram = figure(plots.confidence_histogram(summary["confidence_histogram"], histogram_bins),
                       "confidence histogram",
                       "Inputs per confidence bin" + (", correct and wrong on separate axes." if labelled else "."))
    figures = [histogram]
    if labelled:
        low, high = labels["accuracy_ci95"]
        parts += [
            "<h2>Accuracy</h2>",
            f"<p><b>{labels['accuracy']:.2%}</b> (95% CI {low:.2%} to {high:.2%}) on {labels['evaluated']:,} "
            f"labelled inputs (labels from {labels['source']}); expected calibration error "
            f"{labels['ece']:.4f} over {calibration_bins} bins. {labels['unlabelled_rows']:,} rows without label; "
            f"{labels['unmatched_labels']:,} labels matching no row; {labels['labelled_not_classified']:,} "
            "labelled inputs not classified (blank or failed)." +
            (f" <b>{labels['rejected_not_digit']:,}</b> labelled inputs ({labels['rejected_share']:.2%}) rejected "
             "as not a digit: not counted in the accuracy." if labels["rejected_not_digit"] else "") + "</p>",
            row(table("Per digit (support: labelled inputs)", ["digit", "precision", "recall", "F1", "support"],
                      [[d, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
                       for d, r in labels["per_class"].items()]),
                table("Most confused pairs", ["true", "predicted", "count"],
                      [[p["true"], p["predicted"], p["count"]] for p in labels["most_confused"]])),
        ]
        figures = [
            figure(plots.confusion_heatmap(labels["confusion"]), "confusion matrix",
                   "Confusion matrix: rows are the true digit. Errors have a red scale of their own, "
                   "so that the few off the diagonal stand out.", natural=True),
            histogram,
            figure(plots.reliability_diagram(labels["calibration_bins"], labels["ece"]), "reliability diagram",
                   "Reliability: accuracy against confidence per bin, the gap hatched red; below, rows per bin."),
        ]
    if status["ok"]:
        parts += ["<h2>Confidence thresholds</h2>",
                  "<p>The classified inputs each confidence threshold keeps" +
                  (" and how many of the labelled ones are right" if labelled else "") +
                  ": the rest would go to a person (report --review-threshold).</p>",
                  risk_coverage_table(summary["risk_coverage"], labelled)]
        figures.append(figure(plots.risk_coverage(summary["risk_coverage"], labelled), "risk-coverage plot",
                              "Risk and coverage: error against the share kept, per confidence threshold."
                              if labelled else "Coverage: the share of classified inputs kept per threshold."))
    parts.append('<h2>Plots</h2><div class="figures">' + "".join(figures) + "</div>")
    parts.append("<h2>Failed inputs</h2>")
    parts.append(failed_table(failed, status["failed"]))
    parts.append("<h2>Blank inputs</h2>")
    parts.append(blank_table(blank, status["blank"], page_dir))
    parts.append("<h2>Rejected as not a digit</h2>")
    parts.append(f"<p>{status['not_digit']:,} inputs were read but do not look like one handwritten digit "
                 "(an empty form field, a letter, a tick, two digits): they get no digit. The highest digit "
                 "scores first: those are the likeliest real digits. Each shows the source image and the "
                 "28x28 image the model saw.</p>" if status["not_digit"] else "")
    parts.append(rejected_gallery(rejected_rows, summary, page_dir))
    parts.append("<h2>Inputs to look at</h2>")
    parts.append("<p>" + ("Misclassified first, then the least confident. " if labelled else
                          "The least confident predictions. ") +
                 "Each shows the source image, the 28x28 image the model saw, and its two likeliest digits.</p>")
    parts.append(gallery(gallery_rows, flagged, labelled, page_dir))
    return page("mnist-batch report", parts)


def page(title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def outcome(row: dict, side: str) -> str:
    if row[f"status_{side}"] != records.OK:
        return row[f"status_{side}"]
    return f"{row[f'pred_{side}']} ({row[f'confidence_{side}']:.1%})"


def render_compare(summary: dict, rows: pl.DataFrame, page_dir: Path, labels_file=None) -> str:
    """Two runs side by side: each one's accuracy, the inputs where they disagree (a table, then
    a gallery of them with the images), and which one was right on those."""
    runs, inputs, split = summary["runs"], summary["inputs"], summary["disagreements"]
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items = [(f"{side.upper()}", "<br>".join(html.escape(f) for f in run["files"]) + "<br>checkpoint " + ", ".join(
        f"{html.escape(c['name'] or 'unknown')} (sha256 {html.escape((c['sha256'] or 'unknown')[:12])})"
        for c in run["checkpoints"])) for side, run in runs.items()]
    if labels_file:
        items.append(("labels", html.escape(str(labels_file))))
    items.append(("made", f"{made} by mnist-batch {html.escape(__version__)}"))
    parts = ["<header><h1>mnist-batch: two runs compared</h1><dl>"
             + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
             + ('<p class="warning">Both runs used the same checkpoint.</p>' if summary["same_checkpoint"] else "")
             + "</header>",
             "<h2>Inputs</h2>",
             table("Inputs in each result file", ["in both", "only in A", "only in B"],
                   [[f"{inputs['both']:,}", f"{inputs['only_a']:,}", f"{inputs['only_b']:,}"]])]
    if summary["labels"] is not None:
        accuracy = []
        for side, run in runs.items():
            low, high = run["accuracy_ci95"] or (None, None)
            accuracy.append([side.upper(), f"{run['evaluated']:,}",
                             "" if run["accuracy"] is None else f"{run['accuracy']:.2%}",
                             "" if low is None else f"{low:.2%} to {high:.2%}", f"{run['labelled_not_classified']:,}"])
        parts += ["<h2>Accuracy</h2>",
                  table("Accuracy on the labelled inputs in both files",
                        ["run", "labelled and classified", "accuracy", "95% CI", "labelled, not classified"],
                        accuracy)]
    verdict = ""
    if split["mcnemar_p"] is not None:
        verdict = (f" McNemar's exact test: p = {split['mcnemar_p']:.3g}, " +
                   ("a real difference." if split["mcnemar_p"] < 0.05 else "the difference could be chance."))
    parts += ["<h2>Disagreements</h2>",
              f"<p><b>{split['count']:,}</b> inputs in both files where A and B disagree (a different digit, or one "
              "classified and the other not)." + (
                  f" Of the {split['labelled']:,} labelled: A right on <b>{split['a_right']:,}</b>, B right on "
                  f"<b>{split['b_right']:,}</b>, neither on {split['neither_right']:,}.{verdict}"
                  if summary["labels"] is not None else "") + "</p>"]
    listed = summary["disagreement_rows"]
    if listed:
        parts.append(table(f"Disagreements: {len(listed):,} of {split['count']:,}, labelled first",
                           ["path", "label", "A", "B", "right"],
                           [[r["path"], "" if r["label"] is None else r["label"], outcome(r, "a"), outcome(r, "b"),
                             (r["right"] or "").upper()] for r in listed], text_columns=(0,)))
    cards = [card(row, f"A: <b>{html.escape(outcome(row, 'a'))}</b>, B: <b>{html.escape(outcome(row, 'b'))}</b>"
                  + truth(row["label"]) + (f"<br>right: {row['right'].upper()}" if row["right"] else ""),
                  wrong=row["right"] == "neither", page_dir=page_dir)
             for row in rows.iter_rows(named=True)]
    if cards:
        more = split["count"] - len(cards)
        parts += ["<h2>Gallery of disagreements</h2>", f'<div class="gallery">{"".join(cards)}</div>'
                  + (f'<p class="more">{more:,} more are not shown (raise --gallery).</p>' if more > 0 else "")]
    return page("mnist-batch: two runs compared", parts)
