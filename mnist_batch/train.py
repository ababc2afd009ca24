"""Training: MNIST held whole as tensors on the device, shuffled index batches, Adam with a
one-cycle schedule, per-epoch train/test metrics, then checkpoint + metrics + plots.

Fine-tuning (--from CHECKPOINT --extra LABELS): the same loop, started from a checkpoint,
with the user's own labelled digits mixed into every batch (a held-back share of them
measures the gain), so that the network learns their writers without forgetting MNIST's.
"""

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F
from tqdm import tqdm

from mnist_batch import augment, cores, data, labels, plots, reading, records, results, synthetic
from mnist_batch.checkpoints import file_sha256, resolve_checkpoint
from mnist_batch.discover import file_ids
from mnist_batch.errors import USAGE, UserError, log, shown
from mnist_batch.files import write_text_atomic
from mnist_batch.model import (
    Inference,
    accuracy_and_loss,
    architecture_of,
    as_saved,
    build,
    class_names,
    load_checkpoint,
    normalize,
    pick_device,
    save_checkpoint,
    state_copy,
)
from mnist_batch.stats import MIN_MEASURED, overlap, wilson_interval
from mnist_batch.train_options import ARCHITECTURE_NAMES, TrainOptions, check_values

DRY_RUN_BATCHES = 10
CPU_RECIPE = (256, 0.015)  # batch size, peak learning rate
CUDA_RECIPE = (512, 0.02)
CALIBRATION_IMAGES = 5_000  # MNIST training images held back by --calibrate to fit the temperature
NON_DIGIT_BANK, MIN_BANK = 12_000, 800  # generated non-digits drawn once per run, then augmented in every batch
SCANNED_BANK = 20_000  # MNIST training digits rendered as scans (--scanned), drawn once per run likewise
NOT_DIGIT_LABEL = 10
# Shares of MNIST digits drawn with a marker, and with a gap in a stroke, when non-digits (blots,
# halves of digits among them) are trained: a digit in a broad or a skipping pen is still a digit.
NON_DIGIT_PENS = {"heavy_p": 0.15, "skip_p": 0.15}
# Fine-tuning on the user's digits (measured on optdigits: bench/bench_accuracy.py, README).
REPEATS, MIN_STEPS, MAX_STEPS = 40, 100, 400
# Fine-tuning may not cost more MNIST than this: below it, the weights move back toward the base's.
FINE_TUNE_FLOOR, FINE_TUNED_SHARES = 0.99, (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
MAX_LISTED_PROBLEMS = 10  # bad rows of a labels file listed on stderr; the rest are counted
# The rows of --extra files: which file, the path as resolved, the file it names (its real path), the label.
EXTRA_ROWS = {"file": pl.Int64, "path": pl.String, "label": pl.String, "image": pl.String}


@dataclass(frozen=True)
class ExtraDigits:
    """The user's labelled digits, preprocessed as classify does, split for training and holdout."""

    train_x: np.ndarray  # (n, 28, 28) uint8
    train_y: np.ndarray  # (n,) int64
    holdout_x: np.ndarray
    holdout_y: np.ndarray
    sources: list[dict] = field(default_factory=list)  # per labels file: name, sha256, row counts


def check_options(opts: TrainOptions) -> None:
    """check_values, then that the run would not write over its --from checkpoint."""
    check_values(opts)
    if opts.base is not None:
        check_not_the_base(resolve_checkpoint(opts.base), [Path(opts.out) / f"{name}-tuned.safetensors"
                                                            for name in ARCHITECTURE_NAMES])


def check_not_the_base(base: Path, outputs: list[Path]) -> None:
    """The new checkpoint must not take its base's place: the base's SHA-256 in its metadata would
    then name a file that is gone (train --from, adapt --from: NETWORK-tuned, NETWORK-adapted)."""
    for output in outputs:
        if os.path.exists(output) and os.path.exists(base) and os.path.samefile(output, base):
            raise UserError(f"--from {shown(base)} is the file this run would write ({shown(output)}): give "
                            "another --out, so that the base stays as its metadata names it", USAGE)


AFFINE_ONLY = {"elastic": 0.0, "stroke_p": 0.0, "blur_p": 0.0}  # augment.make_augment's affine jitter alone


def make_augment(opts: TrainOptions, with_non_digits: bool = False):
    """None, affine jitter (--augment), or the writer-variation set (--augment-writers:
    affine + elastic + stroke width + blur; with non-digits, some digits in a much broader pen
    and some with a gap in a stroke), all batched on the device."""
    if opts.augment_writers:
        return augment.make_augment(**(NON_DIGIT_PENS if with_non_digits else {}))
    if opts.augment:
        return augment.make_augment(**AFFINE_ONLY)
    return None


def extra_augment(writers: bool):
    """For the user's own digits: the writer set for a network trained with it, else the affine jitter."""
    return augment.make_augment(**({} if writers else AFFINE_ONLY))


@dataclass(frozen=True)
class Mixed:
    """Images mixed into every batch: `per_batch` of them drawn at random and augmented, with their labels."""

    x: torch.Tensor  # (n, 28, 28) uint8, on the training device, as the labels are
    y: torch.Tensor  # (n,) int64
    per_batch: int
    augment: Callable[[torch.Tensor], torch.Tensor]


def non_digit_source(bank: torch.Tensor, share: float, batch_size: int) -> Mixed:
    """Generated non-digits (synthetic.non_digit_bank) as the "not a digit" class, `share` of each batch."""
    labels = torch.full((len(bank),), NOT_DIGIT_LABEL, dtype=torch.int64, device=bank.device)
    return Mixed(bank, labels, max(1, round(share * batch_size)), augment.make_augment())


def bank_size(most: int, steps: int, per_batch: int) -> int:
    """Images to draw once for a run of `steps` batches taking `per_batch` each: drawing one costs
    milliseconds, so a short run (fine-tuning, --dry-run) draws fewer."""
    return min(most, max(MIN_BANK, 2 * steps * per_batch))


def scanned_source(opts: TrainOptions, on: "OnDevice", batch_size: int, steps: int, writers: bool) -> Mixed:
    """MNIST training digits (never the calibration slice) as a scanner or phone gives them
    (synthetic.scanned_digit): low resolution, tilt, blur, uneven light, JPEG; preprocessed as classify
    would, `opts.scanned` of each batch, augmented as the user's digits are."""
    per_batch = max(1, round(opts.scanned * batch_size))
    digits, labels = synthetic.scanned_digit_bank(bank_size(SCANNED_BANK, steps, per_batch), on.train_x.cpu().numpy(),
                                                  on.train_y.cpu().numpy(), opts.seed + 1)
    device = on.train_x.device
    return Mixed(torch.from_numpy(digits).to(device), torch.from_numpy(labels).to(device), per_batch,
                 extra_augment(writers))


def batches(train_x: torch.Tensor, train_y: torch.Tensor, batch_size: int, steps_per_epoch: int,
            generator: torch.Generator, augment_mnist=None, extra: Mixed | None = None,
            non_digits: Mixed | None = None,
            scanned: Mixed | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless training batches: MNIST in a new shuffled order each epoch (drawn at random instead when
    the user's digits take a share of the batch), then the user's digits, then the non-digits and the
    scanned digits on top."""
    device = train_x.device
    draws = generator
    if device.type == "cuda":  # a copy of host-drawn indices each step would wait for the GPU
        draws = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))

    def pick(high: int, count: int) -> torch.Tensor:
        return torch.randint(high, (count,), generator=draws, device=draws.device).to(device)

    mnist_per_batch = batch_size - (extra.per_batch if extra is not None else 0)
    while True:
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for step in range(steps_per_epoch):
            if extra is None:
                index = order[step * batch_size : (step + 1) * batch_size]
            else:
                index = pick(len(train_x), mnist_per_batch)
            batch_x = train_x[index] if augment_mnist is None else augment_mnist(train_x[index])
            parts = [(batch_x, train_y[index])]
            for source in (extra, non_digits, scanned):
                if source is not None:
                    chosen = pick(len(source.x), source.per_batch)
                    parts.append((source.augment(source.x[chosen]), source.y[chosen]))
            if len(parts) == 1:
                yield parts[0]
            else:
                yield torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def fit(model, stream: Iterator, epochs: int, steps_per_epoch: int, lr: float,
        test: tuple[torch.Tensor, torch.Tensor], progress: bool) -> tuple[list[dict], dict]:
    """Adam with a one-cycle schedule over `epochs` x `steps_per_epoch` batches of `stream`; per epoch,
    train and MNIST test metrics, measured on the network as saved (as `evaluate` would load it). Returns
    the history and the last test metrics: the checkpoint's figures, those `evaluate` gives for it."""
    device = test[0].device
    # The fused kernel saves a little per step; it exists for the CPU and CUDA only.
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    history = []
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="batch",
                   disable=not progress, leave=False)
        for _ in bar:
            batch_x, batch_y = next(stream)
            output = model(normalize(batch_x).contiguous(memory_format=torch.channels_last))
            loss = F.nll_loss(output, batch_y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            # Accumulate on the device: no host sync per step.
            loss_sum += loss.detach() * len(batch_y)
            correct += (output.argmax(1) == batch_y).sum()
            seen += len(batch_y)
        metrics = accuracy_and_loss(as_saved(model, device), *test)
        history.append({
            "epoch": epoch,
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen,
            "test_loss": metrics["loss"],
            "test_accuracy": metrics["accuracy"],
            "lr": schedule.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_start,
        })
        if progress:
            last = history[-1]
            tqdm.write(f"epoch {epoch}: train loss {last['train_loss']:.4f}, "
                       f"test accuracy {last['test_accuracy']:.2%}")
    return history, metrics


def fine_tune_steps(extra_digits: int, extra_per_batch: int) -> int:
    """Steps per epoch when fine-tuning: each of the user's digits seen about REPEATS times,
    within [MIN_STEPS, MAX_STEPS] (a few labels still get enough steps; many do not take long)."""
    return int(np.clip(math.ceil(REPEATS * extra_digits / extra_per_batch), MIN_STEPS, MAX_STEPS))


def load_extra(opts: TrainOptions, max_pixels: int = reading.DEFAULT_MAX_PIXELS) -> ExtraDigits:
    """Read each labels file, decode and preprocess its images; list bad rows and skip them.
    An image is used once however often, and however spelt, the files name it; different labels
    for one image are a usage error, as in `report --labels`. The held-back share is drawn from
    distinct digits: no held-back digit is also trained on."""
    frames, sources, problems = [], [], []
    for index, file in enumerate(opts.extra):
        frame = labels.read_labels_file(file)
        labelled = frame.filter(pl.col("label").is_not_null())  # an empty label: left for a person to fill in
        is_digit = pl.col("label").is_in(labels.DIGITS)
        problems += [f"{shown(file)}: {shown(path)}: label {shown(repr(label))} is not a digit 0-9"
                     for path, label in labelled.filter(~is_digit).iter_rows()]
        good = labelled.filter(is_digit)
        paths = [labels.resolve(path, opts.extra_root) for path in good["path"]]
        frames.append(pl.DataFrame({"file": [index] * good.height, "path": paths, "label": good["label"],
                                    "image": file_ids(paths)},  # the file, however it is spelt
                                   schema=EXTRA_ROWS))
        sources.append({"file": Path(file).name, "sha256": file_sha256(Path(file)), "rows": frame.height,
                        "used": 0, "skipped": labelled.height - good.height, "duplicates": 0,
                        "unlabelled": frame.height - labelled.height})
    rows = pl.concat(frames)
    repeats = rows.filter(~pl.col("image").is_first_distinct()).group_by("file").len()
    for index, count in repeats.iter_rows():
        sources[index]["duplicates"] = count
    named = f"labels file{'s' if len(opts.extra) > 1 else ''} {', '.join(map(shown, opts.extra))}"
    rows = labels.one_label_each(rows, "image", named, noun="image")
    chunk = records.preprocess_chunk(rows["path"].to_list(), max_pixels)
    if opts.base is not None and len(chunk.other_way_rows):  # a close call's reading: the one classify keeps
        chunk = results.as_classify_reads(chunk, Inference(opts.base, opts.device))
    for (index, path), (status, error) in zip(rows.select("file", "path").iter_rows(), chunk.outcomes(), strict=True):
        if status == records.OK:
            sources[index]["used"] += 1
        else:
            sources[index]["skipped"] += 1
            problems.append(f"{shown(opts.extra[index])}: {shown(path)}: {status}: {error}")
    for problem in problems[:MAX_LISTED_PROBLEMS]:
        log(f"skipped {problem}")
    if len(problems) > MAX_LISTED_PROBLEMS:
        log(f"skipped {len(problems) - MAX_LISTED_PROBLEMS} more bad rows")
    for file, source in zip(opts.extra, sources, strict=True):
        if not source["used"] + source["duplicates"]:
            raise UserError(f"labels file {shown(file)} has no usable row ({source['rows']} rows, "
                            f"{source['unlabelled']} without a label, {source['skipped']} bad): "
                            "give image paths with labels 0-9", USAGE)
    x = chunk.digits
    y = rows["label"].cast(pl.Int64).to_numpy()[np.array(chunk.ok, bool)]
    copies = np.unique(x.reshape(len(x), -1), axis=0, return_inverse=True)[1].reshape(-1)  # equal digits: one group
    train_index, holdout_index = stratified_split(y, opts.holdout, opts.seed, copies)
    return ExtraDigits(x[train_index], y[train_index], x[holdout_index], y[holdout_index], sources)


def stratified_split(targets: np.ndarray, share: float, seed: int,
                     groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) indices: `share` of each digit held back, where it has at least two
    examples (one always stays for training). Members of one group (copies of one digit) are
    one example: they go to the same side, labelled as the first of them."""
    groups = np.arange(len(targets)) if groups is None else np.asarray(groups)
    _, first, group_of = np.unique(groups, return_index=True, return_inverse=True)
    group_targets = targets[first]
    rng = np.random.default_rng(seed)
    held = []
    for digit in np.unique(group_targets):
        members = rng.permutation(np.flatnonzero(group_targets == digit))
        count = min(round(share * len(members)), len(members) - 1) if share > 0 else 0
        held.extend(members[:count])
    holdout_mask = np.isin(group_of.reshape(-1), held)
    return np.flatnonzero(~holdout_mask), np.flatnonzero(holdout_mask)


def starting_model(opts: TrainOptions, device: torch.device) -> tuple[torch.nn.Module, dict | None]:
    """A fresh network of --arch, or the --from checkpoint's network with its weights."""
    if opts.base is None:
        return build(opts.arch or "lenet", 11 if opts.non_digits else 10), None
    checkpoint = resolve_checkpoint(opts.base)
    model, metadata = load_checkpoint(checkpoint, device)
    if opts.arch is not None and opts.arch != architecture_of(model):
        raise UserError(f"--from {opts.base} is a {architecture_of(model)} checkpoint; drop --arch {opts.arch} "
                        "or start from a checkpoint of that network", USAGE)
    if opts.non_digits and len(class_names(model)) == 10:
        raise UserError(f"--from {opts.base} has no \"not a digit\" output; drop --non-digits or train one afresh "
                        "with --arch smallbn --non-digits 0.2", USAGE)
    hyper = metadata.get("hyperparameters", {})
    return model, {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint),
                   "test_accuracy": metadata.get("test_accuracy"),
                   "augment_writers": bool(hyper.get("augment_writers")),
                   "non_digits": hyper.get("non_digits", 0.0), "temperature": metadata.get("temperature")}


def non_digit_share(opts: TrainOptions, base: dict | None) -> float:
    """--non-digits; when fine-tuning a network that knows non-digits, the share it was trained with,
    so that it does not forget them."""
    return opts.non_digits or (base or {}).get("non_digits", 0.0)


def fit_temperature(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the negative log-likelihood of held-back digits (temperature
    scaling, Guo et al. 2017): a single number, so the predictions stay the same."""
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(normalize(images[i : i + 2000]))[:, :10] for i in range(0, len(images), 2000)])
    grid = torch.linspace(0.5, 4.0, 141)
    losses = [F.cross_entropy(logits / t, labels).item() for t in grid]
    return float(grid[int(np.argmin(losses))])


def holdout_accuracy(model, extra: ExtraDigits | None, device) -> float | None:
    if extra is None or not len(extra.holdout_y):
        return None
    x = torch.from_numpy(extra.holdout_x).to(device)
    y = torch.from_numpy(extra.holdout_y).to(device)
    return accuracy_and_loss(model, x, y)["accuracy"]


def holdout_gain(digits: int, before: float | None, after: float | None) -> dict:
    """95% intervals of the held-back accuracy before and after, and whether they show a gain
    at all: with a few dozen digits, 100% -> 100% says nothing."""
    intervals = {f"holdout_ci95_{when}": None if accuracy is None else wilson_interval(round(accuracy * digits), digits)
                 for when, accuracy in (("before", before), ("after", after))}
    measured = None
    if before is not None and after is not None:
        measured = digits >= MIN_MEASURED and not overlap(intervals["holdout_ci95_before"],
                                                          intervals["holdout_ci95_after"])
    return intervals | {"gain_measured": measured}


def hold_mnist_floor(model, base_weights: dict, test_set: tuple[torch.Tensor, torch.Tensor],
                     test: dict) -> tuple[dict, dict]:
    """A fine-tuned network below FINE_TUNE_FLOOR on MNIST test (LeNet, 200 labels of scanned other
    writers: 98.90-99.03% over three seeds) is moved back along the line to its base's weights, to
    the largest share of the fine-tuned weights that holds the floor (0.8 held it on all three,
    keeping most of the gain). A base below the floor itself leaves the fine-tuned network as it is.
    Returns the test metrics of the network kept and what was done."""
    tuned = state_copy(model)
    fine_tuned_accuracy = test["accuracy"]
    for share in FINE_TUNED_SHARES:
        if share < 1:
            model.load_state_dict({name: share * tensor + (1 - share) * base_weights[name]
                                   if tensor.is_floating_point() else tensor for name, tensor in tuned.items()})
            test = accuracy_and_loss(model, *test_set)
        if test["accuracy"] >= FINE_TUNE_FLOOR:
            break
    else:
        model.load_state_dict(tuned)
        test, share = accuracy_and_loss(model, *test_set), 1.0
    if share < 1:
        log(f"fine-tuning left MNIST test at {fine_tuned_accuracy:.2%}, below {FINE_TUNE_FLOOR:.1%}: kept "
            f"{share:.0%} of the change from the base, which holds {test['accuracy']:.2%}")
    return test, {"floor": FINE_TUNE_FLOOR, "fine_tuned_share": share,
                  "test_accuracy_fine_tuned": fine_tuned_accuracy}


@dataclass(frozen=True)
class OnDevice:
    """MNIST, held whole on the training device (47 MB of uint8, batched by index), and the user's digits."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor]
    calibration: tuple[torch.Tensor, torch.Tensor] | None  # --calibrate: held back, never trained on
    extra: tuple[torch.Tensor, torch.Tensor] | None


def to_device(opts: TrainOptions, train_set: data.Split, test_set: data.Split, extra: ExtraDigits | None,
              device: torch.device) -> OnDevice:
    def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(images.copy()).to(device), torch.from_numpy(labels.astype("int64")).to(device)

    train_x, train_y = tensors(train_set.images, train_set.labels)
    calibration = None
    if opts.calibrate:  # a held-back slice, never trained on, to fit the confidence temperature
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(opts.seed)).to(device)
        calibration = train_x[order[:CALIBRATION_IMAGES]], train_y[order[:CALIBRATION_IMAGES]]
        train_x, train_y = train_x[order[CALIBRATION_IMAGES:]], train_y[order[CALIBRATION_IMAGES:]]
    return OnDevice(train_x, train_y, tensors(test_set.images, test_set.labels), calibration,
                    None if extra is None else tensors(extra.train_x, extra.train_y))


def recipe(opts: TrainOptions, device: torch.device) -> tuple[int, float]:
    """Batch size and peak learning rate: as given, else the device's default. On a GPU a step of
    LeNet costs the kernel launches, not the arithmetic: larger batches mean fewer of them."""
    batch_size, lr = CUDA_RECIPE if device.type == "cuda" else CPU_RECIPE
    return opts.batch_size or batch_size, opts.lr or lr


@dataclass(frozen=True)
class Plan:
    stream: Iterator[tuple[torch.Tensor, torch.Tensor]]
    epochs: int
    steps_per_epoch: int
    writers: bool  # the user's digits get the writer augmentation


def plan(opts: TrainOptions, batch_size: int, on: OnDevice, extra: ExtraDigits | None, base: dict | None,
         share: float, mnist: data.Split) -> Plan:
    """The batches: MNIST epochs, or, fine-tuning, MNIST drawn at random plus the user's digits,
    augmented (they are few), for a number of steps set by how many there are; + non-digits and
    scanned digits."""
    extra_per_batch = max(1, round(opts.extra_share * batch_size)) if extra is not None else 0
    if opts.dry_run:
        steps_per_epoch = DRY_RUN_BATCHES
    elif extra is not None and base is not None:  # from scratch, --extra digits join full MNIST epochs
        steps_per_epoch = fine_tune_steps(len(extra.train_y), extra_per_batch)
    else:
        steps_per_epoch = -(-len(on.train_x) // batch_size)
    epochs = 1 if opts.dry_run else opts.epochs
    non_digits = None
    if share:  # drawn and preprocessed as classify would see them; augmented in every batch
        count = bank_size(NON_DIGIT_BANK, epochs * steps_per_epoch, max(1, round(share * batch_size)))
        bank = synthetic.non_digit_bank(count, mnist.images, mnist.labels, opts.seed)
        bank = torch.from_numpy(bank).to(on.train_x.device)
        non_digits = non_digit_source(bank, share, batch_size)
    # The user's digits get the augmentation the network learnt to absorb: the writer set for a
    # network trained with it, else the affine jitter (LeNet loses MNIST accuracy to the rest).
    writers = opts.augment_writers or (base or {}).get("augment_writers", False)
    mixed_in = Mixed(*on.extra, extra_per_batch, extra_augment(writers)) if extra is not None else None
    scanned = scanned_source(opts, on, batch_size, epochs * steps_per_epoch, writers) if opts.scanned else None
    shuffle = torch.Generator(device="cpu").manual_seed(opts.seed)
    augment_mnist = make_augment(opts, with_non_digits=bool(share))
    stream = batches(on.train_x, on.train_y, batch_size, steps_per_epoch, shuffle, augment_mnist, mixed_in, non_digits,
                     scanned)
    return Plan(stream, epochs, steps_per_epoch, writers)


def train(opts: TrainOptions) -> dict:
    started = time.perf_counter()
    check_options(opts)
    threads = cores.use_threads(opts.threads)
    torch.manual_seed(opts.seed)
    device = pick_device(opts.device)
    batch_size, lr = recipe(opts, device)
    train_set = data.load("train", opts.data_dir, opts.download)
    test_set = data.load("t10k", opts.data_dir)
    extra = load_extra(opts) if opts.extra else None
    on = to_device(opts, train_set, test_set, extra, device)

    model, base = starting_model(opts, device)
    share = non_digit_share(opts, base)
    # channels_last makes the small convolutions about 10% faster on the CPU.
    model = model.to(device, memory_format=torch.channels_last)
    holdout_before = holdout_accuracy(model, extra, device) if base is not None else None
    base_weights = state_copy(model) if base else None
    planned = plan(opts, batch_size, on, extra, base, share, train_set)
    history, test = fit(model, planned.stream, planned.epochs, planned.steps_per_epoch, lr, on.test, opts.progress)
    floor = None
    if base_weights is not None and not opts.dry_run:
        test, floor = hold_mnist_floor(model, base_weights, on.test, test)

    hyper = {k: v for k, v in asdict(opts).items() if k in ("augment", "augment_writers", "holdout", "extra_share",
                                                              "calibrate", "scanned")}
    hyper |= {"batch_size": batch_size, "lr": lr, "non_digits": share}
    if share and opts.augment_writers:
        hyper |= {"non_digit_pens": NON_DIGIT_PENS}
    if extra is not None:
        hyper |= {"steps_per_epoch": planned.steps_per_epoch,
                  "extra_augment": "writers" if planned.writers else "affine"}
    metadata = {
        "epochs": planned.epochs,
        "hyperparameters": hyper | {"optimizer": "adam", "schedule": "one-cycle"},
        "seed": opts.seed,
        "dry_run": opts.dry_run,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "mnist_md5": train_set.md5 | test_set.md5,
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    metadata |= after_training(opts, model, base, extra, on, holdout_before)
    if floor is not None:
        metadata["mnist_floor"] = floor
    out = Path(opts.out)
    # A tuned network is told apart from its base by its file name alone: the result
    # files' checkpoint column holds the name (adapt writes NETWORK-adapted likewise).
    checkpoint = out / f"{architecture_of(model)}{'-tuned' if base is not None else ''}.safetensors"
    save_checkpoint(model, checkpoint, metadata)
    summary = metadata | {"checkpoint": str(checkpoint), "per_class_accuracy": test["per_class_accuracy"],
                          "history": history, "seconds": time.perf_counter() - started, "device": str(device),
                          "threads": threads}
    write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    plots.training_curves(history, out)
    return summary


def after_training(opts: TrainOptions, model, base: dict | None, extra: ExtraDigits | None, on: OnDevice,
                   holdout_before: float | None) -> dict:
    """The checkpoint's metadata beyond the MNIST figures: the confidence temperature, the base, the user's digits."""
    metadata = {}
    if base is not None and base.get("temperature") and not opts.calibrate:
        metadata["temperature"] = base["temperature"]  # fine-tuning keeps the base's calibration
    if opts.calibrate:  # on the held-back digits: clean, with the writer augmentation, and as scans if trained on them
        calib_x, calib_y = on.calibration
        device = calib_x.device
        writers_x = augment.make_augment(generator=torch.Generator(device=device).manual_seed(opts.seed))(calib_x)
        images, labels = [calib_x, writers_x], [calib_y, calib_y]
        if opts.scanned:
            scans = synthetic.scanned_digit_bank(len(calib_x), calib_x.cpu().numpy(), calib_y.cpu().numpy(),
                                                 opts.seed + 2)
            images.append(torch.from_numpy(scans[0]).to(device))
            labels.append(torch.from_numpy(scans[1]).to(device))
        metadata["temperature"] = fit_temperature(model, torch.cat(images), torch.cat(labels))
    if base is not None:
        metadata["base_checkpoint"] = base
    if extra is not None:
        holdout_after = holdout_accuracy(model, extra, on.test[0].device)
        metadata["extra"] = {
            "labels_files": extra.sources,
            "train_digits": len(extra.train_y),
            "holdout_digits": len(extra.holdout_y),
            "holdout_accuracy_before": holdout_before,
            "holdout_accuracy_after": holdout_after,
        } | holdout_gain(len(extra.holdout_y), holdout_before, holdout_after)
    return metadata
