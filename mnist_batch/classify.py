"""The batch inference pipeline.

    discover paths -> decode + preprocess (worker processes) -> batches of 28x28 uint8
    -> model on the device -> softmax -> rows -> part files -> merge + atomic rename

The worker pool is forked before torch is imported: the workers stay small, and they
decode the first images while the main process is still loading torch and the model.
At most a few chunks are in flight, so memory stays flat whatever the number of inputs.
"""

import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_batch import images, results
from mnist_batch.discover import discover
from mnist_batch.errors import INTERRUPTED, USAGE, UserError

PART_ROWS = 4096  # rows per part file: what a crash can cost, and what --resume skips
MAX_SHOWN_ERRORS = 10  # per-file error lines on stderr; the rest are in the result file


@dataclass(frozen=True)
class ClassifyOptions:
    inputs: tuple[str, ...]
    out: Path | None = None
    out_dir: Path | None = None  # instead of out: a new time-named Parquet file in this folder
    incremental: bool = False  # with out_dir: skip inputs that a result file there already covers
    files_from: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    format: str | None = None
    checkpoint: Path | None = None  # None: the bundled checkpoint
    device: str = "auto"
    workers: int = 0  # 0: one per core
    batch_size: int = 1024
    overwrite: bool = False
    resume: bool = False
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    progress: bool = True
    address: str | None = None  # Ray cluster address (else $RAY_ADDRESS, else a local cluster)
    actors: int = 0  # Ray predictor actors (0: one per GPU, or one)


def preprocess_chunk(paths: list[str], max_pixels: int) -> tuple:
    """Worker: paths -> (digits (k, 28, 28) uint8 for the ok ones, statuses, errors, sizes, mtimes)."""
    digits, statuses, errors, sizes, mtimes = [], [], [], [], []
    for path in paths:
        digit, status, error, size, mtime = images.load_path(path, max_pixels)
        statuses.append(status)
        errors.append(error)
        sizes.append(size)
        mtimes.append(mtime)
        if digit is not None:
            digits.append(digit)
    return stack_digits(digits), statuses, errors, sizes, mtimes


def stack_digits(digits: list[np.ndarray]) -> np.ndarray:
    return np.stack(digits) if digits else np.zeros((0, 28, 28), np.uint8)


def predict(model, digits: np.ndarray, device) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, 10) float32 softmax probabilities."""
    import torch

    from mnist_batch.model import normalize

    if len(digits) == 0:
        return np.zeros((0, 10), np.float32)
    batch = torch.from_numpy(digits)
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)  # overlaps the copy with compute
    with torch.inference_mode():
        inputs = normalize(batch.to(device)).contiguous(memory_format=torch.channels_last)
        return model(inputs).exp().float().cpu().numpy()


def spread_probs(probs: np.ndarray, statuses: list[str]) -> np.ndarray:
    """Probabilities of the ok inputs placed at their rows among all inputs of a chunk."""
    full = np.zeros((len(statuses), 10), np.float32)
    full[[i for i, status in enumerate(statuses) if status == images.OK]] = probs
    return full


def ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and keeps what is written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_context():
    # fork is what makes the early start cheap; where it is missing, spawn works too.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def check_options(opts: ClassifyOptions) -> None:
    if (opts.out is None) == (opts.out_dir is None):
        raise UserError("give exactly one of --out FILE and --out-dir DIR", USAGE)
    if opts.incremental and opts.out_dir is None:
        raise UserError("--incremental needs --out-dir: it skips inputs covered by the files there", USAGE)
    if opts.out_dir is not None and (opts.resume or opts.format not in (None, "parquet")):
        raise UserError("--out-dir writes new Parquet files: --resume and --format do not apply", USAGE)
    if opts.overwrite and opts.resume:
        raise UserError("--overwrite and --resume contradict each other: pick one", USAGE)
    if opts.out is not None and Path(opts.out).exists() and not opts.overwrite:
        hint = "nothing to resume; " if opts.resume else ""
        raise UserError(f"{opts.out} exists; {hint}pass --overwrite to replace it", USAGE)


def file_key(path: str) -> tuple | None:
    """What a result row records of an input file: path, size and modification time."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return path, info.st_size, info.st_mtime_ns


