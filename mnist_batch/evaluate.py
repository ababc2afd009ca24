"""Accuracy, loss and per-class accuracy of a checkpoint on the MNIST test set."""

from dataclasses import dataclass
from pathlib import Path

import torch

from mnist_batch import data
from mnist_batch.model import DEFAULT_CHECKPOINT, file_sha256, load_checkpoint, pick_device
from mnist_batch.train import evaluate as evaluate_model


@dataclass(frozen=True)
class EvaluateOptions:
    checkpoint: Path = DEFAULT_CHECKPOINT
    data_dir: Path | None = None
    download: bool = False
    device: str = "auto"


def evaluate(opts: EvaluateOptions) -> dict:
    device = pick_device(opts.device)
    model, metadata = load_checkpoint(opts.checkpoint, device)
    test_set = data.load("t10k", opts.data_dir, opts.download)
    images = torch.from_numpy(test_set.images.copy()).to(device)
    labels = torch.from_numpy(test_set.labels.astype("int64")).to(device)
    result = evaluate_model(model, images, labels)
    return {
        "checkpoint": str(opts.checkpoint),
        "checkpoint_sha256": file_sha256(opts.checkpoint),
        "images": len(labels),
        **result,
        "recorded_test_accuracy": metadata.get("test_accuracy"),
    }
