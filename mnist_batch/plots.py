"""Matplotlib figures. Imported only by the commands that draw, so --help stays fast."""

import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a window: this runs from cron too
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(history: list[dict], out_dir: Path) -> list[Path]:
    """The original notebook's two plots: loss per epoch and accuracy per epoch, train and test."""
    epochs = [row["epoch"] for row in history]
    written = []
    for metric, ylabel in (("loss", "loss (NLL)"), ("accuracy", "accuracy")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"test_{metric}"] for row in history], "s-", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{metric} per epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(out_dir) / f"{metric}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def confusion_heatmap(confusion: list[list[int]]) -> bytes:
    matrix = np.array(confusion)
    # Row-normalised colours: a rare digit's errors show as clearly as a common one's.
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=100)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for true in range(10):
        for pred in range(10):
            if matrix[true, pred]:
                ax.text(pred, true, str(matrix[true, pred]), ha="center", va="center", fontsize=7,
                        color="white" if rates[true, pred] > 0.5 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("confusion matrix (colour: share of the true digit)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return png_bytes(fig)


def confidence_histogram(histogram: list[dict], bins: int) -> bytes:
    """Counts per confidence bin; split into correct and wrong when labels are known."""
    edges = np.arange(bins) / bins
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    groups = {(True, "correct", "tab:green"), (False, "wrong", "tab:red"), (None, "unlabelled", "tab:gray")}
    bottom = np.zeros(bins)
    for key, label, colour in sorted(groups, key=lambda g: g[1]):
        counts = np.zeros(bins)
        for row in histogram:
            if row["correct"] is key:
                counts[row["bin"]] += row["count"]
        if counts.any():
            ax.bar(edges, counts, width=1 / bins, align="edge", bottom=bottom, color=colour,
                   label=label, edgecolor="white")
            bottom += counts
    ax.set_yscale("symlog")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted digit)")
    ax.set_ylabel("inputs (symlog scale)")
    ax.set_title("confidence")
    ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


def reliability_diagram(calibration_bins: list[dict], ece: float) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    width = calibration_bins[0]["upper"] - calibration_bins[0]["lower"] if calibration_bins else 0.1
    ax.bar([b["lower"] for b in calibration_bins], [b["accuracy"] for b in calibration_bins], width=width,
           align="edge", edgecolor="black", color="tab:blue", alpha=0.7, label="accuracy in bin")
    ax.plot([b["confidence"] for b in calibration_bins], [b["accuracy"] for b in calibration_bins], "o",
            color="tab:orange", label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.4f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return png_bytes(fig)
