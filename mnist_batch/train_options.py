"""What a train run is asked to do, and the checks of its values that need no network: the command
line answers a mistyped option before torch is imported (train.py imports it)."""

from dataclasses import dataclass
from pathlib import Path

from mnist_batch.errors import USAGE, UserError
from mnist_batch.options import check_device

ARCHITECTURE_NAMES = ("lenet", "smallbn")  # model.ARCHITECTURES' names (tests/test_faults.py pins them equal)


@dataclass(frozen=True)
class TrainOptions:
    arch: str | None = None  # None: lenet, or the --from checkpoint's network
    epochs: int = 4
    batch_size: int | None = None  # None: the device's default (recipe)
    lr: float | None = None
    seed: int = 1
    device: str = "auto"
    data_dir: Path | None = None
    download: bool = False
    out: Path = Path("runs/train")
    augment: bool = False  # affine jitter
    augment_writers: bool = False  # affine + elastic + stroke width + blur
    dry_run: bool = False
    threads: int = 0  # 0: one per core that other processes leave free
    progress: bool = True
    base: str | None = None  # --from: a checkpoint (path or bundled name) to start from
    extra: tuple[Path, ...] = ()  # labels files of the user's own digits
    extra_root: Path | None = None  # what their relative paths are relative to
    holdout: float = 0.2  # share of the user's digits held back to measure the gain
    extra_share: float = 0.25  # share of each batch drawn from the user's digits
    non_digits: float = 0.0  # share of each batch drawn from generated non-digits (smallbn's 11th class)
    scanned: float = 0.0  # share of each batch drawn from MNIST training digits rendered as scans
    calibrate: bool = False  # hold back CALIBRATION_IMAGES of MNIST train and fit the confidence temperature


def check_values(opts: TrainOptions) -> None:
    """The options' values, each on its own: a mistyped one is a usage error before torch is imported."""
    if opts.epochs < 1:
        raise UserError(f"--epochs {opts.epochs}: give 1 or more", USAGE)
    if opts.lr is not None and not opts.lr > 0:
        raise UserError(f"--lr {opts.lr}: give a learning rate above 0, e.g. 0.015", USAGE)
    if opts.batch_size is not None and opts.batch_size < 1:
        raise UserError(f"--batch-size {opts.batch_size}: give 1 or more", USAGE)
    check_device(opts.device)
    if opts.arch is not None and opts.arch not in ARCHITECTURE_NAMES:
        raise UserError(f"unknown --arch {opts.arch!r}; use one of {', '.join(ARCHITECTURE_NAMES)}", USAGE)
    if not 0 <= opts.holdout < 1:
        raise UserError(f"--holdout {opts.holdout}: give a share from 0 to below 1, e.g. 0.2", USAGE)
    if opts.extra_root is not None and not opts.extra:
        raise UserError("--extra-root goes with --extra LABELS", USAGE)
    if not 0 <= opts.non_digits < 1:
        raise UserError(f"--non-digits {opts.non_digits}: give a share from 0 to below 1, e.g. 0.2", USAGE)
    if not 0 <= opts.scanned < 1:
        raise UserError(f"--scanned {opts.scanned}: give a share from 0 to below 1, e.g. 0.15", USAGE)
    if opts.non_digits and (opts.arch or "lenet") == "lenet" and opts.base is None:
        raise UserError("--non-digits needs --arch smallbn: lenet stays the notebook's ten-digit network", USAGE)
    if opts.extra_root is not None and not Path(opts.extra_root).is_dir():
        raise UserError(f"--extra-root {opts.extra_root}: no such folder", USAGE)
