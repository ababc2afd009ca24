"""classify, the local engine: folders of images -> one result file.

    discover paths -> decode + preprocess (worker processes) -> batches of 28x28 uint8
    -> model on the device -> softmax -> rows -> part files -> merge + atomic rename

The worker pool is forked first, before the walk and before the model's runtime (ONNX Runtime
on the CPU, torch on a GPU) is imported: the workers stay small whatever the number of inputs,
and they decode the first images while the main process is still loading the model.
At most a few chunks are in flight, so memory stays flat whatever the number of inputs.
A worker that dies is noticed at once and replaced (DecodePool); the run goes on.
"""

import gc
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

# errors as a module too: errors.interrupt_pending is set after import, and read through it
from mnist_batch import errors, records, results, run_files, storage
from mnist_batch.cores import cpu_count
from mnist_batch.discover import discover, file_ids
from mnist_batch.errors import (
    INTERRUPTED,
    USAGE,
    UserError,
    defer_stop_signals,
    end_deferral,
    log,
    raise_if_interrupted,
    shown,
)
from mnist_batch.options import ClassifyOptions, check_options

MAX_SHOWN_ERRORS = 10  # per-file error lines on stderr; the rest are in the result file
PART_BATCHES = 4  # model batches per part file: 4,096 rows at the default batch size
CHUNKS_PER_WORKER = 4  # chunks in flight per worker: enough to hide the model's turn, little memory
# ... or more, up to this many images (50 MB of digits): the workers decode all of a small run
# while torch loads, and the model then has the cores to itself.
AHEAD_IMAGES = 65_536
# Workers yield the cores to the main process: its torch import and the model come first, the
# workers decode ahead on what is left (they wait on the model anyway once the window is full).
WORKER_NICENESS = 5
WAIT_SECONDS = 0.5  # the progress bar is redrawn at least this often; slow images get chunks this long
SPOOL_PREFIX = "mnist-batch-chunks-"  # + the run's process id: the decoded chunks on their way to it
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def classify(opts: ClassifyOptions, started: float | None = None) -> run_files.ClassifySummary:
    """Run the whole job; `started` is when the command began (perf_counter), for its wall time."""
    started = time.perf_counter() if started is None else started
    check_options(opts)
    fmt = run_files.output_format(Path(opts.out or "predictions.parquet"), opts.format)
    remote = opts.out_dir or opts.out if storage.is_uri(opts.out_dir or opts.out) else None
    if remote:  # the run's files live in a local folder; the finished file is uploaded (storage)
        local_dir = storage.cache_folder(remote)
        opts = replace(opts, out=local_dir / os.path.basename(opts.out.rstrip("/")) if opts.out else None,
                       out_dir=local_dir if opts.out_dir else None)
    else:  # resolved once: a symlinked folder swapped mid-run must not split the run's files
        opts = replace(opts, out=pinned(opts.out, parent=True), out_dir=pinned(opts.out_dir))
    try:
        # An object store has no lock: this one keeps out only other runs on this machine (README).
        with run_files.OutputLock(opts.out_dir or opts.out, folder=opts.out_dir is not None):
            if remote:
                check_local_cache(opts, remote)
            else:
                check_options(opts)  # again under the lock: a run that held it may have written --out meanwhile
            if remote and opts.out_dir:
                storage.mirror_results(remote, opts.out_dir)
            # Named under the lock: after every result file there, whatever the clock says
            out = run_files.new_output_path(opts.out_dir) if opts.out_dir else Path(opts.out)
            return classify_locked(opts, out, fmt, started, remote)
    except KeyboardInterrupt:  # before the run had parts: while locking, listing the inputs
        raise UserError("interrupted before any input was classified; nothing was kept: "
                        "rerun the command to start again", INTERRUPTED) from None


def check_local_cache(opts: ClassifyOptions, remote: str) -> None:
    """An output URI's local folder: no merged file may be left there from a run whose upload failed
    unless --resume or --overwrite says what to do with it."""
    if opts.out is not None and Path(opts.out).exists() and not (opts.overwrite or opts.resume):
        raise UserError(f"{shown(opts.out)} holds the result of an earlier run for {shown(remote)} that was not "
                        "uploaded: rerun with --resume to upload it, or --overwrite to start afresh", USAGE)


