"""Accuracy, loss and per-class accuracy of a checkpoint on the MNIST test set."""

from dataclasses import dataclass
from pathlib import Path

import torch

from mnist_batch import data
from mnist_batch.checkpoints import file_sha256, resolve_checkpoint
from mnist_batch.model import accuracy_and_loss, load_checkpoint, pick_device


@dataclass(frozen=True)
class EvaluateOptions:
    checkpoint: str | Path | None = None  # a path or a bundled name; None: the bundled default
    data_dir: Path | None = None
    download: bool = False
    device: str = "auto"


def evaluate_checkpoint(opts: EvaluateOptions) -> dict:
    device = pick_device(opts.device)
    checkpoint = resolve_checkpoint(opts.checkpoint)
    model, metadata = load_checkpoint(checkpoint, device)
    test_set = data.load("t10k", opts.data_dir, opts.download)
    images = torch.from_numpy(test_set.images.copy()).to(device)
    labels = torch.from_numpy(test_set.labels.astype("int64")).to(device)
    result = accuracy_and_loss(model, images, labels)
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "images": len(labels),
        **result,
        "recorded_test_accuracy": metadata.get("test_accuracy"),
    }