def classify(opts: ClassifyOptions) -> dict:
    started = time.perf_counter()
    check_options(opts)
    out = results.new_output_path(opts.out_dir) if opts.out_dir else Path(opts.out)
    fmt = results.output_format(out, opts.format)
    parts = results.parts_dir(out)
    paths = discover(list(opts.inputs), opts.files_from, opts.include, opts.exclude)
    results.remove_unfinished_merge(out)
    if not paths and not opts.incremental:
        log(f"no image files found in {', '.join(opts.inputs) or opts.files_from}; writing an empty result")
    if opts.incremental:
        results.remove_crashed_runs(opts.out_dir)
        covered = results.covered_inputs(opts.out_dir)
        new = [path for path in paths if file_key(path) not in covered]
        log(f"incremental: {len(new)} new or changed of {len(paths)} inputs; "
            f"the rest already have rows in {opts.out_dir}")
        paths = new
        if not paths:
            return {"out": None, "inputs": 0, "rows": 0, "ok": 0, "blank": 0, "failed": 0,
                    "seconds": time.perf_counter() - started, "images_per_second": 0.0}

    previous = results.existing_parts(parts)
    if previous and not opts.resume:
        log(f"removing {len(previous)} part files of an unfinished earlier run in {parts} "
            "(use --resume to continue it instead)")
        for part in previous:
            part.unlink()
        previous = []
    done = results.done_paths(parts) if previous else set()
    todo = [path for path in paths if path not in done]
    if done:
        log(f"resuming: {len(paths) - len(todo)} of {len(paths)} inputs already have rows")

    workers = opts.workers or cpu_count()
    # Small runs still get every worker busy; large runs use whole batches.
    chunk = max(16, min(opts.batch_size, -(-len(todo) // (workers * 4)) if todo else 16))
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]

    statuses: Counter = Counter()
    shown_errors = 0
    try:
        with pool_context().Pool(workers, initializer=ignore_interrupts) as pool:
            in_flight = deque()
            pending = iter(chunks)

            def submit():
                batch = next(pending, None)
                if batch is not None:
                    in_flight.append((batch, pool.apply_async(preprocess_chunk, (batch, opts.max_pixels))))

            for _ in range(workers * 4):
                submit()

            # Loaded while the workers decode the first chunks.
            import torch
            from tqdm import tqdm

            from mnist_batch.model import DEFAULT_CHECKPOINT, file_sha256, load_checkpoint, pick_device

            device = pick_device(opts.device)
            if device.type == "cpu":
                # The workers already keep the cores busy; more torch threads would only contend.
                torch.set_num_threads(1)
            checkpoint = Path(opts.checkpoint or DEFAULT_CHECKPOINT)
            model, _ = load_checkpoint(checkpoint, device)
            model = model.to(memory_format=torch.channels_last)  # about twice as fast on the CPU
            checkpoint_sha = file_sha256(checkpoint)

            sequence = len(previous)
            buffered, buffered_rows = [], 0
            bar = tqdm(total=len(todo), unit="img", disable=not opts.progress, smoothing=0.1)
            rate_start = time.perf_counter()
            while in_flight:
                batch, result = in_flight.popleft()
                digits, chunk_statuses, errors, sizes, mtimes = result.get()
                submit()
                probs = spread_probs(predict(model, digits, device), chunk_statuses)
                buffered.append(results.build_rows(batch, chunk_statuses, errors, probs, sizes, mtimes,
                                                   checkpoint.name, checkpoint_sha))
                buffered_rows += len(batch)
                statuses.update(chunk_statuses)
                for path, status, error in zip(batch, chunk_statuses, errors, strict=True):
                    if status not in (images.OK, images.BLANK) and shown_errors < MAX_SHOWN_ERRORS:
                        log(f"{path}: {status}: {error}")
                        shown_errors += 1
                if buffered_rows >= PART_ROWS or not in_flight:
                    results.write_part(parts, sequence, buffered)
                    sequence += 1
                    buffered, buffered_rows = [], 0
                bar.update(len(batch))
            bar.close()
    except KeyboardInterrupt:
        raise UserError(f"interrupted; the rows written so far are kept in {parts}: "
                        "rerun the same command with --resume to continue", INTERRUPTED) from None
    rate_seconds = time.perf_counter() - rate_start

    rows = results.finish(parts, out, fmt)
    failed = sum(n for status, n in statuses.items() if status not in (images.OK, images.BLANK))
    if failed > shown_errors:
        log(f"{failed - shown_errors} more inputs could not be classified: see the status and error columns of {out}")
    return {
        "out": str(out),
        "format": fmt,
        "inputs": len(paths),
        "rows": rows,
        "classified_now": len(todo),
        "ok": statuses[images.OK],
        "blank": statuses[images.BLANK],
        "failed": failed,
        "statuses": dict(statuses),
        "seconds": time.perf_counter() - started,
        "images_per_second": len(todo) / rate_seconds if todo and rate_seconds > 0 else 0.0,
        "workers": workers,
        "device": str(device),
        "checkpoint": str(checkpoint),
    }


def cpu_count() -> int:
    """Cores this process may use (a container or taskset can allow fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def log(message: str) -> None:
    print(f"mnist-batch: {message}", file=sys.stderr)
