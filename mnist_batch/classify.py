"""classify, the local engine: folders of images -> one result file.

    discover paths -> decode + preprocess (worker processes) -> batches of 28x28 uint8
    -> model on the device -> softmax -> rows -> part files -> merge + atomic rename

The worker pool is forked before torch is imported: the workers stay small, and they
decode the first images while the main process is still loading torch and the model.
At most a few chunks are in flight, so memory stays flat whatever the number of inputs.
"""

import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from pathlib import Path

from mnist_batch import images, results
from mnist_batch.discover import discover
from mnist_batch.errors import INTERRUPTED, UserError, log
from mnist_batch.options import ClassifyOptions, check_options

MAX_SHOWN_ERRORS = 10  # per-file error lines on stderr; the rest are in the result file
PART_BATCHES = 4  # model batches per part file: 4,096 rows at the default batch size
CHUNKS_PER_WORKER = 4  # chunks in flight per worker: enough to hide the model's turn, little memory


def classify(opts: ClassifyOptions, started: float | None = None) -> results.ClassifySummary:
    """Run the whole job; `started` is when the command began (perf_counter), for its wall time."""
    started = time.perf_counter() if started is None else started
    check_options(opts)
    out = results.new_output_path(opts.out_dir) if opts.out_dir else Path(opts.out)
    fmt = results.output_format(out, opts.format)
    paths = discover(list(opts.inputs), opts.files_from, opts.include, opts.exclude)
    if opts.incremental:
        paths = new_or_changed(paths, opts.out_dir)
        if not paths:
            return results.ClassifySummary.of(
                Counter(), out=None, format=None, inputs=0, classified_now=0,
                seconds=time.perf_counter() - started, pipeline_images_per_second=0.0, workers=0,
                device="", checkpoint=None)
    elif not paths:
        log(f"no image files found in {', '.join(opts.inputs) or opts.files_from}; writing an empty result")

    run = results.RunFiles(out, fmt, resume=opts.resume, part_rows=PART_BATCHES * opts.batch_size)
    todo = [path for path in paths if path not in run.done]
    if run.done:
        log(f"resuming: {len(paths) - len(todo)} of {len(paths)} inputs already have rows")
    workers = opts.workers or cpu_count()
    try:
        inference, pipeline_rate = classify_paths(todo, run, opts, workers)
    except KeyboardInterrupt:
        raise UserError(f"interrupted; the rows written so far are kept in {run.parts}: "
                        "rerun the same command with --resume to continue", INTERRUPTED) from None
    counts = run.finish()
    return results.ClassifySummary.of(
        counts, out=str(out), format=fmt, inputs=len(paths), classified_now=len(todo),
        seconds=time.perf_counter() - started, pipeline_images_per_second=pipeline_rate, workers=workers,
        device=str(inference.device), checkpoint=str(inference.checkpoint))


def new_or_changed(paths: list[str], out_dir: Path) -> list[str]:
    """Incremental mode: the inputs that no result file in out_dir covers yet."""
    results.remove_crashed_runs(out_dir)
    covered = results.covered_inputs(out_dir)
    new = [path for path in paths if file_key(path) not in covered]
    log(f"incremental: {len(new)} new or changed of {len(paths)} inputs; the rest already have rows in {out_dir}")
    return new


def classify_paths(paths: list[str], run: results.RunFiles, opts: ClassifyOptions, workers: int):
    """Decode in worker processes, predict in this one, add the rows to `run`.
    Returns the loaded model and the steady-state rate (first batch through the model to the last)."""
    # Small runs still get every worker busy; large runs use whole batches.
    chunk_size = max(16, min(opts.batch_size, -(-len(paths) // (workers * CHUNKS_PER_WORKER)) if paths else 16))
    path_chunks = iter([paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)])
    with pool_context().Pool(workers, initializer=ignore_interrupts) as pool:
        in_flight = deque()

        def submit_next() -> None:
            path_chunk = next(path_chunks, None)
            if path_chunk is not None:
                in_flight.append(pool.apply_async(images.preprocess_chunk, (path_chunk, opts.max_pixels)))

        for _ in range(workers * CHUNKS_PER_WORKER):
            submit_next()
        inference = load_model(opts)  # while the workers decode the first chunks
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", disable=not opts.progress, smoothing=0.1)
        errors_shown = failed = 0
        rate_start = time.perf_counter()
        while in_flight:
            chunk = in_flight.popleft().get()
            submit_next()
            ok = [status == images.OK for status in chunk.statuses]
            probs = inference.probabilities(chunk.digits, ok)
            run.add(results.build_rows(chunk, probs, inference.name, inference.sha256))
            for path, item in zip(chunk.paths, chunk.inputs, strict=True):
                if images.is_failed(item.status):
                    failed += 1
                    if errors_shown < MAX_SHOWN_ERRORS:
                        log(f"{path}: {item.status}: {item.error}")
                        errors_shown += 1
            bar.update(len(chunk.paths))
        bar.close()
    rate_seconds = time.perf_counter() - rate_start
    if failed > errors_shown:
        log(f"{failed - errors_shown} more inputs could not be classified: "
            f"see the status and error columns of {run.out}")
    return inference, len(paths) / rate_seconds if paths and rate_seconds > 0 else 0.0


def load_model(opts: ClassifyOptions):
    import torch

    from mnist_batch.model import Inference

    inference = Inference(opts.checkpoint, opts.device)
    if inference.device.type == "cpu":
        # The workers already keep the cores busy; more torch threads would only contend.
        torch.set_num_threads(1)
    return inference


def file_key(path: str) -> tuple | None:
    """What a result row records of an input file: path, size and modification time."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return path, info.st_size, info.st_mtime_ns


def ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and keeps what is written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_context():
    # fork is what makes the early start cheap; where it is missing, spawn works too.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def cpu_count() -> int:
    """Cores this process may use (a container or taskset can allow fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
