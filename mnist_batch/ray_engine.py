"""classify on a Ray cluster (Ray Data's batch-inference shape), with the same stages as
the local engine:

    paths and object URIs, listed as the local engine does -> CPU tasks: storage.preprocess_chunk
    -> actor pool, the checkpoint loaded once per actor: model.Inference + results.build_rows
    -> Parquet parts in a directory (written to a temporary one, then renamed; on an object
       store copied into place, then marked complete by a _SUCCESS object)

Nothing here preprocesses, predicts or builds rows itself, so a file gives the same row
here as in the local engine.
"""

import logging
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from mnist_batch import records, results, run_files, storage
from mnist_batch.discover import discover, file_ids
from mnist_batch.errors import USAGE, UserError, shown
from mnist_batch.files import temporary_name, write_folder_atomic
from mnist_batch.options import ClassifyOptions, RayOptions, check_options

STAGE_SCHEMA = pa.schema([
    ("path", pa.string()), ("file_id", pa.string()),
    ("status", pa.uint8()),  # records.STATUSES code
    ("error", pa.string()), ("file_size", pa.int64()), ("file_mtime_ns", pa.int64()),
    ("digit", pa.binary()),  # the 28x28 uint8 digit's 784 bytes; empty unless status is ok
    ("other_way", pa.binary()),  # the digit read the other way round (records.DecodedChunk), or empty
])
DIGIT_BYTES = 28 * 28


def stage_table(chunk: records.DecodedChunk) -> pa.Table:
    """The CPU stage's output: one row per input, each OK row carrying its digit."""
    n = len(chunk.paths)
    errors = [None] * n
    for i, error in chunk.errors.items():
        errors[i] = error
    has_other_way = np.zeros(n, bool)
    has_other_way[chunk.other_way_rows] = True
    columns = [chunk.paths, chunk.ids, chunk.statuses, errors, pa.array(chunk.sizes, mask=~chunk.sized),
               pa.array(chunk.mtimes, mask=~chunk.timed), digit_column(chunk.digits, chunk.ok),
               digit_column(chunk.other_ways, has_other_way)]
    return pa.Table.from_arrays([pa.array(column, field.type) if not isinstance(column, pa.Array) else column
                                 for column, field in zip(columns, STAGE_SCHEMA, strict=True)], schema=STAGE_SCHEMA)


def digit_column(digits: np.ndarray, present: np.ndarray) -> pa.Array:
    """A binary column of 28x28 digits, one for each row where `present`, in order, and empty
    elsewhere: the digits' bytes are the column's, only the offsets are per row."""
    offsets = np.zeros(len(present) + 1, np.int32)
    np.cumsum(present * DIGIT_BYTES, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(present), [None, pa.py_buffer(offsets),
                                                             pa.py_buffer(np.ascontiguousarray(digits))])