def publisher(out: Path, remote: str | None, folder_output: bool):
    """What RunFiles.finish does with the merged file: nothing for a local output; for an output
    URI, upload it (one put: whole or not at all). An --out's local copy then goes; an --out-dir's
    stays, as the mirror later incremental runs read."""
    if remote is None:
        return None
    target = storage.join(remote, out.name) if folder_output else remote

    def publish(local: Path) -> None:
        try:
            storage.upload(local, target)
        except UserError as error:
            rerun = "a later incremental run classifies them again" if folder_output else \
                "rerun the same command with --resume to upload them"
            raise UserError(f"{error}; the rows are kept in {shown(run_files.parts_dir(local))}: {rerun}") from None
        if not folder_output:
            local.unlink()

    return publish


def classify_locked(opts: ClassifyOptions, out: Path, fmt: str, started: float,
                    remote: str | None = None) -> run_files.ClassifySummary:
    # Forked before the walk: a worker forked from a process that holds a million paths maps them
    # all (its memory counts them, and its garbage collector copies the pages it touches).
    storage.load_drivers(opts.inputs)  # ... but after the store's driver, which the walk would load
    pool = DecodePool(opts.workers or cpu_count(), opts.max_pixels)
    try:
        raise_if_interrupted()  # a stop signal kept while the pool was made
        return classify_inputs(opts, out, fmt, started, remote, pool)
    finally:
        pool.close(cancel=True)  # stopped already unless the run ended early or with an error


def classify_inputs(opts: ClassifyOptions, out: Path, fmt: str, started: float, remote: str | None,
                    pool: "DecodePool") -> run_files.ClassifySummary:
    objects: dict = {}  # (size, mtime_ns) of the object-store inputs, as listed
    paths = discover(list(opts.inputs), opts.files_from, opts.include, opts.exclude, objects)
    check_not_an_input(out, paths)
    if opts.incremental:
        paths = new_or_changed(paths, opts.out_dir, objects, remote or opts.out_dir)
        if remote:
            storage.set_aside_in_store(remote, opts.out_dir)
        if not paths:
            return run_files.ClassifySummary.of(
                Counter(), out=None, format=None, inputs=0, classified_now=0,
                seconds=time.perf_counter() - started, pipeline_images_per_second=0.0, workers=0,
                device="", checkpoint=None)
    elif not paths:
        log(f"no image files to classify in {', '.join(map(shown, opts.inputs)) or shown(opts.files_from)}; "
            "writing an empty result")

    run = run_files.RunFiles(out, fmt, resume=opts.resume, part_rows=PART_BATCHES * opts.batch_size,
                           publish=publisher(out, remote, opts.out_dir is not None))
    todo = paths
    if run.done:
        opts = same_checkpoint(opts, run)
        ids = file_ids(paths)  # a row is kept or redone by its file, however the path is spelt
        dropped = run.keep_only(set(ids))
        if dropped:
            log(f"resuming: dropping {dropped} rows of inputs that are no longer among this command's inputs")
        log(f"resuming: {len(run.done)} of {len(paths)} inputs already have rows")
        todo = [path for path, file_id in zip(paths, ids, strict=True) if file_id not in run.done]
    try:
        inference, pipeline_rate = classify_paths(todo, run, opts, pool)
        raise_if_interrupted()
        counts = run.finish()
    except KeyboardInterrupt:
        raise interrupted(run, len(paths)) from None
    except Exception:
        if errors.interrupt_pending:  # a stop signal that a library raised as an error of its own
            raise interrupted(run, len(paths)) from None
        raise
    shown_out = storage.join(remote, out.name) if remote and opts.out_dir else remote or str(out)
    return run_files.ClassifySummary.of(
        counts, out=shown_out, format=fmt, inputs=len(paths), classified_now=len(todo),
        seconds=time.perf_counter() - started, pipeline_images_per_second=pipeline_rate, workers=pool.workers,
        device=str(inference.device), checkpoint=str(inference.checkpoint))


