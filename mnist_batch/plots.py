"""Matplotlib figures. Imported only by the commands that draw, so --help stays fast."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: this runs from cron too
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(history: list[dict], out_dir: Path) -> list[Path]:
    """The seed's two plots: loss per epoch and accuracy per epoch, train and test."""
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
