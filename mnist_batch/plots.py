"""Matplotlib figures. Imported only by the commands that draw, so --help stays fast."""

import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a window: this runs from cron too
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mnist_batch.files import write_atomic  # noqa: E402

CONFUSION_FONT_PT = 10  # the counts in the cells: 13.9 px at 100 dpi, shown at the figure's own width


def accuracy_note(history: list[dict]) -> str:
    """What accuracy.png shows of the last epoch, from the figures themselves: train is a running
    mean over the epoch (and on jittered images when augmented), so it may sit above or below test."""
    train, test = history[-1]["train_accuracy"], history[-1]["test_accuracy"]
    shown_train, shown_test = round(train * 10_000), round(test * 10_000)  # as printed, to 0.01%
    relation = "above" if shown_train > shown_test else "below" if shown_train < shown_test else "equal to"
    return (f"Last epoch: train accuracy {train:.2%}, {relation} test {test:.2%}. Train is a running mean over "
            "the epoch while the weights still change (on jittered images with --augment); test is measured "
            "after the epoch.")


def training_curves(history: list[dict], out_dir: Path) -> list[Path]:
    """loss.png and accuracy.png, train and test per epoch, on log axes (loss, and error rate
    for accuracy) so that the first epoch does not squash the rest; the learning rate at the
    end of each epoch beside the loss when recorded. Each PNG carries its title and caption as
    text chunks (Title, Description)."""
    epochs = [row["epoch"] for row in history]
    written = []
    for metric, title, ylabel in (("loss", "loss per epoch", "loss (NLL, log scale)"),
                                  ("accuracy", "error rate (1 - accuracy) per epoch", "error rate (log scale)")):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
        value = (lambda v: v) if metric == "loss" else (lambda v: 1 - v)
        ax.plot(epochs, [value(row[f"train_{metric}"]) for row in history], "o-",
                label="train (running mean over the epoch)")
        ax.plot(epochs, [value(row[f"test_{metric}"]) for row in history], "s-", label="test (after the epoch)")
        ax.set_yscale("log")
        if metric == "loss" and all("lr" in row for row in history):
            rate = ax.twinx()
            rate.plot(epochs, [row["lr"] for row in history], ":", color="tab:gray")
            rate.set_ylabel("learning rate at the end of the epoch (dotted)", color="tab:gray")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        caption = accuracy_note(history) if metric == "accuracy" else ""
        if caption:
            fig.text(0.01, 0.01, caption, fontsize=7, wrap=True, color="dimgray")
            fig.tight_layout(rect=(0, 0.07, 1, 1))
        else:
            fig.tight_layout()
        path = Path(out_dir) / f"{metric}.png"
        metadata = {"Title": title, "Description": caption}
        write_atomic(path, lambda file: fig.savefig(file, format="png", metadata=metadata))  # noqa: B023 (called at once)
        plt.close(fig)
        written.append(path)
    return written


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def confusion_heatmap(confusion: list[list[int]]) -> bytes:
    return png_bytes(confusion_figure(confusion))


def confusion_figure(confusion: list[list[int]]):
    """Two colour scales: blue for the diagonal (share of the true digit classified right),
    red for the errors (counts, scaled to the largest error, ticked at whole counts), so that
    ~1% of errors still show."""
    matrix = np.array(confusion)
    diagonal = np.eye(10, dtype=bool)
    recall = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    errors = np.where(diagonal | (matrix == 0), np.nan, matrix).astype(float)
    fig, (ax, right_bar, wrong_bar) = plt.subplots(1, 3, figsize=(7.4, 5.6), dpi=100,
                                                   gridspec_kw={"width_ratios": [24, 1, 1], "wspace": 0.5})
    right = ax.imshow(np.where(diagonal, recall[:, None] * np.ones(10), np.nan), cmap="Blues", vmin=0, vmax=1)
    wrong = ax.imshow(errors, cmap="Reds", vmin=0, vmax=max(1, np.nanmax(errors, initial=1)))
    for true in range(10):
        for pred in range(10):
            if matrix[true, pred]:
                dark = recall[true] > 0.5 if true == pred else errors[true, pred] > 0.6 * np.nanmax(errors)
                ax.text(pred, true, f"{matrix[true, pred]:,}", ha="center", va="center", fontsize=CONFUSION_FONT_PT,
                        color="white" if dark else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("confusion matrix: errors in red, correct in blue")
    fig.colorbar(right, cax=right_bar).set_label("diagonal: share of the true digit right")
    # errors are counts: whole-number ticks, never 0.25 of an error
    fig.colorbar(wrong, cax=wrong_bar, ticks=MaxNLocator(nbins=6, integer=True)).set_label(
        "off the diagonal: errors (count)")
    fig.subplots_adjust(left=0.08, right=0.9, top=0.93, bottom=0.1)
    return fig


def confidence_histogram(histogram: list[dict], bins: int) -> bytes:
    """Counts per confidence bin. With labels, correct and wrong each get a panel and an axis
    of their own: wrong predictions are a few in a thousand and would vanish beside the right ones."""
    edges = np.arange(bins) / bins
    groups = [(True, "correct", "tab:green"), (False, "wrong", "tab:red"), (None, "unlabelled", "tab:gray")]
    panels = []
    for key, label, colour in groups:
        counts = np.zeros(bins)
        for row in histogram:
            if row["correct"] is key:
                counts[row["bin"]] += row["count"]
        if counts.any():
            panels.append((label, colour, counts))
    panels = panels or [("inputs", "tab:gray", np.zeros(bins))]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 1.2 + 1.9 * len(panels)), dpi=100, sharex=True,
                             squeeze=False)
    for ax, (label, colour, counts) in zip(axes[:, 0], panels, strict=True):
        ax.bar(edges, counts, width=1 / bins, align="edge", color=colour, edgecolor="white")
        ax.set_ylabel(f"{label} (log)\nn = {int(counts.sum()):,}")
        ax.set_yscale("log")  # one bin near 1.0 holds nearly everything; the log shows the rest too
        ax.set_ylim(0.7, max(counts.max(), 1) * 5)
        ax.grid(axis="y", alpha=0.3)
        for x, n in zip(edges, counts, strict=True):
            if n:
                ax.text(x + 0.5 / bins, n, f"{int(n):,}", ha="center", va="bottom", fontsize=6)
    axes[0, 0].set_title("confidence" + (": correct and wrong, each on its own axis" if len(panels) > 1 else ""))
    axes[-1, 0].set_xlim(0, 1)
    axes[-1, 0].set_xlabel("confidence (probability of the predicted digit)")
    fig.tight_layout()
    return png_bytes(fig)


