"""classify on a Ray cluster (Ray Data's batch-inference shape), with the local engine's code.

    paths, or bytes read from URIs -> CPU tasks: classify.preprocess_chunk / images.load
    -> actor pool, the checkpoint loaded once per actor: classify.predict + results.build_rows
    -> Parquet parts in a directory (written to a temporary one, then renamed)

Nothing here preprocesses, predicts or builds rows itself, so a file gives the same row
here as in the local engine.
"""

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from mnist_batch import images, results
from mnist_batch.classify import ClassifyOptions, predict, preprocess_chunk, spread_probs, stack_digits
from mnist_batch.discover import discover
from mnist_batch.errors import USAGE, UserError

STAGE_SCHEMA = pa.schema([
    ("path", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("file_size", pa.int64()), ("file_mtime_ns", pa.int64()),
    ("digit", pa.binary()),  # the 28x28 uint8 digit's 784 bytes; empty unless status is ok
])


def stage_table(paths, statuses, errors, sizes, mtimes, digits: np.ndarray) -> pa.Table:
    """The CPU stage's output: one row per input, each ok row carrying its digit."""
    ok_digits = iter(digits)
    cells = [next(ok_digits).tobytes() if status == images.OK else b"" for status in statuses]
    columns = [paths, statuses, errors, sizes, mtimes, cells]
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, STAGE_SCHEMA, strict=True)],
                                schema=STAGE_SCHEMA)


def preprocess_paths(batch: pa.Table, max_pixels: int) -> pa.Table:
    """Local paths: read, decode and preprocess exactly as the local engine's workers do."""
    paths = batch.column("path").to_pylist()
    digits, statuses, errors, sizes, mtimes = preprocess_chunk(paths, max_pixels)
    return stage_table(paths, statuses, errors, sizes, mtimes, digits)


def preprocess_bytes(batch: pa.Table, max_pixels: int) -> pa.Table:
    """Files that Ray read from URIs (s3://, gs://, file://): decode and preprocess the bytes."""
    paths, blobs = batch.column("path").to_pylist(), batch.column("bytes").to_pylist()
    loaded = [images.load(blob, max_pixels) for blob in blobs]
    digits = stack_digits([digit for digit, _, _ in loaded if digit is not None])
    return stage_table(paths, [status for _, status, _ in loaded], [error for _, _, error in loaded],
                       [len(blob) for blob in blobs], [None] * len(blobs), digits)


class Predictor:
    """One per actor: loads the checkpoint once, then turns stage tables into result rows."""

    def __init__(self, checkpoint: str, device: str):
        import torch

        from mnist_batch.model import file_sha256, load_checkpoint, pick_device

        self.device = pick_device(device)
        model, _ = load_checkpoint(Path(checkpoint), self.device)
        self.model = model.to(memory_format=torch.channels_last)
        self.name, self.sha256 = Path(checkpoint).name, file_sha256(Path(checkpoint))

    def __call__(self, batch: pa.Table) -> pa.Table:
        statuses = batch.column("status").to_pylist()
        cells = [cell for cell, status in zip(batch.column("digit").to_pylist(), statuses, strict=True)
                 if status == images.OK]
        digits = np.frombuffer(b"".join(cells), np.uint8).reshape(-1, 28, 28)
        probs = spread_probs(predict(self.model, digits, self.device), statuses)
        rows = results.build_rows(batch.column("path").to_pylist(), statuses, batch.column("error").to_pylist(),
                                  probs, batch.column("file_size").to_pylist(),
                                  batch.column("file_mtime_ns").to_pylist(), self.name, self.sha256)
        return rows.to_arrow()


def is_uri(item: str) -> bool:
    return "://" in item


def classify_ray(opts: ClassifyOptions) -> dict:
    """Run classify as a Ray Data job; --out is a directory of Parquet parts."""
    import ray

    from mnist_batch.model import DEFAULT_CHECKPOINT

    started = time.perf_counter()
    if opts.out is None or opts.out_dir is not None or opts.resume or opts.format not in (None, "parquet"):
        raise UserError("--engine ray writes a directory of Parquet parts: give --out DIR "
                        "(no --out-dir, --resume or --format csv)", USAGE)
    out = Path(opts.out)
    if out.exists() and not opts.overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it", USAGE)
    checkpoint = Path(opts.checkpoint or DEFAULT_CHECKPOINT).resolve()
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} not found; pass --checkpoint with a .safetensors file")

    if not ray.is_initialized():
        # --address, else $RAY_ADDRESS (ray.init reads it), else a local cluster on this machine
        ray.init(address=opts.address, log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = opts.progress
    logging.getLogger("ray.data").setLevel(logging.INFO if opts.progress else logging.ERROR)

    uris = [item for item in opts.inputs if is_uri(item)]
    local = [item for item in opts.inputs if not is_uri(item)]
    stages = []
    if local or opts.files_from:
        paths = discover(local, opts.files_from, opts.include, opts.exclude)
        dataset = ray.data.from_items([{"path": path} for path in paths])
        stages.append(dataset.map_batches(preprocess_paths, batch_format="pyarrow", batch_size=opts.batch_size,
                                          fn_kwargs={"max_pixels": opts.max_pixels}))
    if uris:
        dataset = ray.data.read_binary_files(uris, include_paths=True)
        stages.append(dataset.map_batches(preprocess_bytes, batch_format="pyarrow", batch_size=opts.batch_size,
                                          fn_kwargs={"max_pixels": opts.max_pixels}))
    if not stages:
        raise UserError("no inputs: give image files, folders or URIs, or --files-from LIST", USAGE)
    prepared = stages[0].union(*stages[1:]) if len(stages) > 1 else stages[0]

    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = opts.actors or max(1, gpus)
    # Half a CPU per actor: it mostly waits for batches, and a resource request unlike the
    # decoding tasks' keeps Ray from fusing decoding into the actors.
    predicted = prepared.map_batches(
        Predictor, fn_constructor_args=(str(checkpoint), opts.device), batch_format="pyarrow",
        batch_size=opts.batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=0.5,
        num_gpus=1 if gpus else 0)

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        predicted.write_parquet(str(tmp.resolve()))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    counts = dict(pl.scan_parquet(out).group_by("status").len().collect().iter_rows())
    failed = sum(n for status, n in counts.items() if status not in (images.OK, images.BLANK))
    rows = sum(counts.values())
    seconds = time.perf_counter() - started
    return {"out": str(out), "format": "parquet", "inputs": rows, "rows": rows, "ok": counts.get(images.OK, 0),
            "blank": counts.get(images.BLANK, 0), "failed": failed, "statuses": counts, "seconds": seconds,
            "images_per_second": rows / seconds, "device": f"ray, {actors} actor(s)", "checkpoint": str(checkpoint)}
