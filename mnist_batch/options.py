"""What a classify run is asked to do, and the check both engines run before any work.

The local engine (classify.py) and the Ray engine (ray_engine.py) take the same
ClassifyOptions; Ray's own settings travel apart in RayOptions.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from mnist_batch.cores import cpu_count
from mnist_batch.errors import USAGE, UserError
from mnist_batch.files import special_file, special_output
from mnist_batch.reading import DEFAULT_MAX_PIXELS
from mnist_batch.storage import is_uri

DEVICES = ("auto", "cpu", "cuda", "mps")
# Decoding processes: beyond one per core they only help where reads wait (a network file system).
MOST_WORKERS_PER_CORE = 8


@dataclass(frozen=True)
class ClassifyOptions:
    inputs: tuple[str, ...]
    out: Path | str | None = None  # a str only for an object-store URI (storage.output_location)
    out_dir: Path | str | None = None  # instead of out: a new time-named Parquet file in this folder (or prefix)
    incremental: bool = False  # with out_dir: skip inputs that a result file there already covers
    files_from: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    format: str | None = None
    checkpoint: str | None = None  # a path or a bundled name; None: the bundled default
    device: str = "auto"
    workers: int = 0  # 0: one per core
    batch_size: int = 1024
    overwrite: bool = False
    resume: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_digit_score: float = 0.25  # below it a row is not_digit (results.DEFAULT_MIN_DIGIT_SCORE)
    progress: bool = True


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # Ray cluster address (else $RAY_ADDRESS, else a local cluster)
    actors: int = 0  # predictor actors (0: one per GPU, or one)
    shared_out: bool = False  # a local --out is on a file system every node mounts (NFS)
    driver_out: bool = False  # --out local://PATH: every part is written on the driver's node


def check_device(name: str) -> None:
    """A --device that names none of DEVICES is a usage error (the same for every command)."""
    if name not in DEVICES:
        raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda or mps", USAGE)


def check_options(opts: ClassifyOptions, folder_output: bool = False) -> None:
    """Contradictions and impossible values, refused before any work (exit code 2).
    `folder_output`: the engine writes --out as a folder of parts (Ray)."""
    if (opts.out is None) == (opts.out_dir is None):
        raise UserError("give exactly one of --out FILE and --out-dir DIR", USAGE)
    if opts.incremental and opts.out_dir is None:
        raise UserError("--incremental needs --out-dir: it skips inputs covered by the files there", USAGE)
    if opts.out_dir is not None and (opts.resume or opts.format not in (None, "parquet")):
        raise UserError("--out-dir writes new Parquet files: --resume and --format do not apply", USAGE)
    if opts.overwrite and opts.resume:
        raise UserError("--overwrite and --resume contradict each other: pick one", USAGE)
    if opts.workers < 0:
        raise UserError(f"--workers {opts.workers}: give 0 (one per core) or more", USAGE)
    most = MOST_WORKERS_PER_CORE * cpu_count()
    if opts.workers > most:  # each is a process with its own memory: 10**8 of them ran the machine out of it
        raise UserError(f"--workers {opts.workers}: give at most {most} ({MOST_WORKERS_PER_CORE} per core); "
                        "0 starts one per core", USAGE)
    if opts.batch_size < 1:
        raise UserError(f"--batch-size {opts.batch_size}: give 1 or more", USAGE)
    if opts.max_pixels < 1:
        raise UserError(f"--max-pixels {opts.max_pixels}: give 1 or more", USAGE)
    if not 0.0 <= opts.min_digit_score <= 1.0:
        raise UserError(f"--min-digit-score {opts.min_digit_score}: give a score between 0 and 1", USAGE)
    check_device(opts.device)
    if is_uri(opts.out_dir) or is_uri(opts.out):
        check_store_output(opts)
        return
    if opts.out_dir is not None and os.path.exists(opts.out_dir) and not os.path.isdir(opts.out_dir):
        raise UserError(f"--out-dir {opts.out_dir} is a file; give a folder (it is created when missing)", USAGE)
    if opts.out is not None and os.path.isdir(opts.out) and not folder_output:
        raise UserError(f"--out {opts.out} is a folder; give a file name ending in .parquet or .csv", USAGE)
    out_mode = os.lstat(opts.out).st_mode if opts.out is not None and os.path.lexists(opts.out) else None
    if out_mode is not None and special_file(out_mode):  # before any work (a link there is replaced, as ever)
        raise special_output(Path(opts.out), out_mode, USAGE, " (it is created, or replaced with --overwrite)")
    if opts.out is not None and os.path.exists(opts.out) and not opts.overwrite:
        hint = "nothing to resume; " if opts.resume else ""
        raise UserError(f"{opts.out} exists; {hint}pass --overwrite to replace it", USAGE)


def check_store_output(opts: ClassifyOptions) -> None:
    """An output URI: its bucket must answer (one line naming the URI before any work), and an
    existing --out object is replaced only with --overwrite."""
    from mnist_batch import storage

    storage.check_bucket(opts.out_dir or opts.out)
    if opts.out is not None and not opts.overwrite and storage.exists(opts.out):
        hint = "nothing to resume; " if opts.resume else ""
        raise UserError(f"{opts.out} exists; {hint}pass --overwrite to replace it", USAGE)