def interrupted(run: run_files.RunFiles, inputs: int) -> UserError:
    """Ctrl-C or SIGTERM: keep the rows classified so far and say exactly what was kept."""
    run.flush()  # the rows not yet in a part (later signals are ignored: errors.stop_signal)
    run.discard_if_empty()
    if not run.kept_rows:
        return UserError(f"interrupted before any of the {inputs:,} inputs was classified; nothing was kept: "
                         "rerun the command to start again", INTERRUPTED)
    return UserError(f"interrupted; {run.kept_rows:,} rows of {inputs:,} inputs are kept in {shown(run.parts)}: "
                     "rerun the same command with --resume to classify the rest", INTERRUPTED)


def pinned(path: Path | None, parent: bool = False) -> Path | None:
    """`path` with the symlinks of its folders (of the folder itself, or with `parent`, of the
    folder it lies in) resolved now, so that the lock, the parts and the result all land in the
    folder the run started with; a path without such links stays as the user spelt it."""
    if path is None:
        return None
    folder = Path(path).parent if parent else Path(path)
    real = os.path.realpath(folder)
    if real == os.path.abspath(folder):
        return path
    return Path(real) / Path(path).name if parent else Path(real)


def check_not_an_input(out: Path, paths: list[str]) -> None:
    """--out must never replace one of the run's own inputs (with --overwrite it would)."""
    if not out.exists():
        return
    for path in paths:
        if os.path.basename(path) == out.name and os.path.exists(path) and os.path.samefile(path, out):
            raise UserError(f"--out {shown(out)} is one of the inputs; give another file name", USAGE)


def new_or_changed(paths: list[str], out_dir: Path, objects: dict, named: str | Path) -> list[str]:
    """Incremental mode: the inputs that no result file in out_dir covers yet (`objects`: the
    listed size and mtime of object-store inputs; `named`: the --out-dir as the user gave it)."""
    run_files.remove_crashed_runs(out_dir)  # safe: this run holds out_dir's lock
    covered = run_files.covered_inputs(out_dir)
    new = [path for path, file_id in zip(paths, file_ids(paths), strict=True)
           if (((file_id, *objects[path]) if path in objects else file_key(path, file_id)) not in covered)]
    log(f"incremental: {len(new)} new, changed or to retry of {len(paths)} inputs; "
        f"the rest already have rows in {shown(named)}")
    return new


def same_checkpoint(opts: ClassifyOptions, run: run_files.RunFiles) -> ClassifyOptions:
    """--resume goes on with the checkpoint its rows were made with (by SHA-256: one file, one
    model's rows), or stops before any work. Returns the options with the checkpoint resolved."""
    from mnist_batch.checkpoints import checkpoint_not_found, file_sha256, resolve_checkpoint

    checkpoint = resolve_checkpoint(opts.checkpoint)
    if not checkpoint.is_file():
        raise checkpoint_not_found(checkpoint)
    check_kept_rows(run, checkpoint.name, file_sha256(checkpoint))
    # Rows are rejected by the threshold as they are made: the kept ones were judged by theirs.
    threshold = float(np.float32(opts.min_digit_score))  # as the min_digit_score column holds it
    other = (run.scan_parts().filter(pl.col("min_digit_score").ne_missing(threshold))
             .select("min_digit_score").head(1).collect())
    if other.height:
        kept = f"{other.item():.6g}"
        raise UserError(f"cannot resume: the rows kept in {shown(run.parts)} were judged with --min-digit-score "
                        f"{kept}, not {opts.min_digit_score:g}: rerun with --min-digit-score {kept} to finish that "
                        "run, or without --resume to start afresh", USAGE)
    return replace(opts, checkpoint=str(checkpoint))