def reliability_diagram(calibration_bins: list[dict], ece: float) -> bytes:
    """Accuracy against confidence per bin, the gap to the diagonal drawn in red, and below it
    how many rows each bin holds: a bin of 3 rows says much less than one of 3,000."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6, 6.4), dpi=100, sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    width = calibration_bins[0]["upper"] - calibration_bins[0]["lower"] if calibration_bins else 0.1
    lowers = [b["lower"] for b in calibration_bins]
    accuracy = [b["accuracy"] for b in calibration_bins]
    confidence = [b["confidence"] for b in calibration_bins]
    ax.bar(lowers, accuracy, width=width, align="edge", edgecolor="black", color="tab:blue", alpha=0.6,
           label="accuracy in bin")
    ax.bar(lowers, np.subtract(confidence, accuracy), bottom=accuracy, width=width, align="edge",
           color="tab:red", alpha=0.35, hatch="//", edgecolor="tab:red", label="gap to mean confidence")
    ax.plot(confidence, accuracy, "o", color="tab:orange", markersize=4, label="(mean confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.4f})")
    ax.legend(loc="upper left", fontsize=8)
    sizes = [b["count"] for b in calibration_bins]
    counts.bar(lowers, sizes, width=width, align="edge", color="tab:gray", edgecolor="white")
    for x, n in zip(lowers, sizes, strict=True):
        counts.text(x + width / 2, n, f"{n:,}", ha="center", va="bottom", fontsize=6)
    counts.set_yscale("log")
    counts.set_ylim(0.8, max(sizes, default=1) * 4)
    counts.set_ylabel("rows (log)")
    counts.set_xlabel("confidence")
    fig.tight_layout()
    return png_bytes(fig)


def risk_coverage(rows: list[dict], labelled: bool) -> bytes:
    """With labels, the error of the rows each confidence threshold keeps against the share it
    keeps (lower left is better: few rows to review, few errors left); without, the share kept
    per threshold. Each point is named by its threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    points = [row for row in rows if row["coverage"] is not None and (row["evaluated"] or not labelled)]
    if labelled:
        x = [100 * row["coverage"] for row in points]
        y = [100 * row["error"] for row in points]
        ax.plot(x, y, "o-", color="tab:red")
        ax.set_xlabel("classified rows kept (%)")
        ax.set_ylabel("error among the labelled rows kept (%)")
        ax.set_title("risk and coverage by confidence threshold")
        ax.set_ylim(bottom=0, top=max(y, default=0) * 1.25 or 1)
    else:
        x = [row["threshold"] for row in points]
        y = [100 * row["coverage"] for row in points]
        ax.plot(x, y, "o-", color="tab:blue")
        ax.set_xlabel("confidence threshold")
        ax.set_ylabel("classified rows kept (%)")
        ax.set_title("coverage by confidence threshold (no labels: no error)")
        ax.set_ylim(min(y, default=0) - 5, 101)
    named = {}  # thresholds that keep the same rows share one point and one label
    for row, px, py in zip(points, x, y, strict=True):
        named.setdefault((px, py), []).append(f"{row['threshold']:g}")
    for (px, py), thresholds in named.items():
        ax.annotate(">= " + ", ".join(thresholds), (px, py), textcoords="offset points", xytext=(4, 5), fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)