def digits_of(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """digit_column's digits, (k, 28, 28) uint8, and the rows that hold one."""
    digit = column.combine_chunks()
    offsets = np.frombuffer(digit.buffers()[1], np.int32)[digit.offset : digit.offset + len(digit) + 1]
    data = np.frombuffer(digit.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(-1, 28, 28), np.flatnonzero(np.diff(offsets))


def chunk_of(table: pa.Table) -> records.DecodedChunk:
    """A stage table back into the chunk the stages take."""
    error = table.column("error")
    failed = np.flatnonzero(error.is_valid().to_numpy(zero_copy_only=False))

    def valid(name: str) -> tuple[np.ndarray, np.ndarray]:
        column = table.column(name)
        return (column.fill_null(0).to_numpy().astype(np.int64, copy=False),
                column.is_valid().to_numpy(zero_copy_only=False))

    return records.DecodedChunk(
        table.column("path").to_pylist(), table.column("file_id").to_pylist(),
        table.column("status").to_numpy().astype(np.uint8, copy=False),
        dict(zip(failed.tolist(), error.drop_null().to_pylist(), strict=True)),
        *valid("file_size"), *valid("file_mtime_ns"), digits_of(table.column("digit"))[0],
        *digits_of(table.column("other_way")))


def preprocess_paths(batch: pa.Table, max_pixels: int) -> pa.Table:
    """Local paths and object URIs: read, decode and preprocess exactly as the local engine's workers do.
    Their file_id comes with them, resolved by the driver (a worker's current folder may differ)."""
    return stage_table(storage.preprocess_chunk(batch.column("path").to_pylist(), max_pixels,
                                                batch.column("file_id").to_pylist()))


class Predictor:
    """One per actor: loads the checkpoint once, then turns stage tables into result rows."""

    def __init__(self, checkpoint: str, device: str, min_digit_score: float):
        from mnist_batch import onnx_inference

        self.inference = onnx_inference.load_inference(checkpoint, device)
        self.min_digit_score = min_digit_score

    def __call__(self, batch: pa.Table) -> pa.Table:
        return results.predict_rows(chunk_of(batch), self.inference, self.min_digit_score).to_arrow()


def classify_ray(opts: ClassifyOptions, ray_opts: RayOptions = RayOptions(),
                 started: float | None = None) -> run_files.ClassifySummary:
    """Run classify as a Ray Data job; --out is a directory of Parquet parts."""
    started = time.perf_counter() if started is None else started
    if opts.out_dir is not None or opts.resume or opts.format not in (None, "parquet"):
        raise UserError("--engine ray writes a directory of Parquet parts: give --out DIR "
                        "(no --out-dir, --resume or --format csv)", USAGE)
    check_options(opts, folder_output=True)
    out = opts.out if storage.is_uri(opts.out) else Path(opts.out)
    # An object store has no lock: a URI's keeps out only other runs on this machine (README).
    lock = storage.cache_folder(out) / "ray-output" if storage.is_uri(out) else out
    with run_files.OutputLock(lock):  # one run per output, as with the local engine
        check_options(opts, folder_output=True)  # again under the lock: the holder may have written --out
        return run_pipeline(opts, ray_opts, out, started)


def run_pipeline(opts: ClassifyOptions, ray_opts: RayOptions, out: Path, started: float) -> run_files.ClassifySummary:
    import ray

    from mnist_batch.checkpoints import checkpoint_not_found, resolve_checkpoint

    checkpoint = resolve_checkpoint(opts.checkpoint).resolve()
    if not checkpoint.is_file():
        raise checkpoint_not_found(checkpoint)

    if not ray.is_initialized():
        # --address, else $RAY_ADDRESS (ray.init reads it), else a local cluster on this machine
        ray.init(address=ray_opts.address, log_to_driver=False, include_dashboard=False,
                 logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = opts.progress
    logging.getLogger("ray.data").setLevel(logging.INFO if opts.progress else logging.ERROR)

    check_output_reaches_every_node(out, ray_opts, ray.nodes())
    paths = discover(list(opts.inputs), opts.files_from, opts.include, opts.exclude)
    dataset = ray.data.from_items([{"path": path, "file_id": file_id}
                                   for path, file_id in zip(paths, file_ids(paths), strict=True)])
    prepared = dataset.map_batches(preprocess_paths, batch_format="pyarrow", batch_size=opts.batch_size,
                                   fn_kwargs={"max_pixels": opts.max_pixels})

    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = ray_opts.actors or max(1, gpus)
    # Half a CPU per actor: it mostly waits for batches, and a resource request unlike the
    # decoding tasks' keeps Ray from fusing decoding into the actors.
    predicted = prepared.map_batches(
        Predictor, fn_constructor_args=(str(checkpoint), opts.device, opts.min_digit_score), batch_format="pyarrow",
        batch_size=opts.batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=0.5,
        num_gpus=1 if gpus else 0)
    pipeline_start = time.perf_counter()
    if storage.is_uri(out):
        write_to_store(predicted, out, opts.overwrite)
        written = pl.scan_parquet(storage.result_objects(out), glob=False)
    else:
        # local://: Ray Data runs the writes on the driver's node, so the parts land on its disk.
        scheme = "local://" if ray_opts.driver_out else ""
        write_folder_atomic(out, lambda tmp: predicted.write_parquet(scheme + str(tmp.resolve())))
        written = results.scan(out)
    pipeline_seconds = time.perf_counter() - pipeline_start

    counts = results.status_counts(written)
    rows = sum(counts.values())
    return run_files.ClassifySummary.of(
        counts, out=str(out), format="parquet", inputs=len(paths), classified_now=rows,
        seconds=time.perf_counter() - started, pipeline_images_per_second=rows / pipeline_seconds,
        workers=0, device=f"ray, {actors} actor(s)", checkpoint=str(checkpoint))


def check_output_reaches_every_node(out: str | Path, ray_opts: RayOptions, nodes: list[dict]) -> None:
    """Each node writes its own parts: to a local path they would land on each node's own disk,
    and the head would see only its share. Refused on a cluster of several nodes, unless the user
    says the path is on a file system every node mounts."""
    alive = sum(1 for node in nodes if node.get("Alive"))
    if alive > 1 and not storage.is_uri(out) and not (ray_opts.shared_out or ray_opts.driver_out):
        raise UserError(f"--out {shown(out)}: this Ray cluster has {alive} nodes, and each would write its parts "
                        f"to its own disk; give an object-store URI (s3://bucket/results/), local://{shown(out)} to "
                        "write every part on this node, or add --shared-out if the path is on a file system every "
                        "node mounts (NFS)", USAGE)


def write_to_store(dataset, uri: str, overwrite: bool) -> None:
    """The parts under a hidden temporary prefix beside `uri` (`.NAME.tmp-*`: no reader of `uri`
    sees them), then copied into `uri`, then an empty `_SUCCESS` object marks the folder complete,
    and the temporary prefix goes. An object store cannot rename a folder: while the copies run,
    `uri` is incomplete, and `_SUCCESS` is what says that it no longer is (README)."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = storage.filesystem(uri)
    parent, name = path.rstrip("/").rsplit("/", 1)
    tmp = f"{parent}/{temporary_name(name)}"
    try:
        # Through the same fsspec filesystem, so credentials and endpoint come from the same places.
        dataset.write_parquet(tmp, filesystem=PyFileSystem(FSSpecHandler(fs)))
        parts = sorted(fs.find(tmp))
        if overwrite and fs.exists(path):
            fs.rm(path, recursive=True)
        for part in parts:
            fs.copy(part, f"{path.rstrip('/')}/{part.rsplit('/', 1)[1]}")
        fs.pipe_file(f"{path.rstrip('/')}/_SUCCESS", b"")
    except UserError:
        raise
    except Exception as error:  # each store's client raises its own types
        raise storage.store_error(uri, error) from None
    finally:
        try:
            fs.rm(tmp, recursive=True)
        except Exception:  # nothing was written there, or it is gone already
            pass