def check_kept_rows(run: run_files.RunFiles, name: str, sha256: str) -> None:
    """Stop unless every row --resume keeps was made with the checkpoint of this SHA-256. Checked before
    any work, and again on the network as loaded: a checkpoint rewritten between the two would mix
    two models' rows."""
    kept = (run.scan_parts().filter(pl.col("checkpoint_sha256").ne_missing(sha256))
            .select("checkpoint", "checkpoint_sha256").head(1).collect())
    if kept.height:
        made_with, other = (shown(value) for value in kept.row(0))  # values from files: shown as they may be echoed
        raise UserError(f"cannot resume: the rows kept in {shown(run.parts)} were made with checkpoint {made_with} "
                        f"(sha256 {other[:12]}), not {shown(name)} (sha256 {sha256[:12]}): rerun with --checkpoint "
                        f"naming {made_with} to finish that run, or without --resume to start afresh", USAGE)


def classify_paths(paths: list[str], run: run_files.RunFiles, opts: ClassifyOptions, pool: "DecodePool"):
    """Decode on `pool`'s workers, predict in this process, add the rows to `run`.
    Returns the loaded model and the steady-state rate (first batch through the model to the last)."""
    # Small runs still get every worker busy; large runs use whole batches.
    spread_out = -(-len(paths) // (pool.workers * CHUNKS_PER_WORKER))
    chunk_size = max(16, min(opts.batch_size, spread_out) if paths else 16)
    decode = storage.preprocess_chunk if any(map(storage.is_uri, paths)) else records.preprocess_chunk
    pool.decode_all(paths, chunk_size, decode)  # decoding starts now, before the model loads
    from tqdm import tqdm

    bar = tqdm(total=len(paths), unit="img", disable=not opts.progress, smoothing=0.1, desc="loading the model")
    try:
        inference = load_model(opts)  # while the workers decode the first chunks
        raise_if_interrupted()  # Ctrl-C that fell into a finalizer while torch loaded: before any row
        if run.done:
            check_kept_rows(run, inference.name, inference.sha256)
        bar.set_description_str("classifying")
        errors_shown = failed = untimed = 0
        rate_start = time.perf_counter()
        def while_waiting() -> None:
            raise_if_interrupted()
            bar.refresh()

        for chunk in pool.chunks(while_waiting=while_waiting):
            run.add(results.predict_rows(chunk, inference, opts.min_digit_score))
            # Only the few inputs worth a line are visited one by one.
            for i in np.flatnonzero(chunk.failed)[: MAX_SHOWN_ERRORS - errors_shown].tolist():
                log(f"{shown(results.stored_path(chunk.paths[i]))}: {records.STATUSES[chunk.statuses[i]]}: "
                    f"{chunk.errors[i]}")
                errors_shown += 1
            failed += int(np.count_nonzero(chunk.failed))
            untimed_here = np.flatnonzero(chunk.sized & ~chunk.timed)  # stat'ed, but its time does not fit
            for i in untimed_here[: max(MAX_SHOWN_ERRORS - untimed, 0)].tolist():
                log(f"{shown(results.stored_path(chunk.paths[i]))}: its modification time is outside the years "
                    "1677-2262 that file_mtime_ns holds; stored as null")
            untimed += len(untimed_here)
            bar.update(len(chunk.paths))
            raise_if_interrupted()
        pool.close()
    except BaseException:
        pool.close(cancel=True)
        bar.leave = False  # closing clears the bar: no stale bar under the error line
        raise
    finally:
        bar.close()
    rate_seconds = time.perf_counter() - rate_start
    if untimed > MAX_SHOWN_ERRORS:
        log(f"{untimed - MAX_SHOWN_ERRORS} more inputs have a modification time outside 1677-2262: "
            f"null in {shown(run.out)}")
    if failed > errors_shown:
        log(f"{failed - errors_shown} more inputs could not be classified: "
            f"see the status and error columns of {shown(run.out)}")
    return inference, len(paths) / rate_seconds if paths and rate_seconds > 0 else 0.0


class DecodePool:
    """Worker processes decoding chunks of paths, with a bounded window of chunks in flight.

    A worker that dies (the OOM killer, a decoder segfault, kill -9) breaks the pool at once.
    The pool is restarted and each lost chunk is retried as two halves, and so on down to one
    file per task; a file whose one-file task is lost too is decoded alone, and if its worker
    dies even then, it gets a `crashed` row. Every path comes out exactly once, in one chunk or
    another."""

    def __init__(self, workers: int, max_pixels: int):
        """Forks the workers now; they wait for decode_all."""
        self.workers, self.max_pixels = workers, max_pixels
        self.spool = make_spool()
        self.paths: list[str] = []
        self.decode = records.preprocess_chunk
        self.chunk_size = self.largest_chunk = 16
        self.submitted = 0  # paths[:submitted] have gone to the workers
        self.retries: deque[list[str]] = deque()  # halves of lost chunks
        self.restarts = 0
        self.alone: deque[str] = deque()  # files lost in a one-file task: run with nothing beside them
        self.in_flight: deque[tuple[list[str], Future, bool]] = deque()  # (paths, future, ran alone)
        self.images_ahead = 0  # the paths in self.in_flight, counted as they come and go
        self.start()

    def decode_all(self, paths: list[str], chunk_size: int, decode=records.preprocess_chunk) -> None:
        """Start decoding `paths` in chunks of `chunk_size`; chunks() gives them back."""
        self.paths, self.decode = paths, decode
        self.chunk_size = self.largest_chunk = chunk_size
        self.fill()

    def start(self) -> None:
        # A stop signal in the middle of making the pool would leave a half-made finalizer of
        # multiprocessing's, which prints a traceback at exit: it is kept until the pool is whole,
        # and raised by the next raise_if_interrupted().
        # The workers never collect what this process holds when they are forked: garbage an
        # extension left here (a Ray job's object references) crashed a worker that finalised it.
        # (Nor do they touch its pages: they stay shared.)
        defer_stop_signals()
        gc.freeze()
        try:
            self.executor = ProcessPoolExecutor(self.workers, mp_context=pool_context(),
                                                initializer=init_worker, initargs=(os.getpid(),))
            self.executor.submit(os.getpid)  # a pool forks its workers on the first task, not before
        finally:
            gc.unfreeze()
            end_deferral()
        self.fill()

    def fill(self) -> None:
        if self.alone:  # a suspect runs by itself, so that a crash is its own
            if not self.in_flight:
                self.submit([self.alone.popleft()], alone=True)
            return
        window = self.workers * CHUNKS_PER_WORKER
        # Retries go a window at a time: a file that crashes its worker again loses only the tasks
        # beside it, not a whole read-ahead of files (which one file per task took minutes to redo).
        while self.retries and len(self.in_flight) < window:
            self.submit(self.retries.popleft())
        while (not self.retries and self.submitted < len(self.paths)
               and (len(self.in_flight) < window or self.images_ahead < AHEAD_IMAGES)):
            self.submit(self.paths[self.submitted : self.submitted + self.chunk_size])
            self.submitted += len(self.in_flight[-1][0])

    def submit(self, paths: list[str], alone: bool = False) -> None:
        try:
            future = self.executor.submit(timed, self.decode, paths, self.max_pixels, self.spool)
        except BrokenProcessPool as broken:  # a worker died while none of our chunks was waiting
            future = Future()
            future.set_exception(broken)
        self.in_flight.append((paths, future, alone))
        self.images_ahead += len(paths)

    def chunks(self, while_waiting=lambda: None):
        """DecodedChunks as they come; `while_waiting` is called every half second of waiting."""
        while self.in_flight:
            paths, future, alone = self.in_flight[0]
            try:
                chunk, seconds = unspooled(future.result(timeout=WAIT_SECONDS))
            except TimeoutError:
                while_waiting()
                continue
            except BrokenProcessPool:
                crashed = self.restart()
                if crashed:
                    yield records.DecodedChunk.of(crashed, [records.failed(path, "crashed", CRASHED)
                                                            for path in crashed])
                continue
            self.in_flight.popleft()
            self.images_ahead -= len(paths)
            if len(paths) == self.chunk_size and seconds > 0:
                # Chunks of about WAIT_SECONDS each keep the progress bar moving on slow images.
                self.chunk_size = max(16, min(self.largest_chunk, int(len(paths) * WAIT_SECONDS / seconds)))
            self.fill()
            yield chunk

    def restart(self) -> list[str]:
        """After a worker died: keep what finished, requeue what was lost, start fresh workers.
        Returns the files that were decoded alone when their worker died: they get `crashed` rows."""
        self.executor.shutdown(wait=True)  # a broken pool resolves every future before it stops
        if not self.restarts:  # a file that kills its worker does so at every halving: said once
            log("a decoding worker died (killed, out of memory, or a decoder crash); "
                "restarting the workers and retrying the lost files in smaller chunks")
        self.restarts += 1
        crashed, finished = [], deque()
        for paths, future, alone in self.in_flight:
            if future.exception() is None:
                finished.append((paths, future, alone))
            elif alone:
                crashed.extend(paths)
            elif len(paths) == 1:
                self.alone.extend(paths)
            else:
                half = (len(paths) + 1) // 2
                self.retries.extend((paths[:half], paths[half:]))
        self.in_flight = finished
        self.images_ahead = sum(len(paths) for paths, _, _ in finished)
        self.start()
        return crashed

    def close(self, cancel: bool = False) -> None:
        """Stop the workers; `cancel`: at once, dropping queued chunks (Ctrl-C, an error)."""
        self.executor.shutdown(wait=not cancel, cancel_futures=cancel)
        shutil.rmtree(self.spool, ignore_errors=True)


CRASHED = "the worker process died while decoding this file, twice (a decoder crash or out of memory)"


def timed(decode, paths: list[str], max_pixels: int, spool: str) -> str | tuple[records.DecodedChunk, float]:
    """Worker task: a chunk decoded, and the seconds it took, spooled (or as they are, if the
    spool has no room)."""
    began = time.perf_counter()
    chunk = decode(paths, max_pixels)
    result = chunk, time.perf_counter() - began
    try:
        return spooled(result, spool)
    except OSError:
        return result


def make_spool() -> str:
    """A private folder (0700) for the workers' results, named with this process's id."""
    sweep_spools()
    try:
        return tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-")
    except OSError as error:
        raise UserError(f"cannot make a temporary folder in {tempfile.gettempdir()} ({error.strerror}): "
                        "set TMPDIR to a writable folder") from None


def sweep_spools() -> None:
    """Removes the spools of runs killed outright (kill -9 leaves them no time to clean up): folders
    of this user, not links, whose process is gone. Another user's, or a live one's, stay."""
    for entry in os.scandir(tempfile.gettempdir()):
        if not entry.name.startswith(SPOOL_PREFIX):
            continue
        pid = entry.name.removeprefix(SPOOL_PREFIX).split("-")[0]
        if not pid.isdigit():
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:  # a process of another user, or the folder went meanwhile
            pass


def spooled(result: tuple, spool: str) -> str:
    """The worker's result written to a file in the run's spool folder, and the file's name
    returned instead. A worker killed (out of memory, kill -9) while it sends a result larger than
    a pipe's buffer leaves half a message in the pool's result pipe, and the pool's reader then
    waits for the rest forever: a file name is sent in one write, which a pipe keeps whole."""
    handle, path = tempfile.mkstemp(dir=spool, suffix=".chunk")
    with os.fdopen(handle, "wb") as file:
        pickle.dump(result, file, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def unspooled(result: str | tuple) -> tuple[records.DecodedChunk, float]:
    if not isinstance(result, str):
        return result
    with open(result, "rb") as file:
        data = file.read()
    os.unlink(result)
    return pickle.loads(data)


def load_model(opts: ClassifyOptions):
    from mnist_batch import onnx_inference

    return onnx_inference.load_inference(opts.checkpoint, opts.device, cpu_threads=cpu_count())


def file_key(path: str, file_id: str) -> tuple | None:
    """What a result row records of an input file: its identity, size and modification time."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return file_id, info.st_size, records.mtime_ns(info)


def init_worker(parent: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the main process, which stops them and keeps what is written.
    A worker whose main process dies (kill -9) dies with it, quietly, instead of waiting on
    its queue forever or printing a BrokenPipeError."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler: a worker has nothing to clean up
    os.nice(WORKER_NICENESS)
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def pool_context():
    # fork is what makes the early start cheap; where it is missing, spawn works too.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
