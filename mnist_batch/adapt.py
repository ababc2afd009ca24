"""Adapting a checkpoint to a batch's own writers, without labels.

Two steps, as measured on scanned and optdigits-like sets (README, bench/bench_accuracy.py adapt):
1. BatchNorm re-estimation: the running statistics are reset and re-estimated over the set's own
   digits, so that the network normalises their ink, stroke and size as it did MNIST's.
2. Confident self-training, for `rounds` rounds: the set's answers with high confidence and a high
   digit score become labels, mixed into MNIST batches (with the generated non-digits, as
   `train --from --extra` does), for a short fine-tuning at a low rate.

A guard against collapse: the result must keep MNIST test accuracy >= MNIST_FLOOR; else the last
round's network that did is written, or the BatchNorm-only result if it does, else nothing is.
Rows that are not digits never become labels.
"""

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_batch import cores, data, discover, records, results, synthetic, train
from mnist_batch.errors import USAGE, UserError, log, shown
from mnist_batch.model import Inference, accuracy_and_loss, normalize, save_checkpoint, scores, state_copy

MNIST_FLOOR = 0.994  # an adapted network below this on MNIST test has forgotten digits: not written
MIN_DIGITS = 50  # confident digit rows needed: fewer give noisy statistics and labels
NON_DIGITS_SHARE = 0.2  # of each batch, for a base whose metadata does not say (as `train --non-digits 0.2`)
BATCH_SIZE = 128  # images per fine-tuning step, as `train --from` takes them
BN_BATCH = 512  # images per forward pass while re-estimating the statistics
NON_DIGIT_BANK = 2_000  # at most, generated non-digits drawn once per run, augmented anew at every use


@dataclass(frozen=True)
class AdaptOptions:
    inputs: tuple[str, ...]  # image files and folders, discovered as classify does
    base: str | None = None  # --from: a checkpoint path or bundled name; None: the bundled default
    out: Path = Path("runs/adapted")
    # Self-training rounds, each relabelling with the last one's network; 0: BatchNorm only. Three: on the
    # bench's scanned writers +3.5-4.0 points on the images adapted on, against +2.7-3.2 with two.
    rounds: int = 3
    steps: int = 0  # fine-tuning steps per round; 0: train.fine_tune_steps for the number of labels
    confidence: float = 0.95  # an answer becomes a label at this confidence or above ...
    min_digit_score: float = 0.5  # ... and this digit score or above
    lr: float = 0.001
    seed: int = 1
    device: str = "auto"
    data_dir: Path | None = None
    threads: int = 0
    progress: bool = True


def check_options(opts: AdaptOptions) -> None:
    if not opts.inputs:
        raise UserError("no inputs: give the folders (or files) of your unlabelled images", USAGE)
    if opts.rounds < 0:
        raise UserError(f"--rounds {opts.rounds}: give 0 (BatchNorm statistics only) or more", USAGE)
    if opts.steps < 0:
        raise UserError(f"--steps {opts.steps}: give 0 (chosen by the number of labels) or more", USAGE)
    if not 0.5 <= opts.confidence <= 1:
        raise UserError(f"--confidence {opts.confidence}: give a probability from 0.5 to 1, e.g. 0.95", USAGE)
    if not 0 < opts.min_digit_score <= 1:
        raise UserError(f"--min-digit-score {opts.min_digit_score}: give a score above 0 up to 1, e.g. 0.5", USAGE)
    if not opts.lr > 0:
        raise UserError(f"--lr {opts.lr}: give a learning rate above 0, e.g. 0.001", USAGE)


def list_sha256(paths: list[str]) -> str:
    """SHA-256 of the sorted input paths, one per line: which set a checkpoint was adapted on."""
    listing = "".join(f"{path}\n" for path in sorted(paths))
    return hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def batch_norm_mix(digits: torch.Tensor, non_digits: train.Mixed, batch_size: int,
                   generator: torch.Generator) -> torch.Tensor:
    """The set's digits with generated non-digits (augmented) in the share of a training batch, shuffled:
    the network's later layers learnt to read features normalised over such mixed batches, and
    statistics of the digits alone cost accuracy (measured: README)."""
    pick = torch.randint(len(non_digits.x), (round(len(digits) * non_digits.per_batch / batch_size),),
                         generator=generator).to(digits.device)
    mixed = torch.cat([digits, non_digits.augment(non_digits.x[pick])])
    return mixed[torch.randperm(len(mixed), generator=generator).to(digits.device)]


def reestimate_batch_norm(model: nn.Module, images: torch.Tensor) -> None:
    """Reset the BatchNorm running statistics and re-estimate them as plain averages over `images`.
    No gradient; everything else, dropout included, stays in eval mode."""
    model.eval()
    for norm in batch_norms(model):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches, not a moving one
        norm.train()
    with torch.no_grad():
        for start in range(0, len(images), BN_BATCH):
            model(normalize(images[start : start + BN_BATCH]).contiguous(memory_format=torch.channels_last))
    for norm in batch_norms(model):
        norm.momentum = 0.1  # PyTorch's default, for any later training
    model.eval()


def model_scores(inference: Inference, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores by the network as adapting has changed it so far (inference.scores runs the copy
    made for prediction when the checkpoint was loaded)."""
    return scores(inference.model, digits, inference.device, inference.temperature)


def confident_labels(inference: Inference, digits: np.ndarray, opts: AdaptOptions) -> tuple[np.ndarray, np.ndarray]:
    """(index, label) of the digits the network reads with --confidence and --min-digit-score or more."""
    probs, digit_score = model_scores(inference, digits)
    chosen = (probs.max(axis=1) >= opts.confidence) & (digit_score >= opts.min_digit_score)
    return np.flatnonzero(chosen), probs.argmax(axis=1)[chosen]


def mnist_accuracy(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    return accuracy_and_loss(model, *test)["accuracy"]


def self_train(inference: Inference, digits: np.ndarray, opts: AdaptOptions,
               mnist: tuple[torch.Tensor, torch.Tensor], non_digits: train.Mixed, writers: bool,
               generator: torch.Generator, test: tuple[torch.Tensor, torch.Tensor]) -> list[dict]:
    """--rounds of confident self-training on `digits`, each labelling them with the network the last
    round left (a second round labels more of them, and more of them right). A round that leaves MNIST
    test below MNIST_FLOOR ends the rounds, and the model goes back to the last one that held it (or to
    the BatchNorm re-estimation). Per round: labels, steps, MNIST test accuracy."""
    model, device = inference.model, inference.device
    held = state_copy(model)
    extra_per_batch = max(1, round(train.TrainOptions.extra_share * BATCH_SIZE))
    rounds = []
    for number in range(1, opts.rounds + 1):
        index, labels = confident_labels(inference, digits, opts)
        if len(index) < MIN_DIGITS:  # the statistics of a set of one image, say, leave nothing sure
            log(f"self-training round {number}: only {len(index)} images read as sure digits now, fewer than "
                f"{MIN_DIGITS}: no more rounds")
            break
        steps = opts.steps or train.fine_tune_steps(len(index), extra_per_batch)
        labelled = train.Mixed(torch.from_numpy(digits[index]).to(device),
                               torch.from_numpy(labels.astype("int64")).to(device),
                               extra_per_batch, train.extra_augment(writers))
        stream = train.batches(*mnist, BATCH_SIZE, steps, generator, None, labelled, non_digits)
        # The statistics now follow the training batches, as in the base; re-estimating them on the
        # set once more measured worse (optdigits: 98.3% against 98.4%).
        _, metrics = train.fit(model, stream, 1, steps, opts.lr, test, opts.progress)
        rounds.append({"labels": len(index), "steps": steps, "mnist_test_accuracy": metrics["accuracy"]})
        if metrics["accuracy"] < MNIST_FLOOR:
            log(f"self-training round {number} left MNIST test at {metrics['accuracy']:.2%}, below "
                f"{MNIST_FLOOR:.1%}: writing " + (f"round {number - 1}'s network" if number > 1 else
                                                  "the BatchNorm re-estimation alone"))
            model.load_state_dict(held)
            break
        held = state_copy(model)
    return rounds


def adapt(opts: AdaptOptions) -> dict:
    started = time.perf_counter()
    check_options(opts)
    cores.use_threads(opts.threads)
    torch.manual_seed(opts.seed)
    paths = discover.discover(list(opts.inputs))
    inference = Inference(opts.base, opts.device)
    model, device = inference.model, inference.device
    checkpoint = Path(opts.out) / f"{inference.checkpoint.stem.removesuffix('-adapted')}-adapted.safetensors"
    train.check_not_the_base(inference.checkpoint, [checkpoint])
    if not batch_norms(model) or not inference.knows_non_digits:
        raise UserError(f"--from {shown(inference.checkpoint.name)}: adapting needs a smallbn checkpoint with the "
                        "\"not a digit\" output (BatchNorm to re-estimate, and a digit score to keep non-digits "
                        "out of the labels); use --from smallbn", USAGE)
    if not paths:
        raise UserError(f"no image files found in {', '.join(map(shown, opts.inputs))}; give folders of images", USAGE)
    chunk = results.as_classify_reads(records.preprocess_chunk(paths), inference)
    # Only what the network takes for one digit shapes the statistics and the labels.
    _, digit_score = model_scores(inference, chunk.digits)
    set_digits = chunk.digits[digit_score >= opts.min_digit_score]
    confident, _ = confident_labels(inference, chunk.digits, opts)
    if len(confident) < MIN_DIGITS:
        raise UserError(f"only {len(confident)} of the {len(paths)} images read as digits with confidence >= "
                        f"{opts.confidence} and digit score >= {opts.min_digit_score}; adapting needs {MIN_DIGITS} "
                        "or more: give a folder of handwritten digits (the checkpoint was not changed)")

    test_set = data.load("t10k", opts.data_dir)
    test = (torch.from_numpy(test_set.images.copy()).to(device),
            torch.from_numpy(test_set.labels.astype("int64")).to(device))
    before = mnist_accuracy(model, test)
    train_set = data.load("train", opts.data_dir)
    generator = torch.Generator(device="cpu").manual_seed(opts.seed)
    base_hyper = inference.metadata.get("hyperparameters", {})
    # Generated non-digits in the share the base was trained with, so that it keeps knowing them.
    share = base_hyper.get("non_digits") or NON_DIGITS_SHARE
    per_batch = max(1, round(share * BATCH_SIZE))
    needed = max(len(set_digits) * per_batch // BATCH_SIZE, (opts.steps or train.MAX_STEPS) * per_batch)
    bank = synthetic.non_digit_bank(min(NON_DIGIT_BANK, needed), train_set.images, train_set.labels, opts.seed)
    non_digits = train.non_digit_source(torch.from_numpy(bank).to(device), share, BATCH_SIZE)
    statistics_set = batch_norm_mix(torch.from_numpy(set_digits).to(device), non_digits, BATCH_SIZE, generator)
    reestimate_batch_norm(model, statistics_set)
    after_batch_norm = mnist_accuracy(model, test)

    mnist = (torch.from_numpy(train_set.images.copy()).to(device),
             torch.from_numpy(train_set.labels.astype("int64")).to(device))
    writers = bool(base_hyper.get("augment_writers"))
    rounds = self_train(inference, chunk.digits, opts, mnist, non_digits, writers, generator, test)
    held = [done for done in rounds if done["mnist_test_accuracy"] >= MNIST_FLOOR]  # a round below ends them
    kept, after = ("self-training", held[-1]["mnist_test_accuracy"]) if held else ("batch-norm", after_batch_norm)
    if after < MNIST_FLOOR:
        advice = ("the set's own statistics cannot stand for digits at large: give more images, of more "
                  "writers and digits" if kept == "batch-norm" else "try --rounds 0, fewer --steps or a lower --lr")
        raise UserError(f"adapting left MNIST test accuracy at {after:.2%} (before {before:.2%}), below "
                        f"{MNIST_FLOOR:.1%}: the network would forget digits, so nothing was written; {advice}")

    # What the base was trained with carries over (fine-tuning reads it: its non-digit share, its
    # augmentation); so does its confidence temperature. The rest describes this run.
    carried = {key: inference.metadata[key] for key in ("hyperparameters", "temperature") if key in inference.metadata}
    metadata = carried | {
        "test_accuracy": after,
        "mnist_md5": train_set.md5 | test_set.md5,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "base_checkpoint": {"checkpoint": inference.name, "sha256": inference.sha256,
                            "test_accuracy": inference.metadata.get("test_accuracy")},
        "adapted": {
            "inputs": [os.path.abspath(item) for item in opts.inputs],
            "images": len(paths),
            "digits": len(set_digits),
            "inputs_sha256": list_sha256(paths),
            "confident_labels": len(confident),
            "kept": kept,
            "rounds_kept": len(held),
            "rounds": rounds,
            "confidence": opts.confidence,
            "min_digit_score": opts.min_digit_score,
            "lr": opts.lr,
            "batch_size": BATCH_SIZE,
            "seed": opts.seed,
            "mnist_test_accuracy_before": before,
            "mnist_test_accuracy_batch_norm": after_batch_norm,
            "mnist_test_accuracy_after": after,
        },
    }
    save_checkpoint(model, checkpoint, metadata)
    return metadata | {"checkpoint": str(checkpoint), "seconds": time.perf_counter() - started,
                       "device": str(device)}
