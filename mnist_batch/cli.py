"""The command line: parse options, build one options dataclass, call one job function.

Heavy imports (torch, polars, matplotlib) happen inside the commands so that
`mnist-batch --help` answers at once.
"""

import time

STARTED = time.perf_counter()  # the command's wall time counts from here: summaries report it

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402
from typer.core import TyperCommand  # noqa: E402

from mnist_batch import __version__, errors  # noqa: E402
from mnist_batch.errors import (  # noqa: E402
    FAILURE,
    INTERRUPTED,
    UserError,
    catch_stop_signals,
    restore_stop_signals,
    shown,
)
from mnist_batch.stats import MIN_MEASURED  # noqa: E402

EXIT_CODES = """Exit codes: 0 success; 1 failure (bad data, bad checkpoint, internal error);
2 usage error; 3 classify finished but some inputs could not be classified;
4 report accuracy below --min-accuracy; 75 classify: another run holds the output's lock;
130 interrupted by Ctrl-C or SIGTERM (classify: rerun with --resume)."""

app = typer.Typer(
    help=f"Classify folders of handwritten digit images with a small CNN.\n\n{EXIT_CODES}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)


def argument_metavar(argument) -> str:
    """`FILE|DIR...`, or `[FILE|DIR]...` when it may be left out: the same under every Typer release."""
    name = argument.metavar or argument.name.upper()
    shown_name = name if argument.required else f"[{name}]"
    return shown_name + ("..." if argument.nargs != 1 else "")


class PlainHelpCommand(TyperCommand):
    """Help whose arguments read as their metavar alone: Typer 0.2x appends the Python type (`<list[str]>`)."""

    def collect_usage_pieces(self, ctx):
        arguments = [argument_metavar(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return ([self.options_metavar] if self.options_metavar else []) + arguments

    def format_options(self, ctx, formatter):
        params = self.get_params(ctx)
        arguments = [(argument_metavar(p), getattr(p, "help", None) or "")
                     for p in params if p.param_type_name == "argument" and not getattr(p, "hidden", False)]
        options = [record for p in params if p.param_type_name == "option" and (record := p.get_help_record(ctx))]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


Device = typer.Option("auto", "--device", metavar="NAME", help="auto (cuda, then mps, then cpu), cpu, cuda or mps.")
DataDir = typer.Option(None, "--data-dir", metavar="DIR",
                       help="Folder of the MNIST IDX files (else $MNIST_BATCH_DATA, else the cache).")
Download = typer.Option(False, "--download", help="Fetch MNIST with torchvision when it is not found.")
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bars.")
# Fine-tuning starts from learnt weights: one short epoch, a gentle rate, small mixed batches.
FINE_TUNE_EPOCHS, FINE_TUNE_LR, FINE_TUNE_BATCH = 1, 0.001, 128
Checkpoint = typer.Option(None, "--checkpoint", metavar="FILE|NAME",
                          help="A .safetensors file, or a bundled checkpoint's name (default: the bundled smallbn). "
                          "A name without slash or extension is the bundled one: write ./NAME for a file here.")


def progress_wanted(quiet: bool) -> bool:
    """Bars only for a person watching: never in cron mail or a redirected log."""
    return not quiet and sys.stderr.isatty()


def fail(message: str, code: int = FAILURE):
    typer.echo(f"mnist-batch: error: {shown(message, limit=None)}", err=True)  # one line, whatever names it holds
    raise typer.Exit(code)


def run_job(ctx: typer.Context, job, *args):
    """Call a job; user errors and crashes become one line on stderr (--debug: traceback)."""
    debug = (ctx.obj or {}).get("debug", False)
    # kill, systemd's stop and timeout send SIGTERM: clean up as after Ctrl-C (classify keeps its parts)
    replaced = catch_stop_signals()
    try:
        return job(*args)
    except UserError as error:
        if debug:
            raise
        fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", INTERRUPTED)
    except Exception as error:
        if debug:
            raise
        if errors.interrupt_pending:  # a stop signal that a library turned into an error of its own
            fail("interrupted", INTERRUPTED)
        fail(f"{type(error).__name__}: {error} (rerun with --debug for the traceback)")
    finally:
        restore_stop_signals(replaced)


def version_callback(value: bool):
    if value:
        typer.echo(f"mnist-batch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
):
    ctx.obj = {"debug": debug}


@app.command("train", cls=PlainHelpCommand)
def train_command(
    ctx: typer.Context,
    arch: Optional[str] = typer.Option(None, metavar="NAME",
                                       help="Network to train (default: lenet; see `mnist-batch checkpoints`)."),
    epochs: int = typer.Option(4, metavar="N", help="Passes over the 60,000 MNIST training images "
                               f"({FINE_TUNE_EPOCHS} by default with --from)."),
    batch_size: Optional[int] = typer.Option(None, metavar="N", show_default=False,
                                             help="Images per optimiser step: 256 on the CPU, 512 on CUDA "
                                             f"({FINE_TUNE_BATCH} by default with --from)."),
    lr: Optional[float] = typer.Option(None, metavar="RATE", show_default=False,
                                       help="Peak learning rate of the one-cycle schedule (Adam): 0.015 on "
                                       f"the CPU, 0.02 on CUDA ({FINE_TUNE_LR} by default with --from)."),
    seed: int = typer.Option(1, metavar="N",
                             help="Random seed; the same seed and --threads on the CPU give the same weights."),
    device: str = Device,
    data_dir: Optional[Path] = DataDir,
    download: bool = Download,
    out: Path = typer.Option(Path("runs/train"), metavar="DIR",
                             help="Folder for <network>.safetensors (<network>-tuned.safetensors with --from), "
                             "metrics.json, loss.png, accuracy.png."),
    augment: bool = typer.Option(False, "--augment", help="Random affine jitter (rotation, scale, shear, shift)."),
    augment_writers: bool = typer.Option(
        False, "--augment-writers",
        help="Writer variation: affine jitter, elastic distortion, stroke width and blur, on every image."),
    base: Optional[str] = typer.Option(
        None, "--from", metavar="FILE|NAME",
        help="Fine-tune this checkpoint (a file, or a bundled name as for --checkpoint) instead of starting afresh."),
    extra: list[Path] = typer.Option(
        [], "--extra", metavar="FILE",
        help="Labels file (CSV or Parquet, path,label) of your own digits to mix in (repeatable)."),
    extra_root: Optional[Path] = typer.Option(None, metavar="DIR",
                                              help="Folder that relative --extra paths are relative to."),
    holdout: float = typer.Option(0.2, metavar="P", help="Share of the --extra digits held back to measure the gain."),
    non_digits: float = typer.Option(
        0.0, metavar="SHARE", help="smallbn only: add a \"not a digit\" output, trained on generated letters, "
        "signs, digit pairs, halves of digits, pen marks, scratch-outs, crossed-out digits, stamps, blots, empty form "
        "fields and noise making up this share of each batch (e.g. 0.2)."),
    scanned: float = typer.Option(
        0.0, metavar="SHARE", help="Add MNIST training digits rendered as scans (low resolution, tilt, blur, "
        "uneven light, JPEG) and preprocessed as classify does, making up this share of each batch (e.g. 0.15)."),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Hold back 5,000 MNIST training images and fit the confidence temperature on them."),
    dry_run: bool = typer.Option(False, "--dry-run", help="One epoch of 10 batches: checks the whole path quickly."),
    threads: int = typer.Option(0, metavar="N", help="CPU threads for torch (0: one per core that other "
                                "processes leave free)."),
    quiet: bool = Quiet,
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
):
    """Train the network on MNIST, or fine-tune one on your own digits.

    Examples (the second fine-tunes on your own labelled digits):

    \b
      mnist-batch train --epochs 3 --out runs/train
      mnist-batch train --from smallbn --extra review.csv --out runs/mine
    """
    from mnist_batch.train_options import TrainOptions, check_values

    if base is not None:  # fine-tuning has its own defaults; what the user gives still wins
        given = {name for name in ("epochs", "lr", "batch_size") if ctx.get_parameter_source(name).name != "DEFAULT"}
        epochs = epochs if "epochs" in given else FINE_TUNE_EPOCHS
        lr = lr if "lr" in given else FINE_TUNE_LR
        batch_size = batch_size if "batch_size" in given else FINE_TUNE_BATCH
    opts = TrainOptions(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        device=device, data_dir=data_dir, download=download, out=out, augment=augment,
                        augment_writers=augment_writers, dry_run=dry_run, threads=threads,
                        progress=progress_wanted(quiet), base=base, extra=tuple(extra), extra_root=extra_root,
                        holdout=holdout, non_digits=non_digits, scanned=scanned, calibrate=calibrate)

    def train_job(opts: TrainOptions) -> dict:
        check_values(opts)  # before train.py imports torch: a mistyped option is answered at once
        from mnist_batch.train import train

        return train(opts)

    summary = run_job(ctx, train_job, opts)
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"test accuracy {summary['test_accuracy']:.2%} (loss {summary['test_loss']:.4f}) "
               f"after {summary['epochs']} epochs in {summary['seconds']:.1f} s "
               f"on {summary['device']} -> {shown(summary['checkpoint'])}")
    gained = summary.get("extra") or {}
    if gained.get("holdout_accuracy_after") is not None:
        typer.echo(held_back_line(gained, summary["test_accuracy"]))


def held_back_line(extra: dict, mnist_test: float) -> str:
    """The accuracy on the held-back digits before and after, each with its 95% interval, and
    whether the difference is a measured gain or within chance."""
    def accuracy(when: str) -> str:
        value, (low, high) = extra[f"holdout_accuracy_{when}"], extra[f"holdout_ci95_{when}"] or (0, 0)
        return "-" if value is None else f"{value:.2%} (95% CI {low:.1%}-{high:.1%})"

    line = (f"your held-back digits ({extra['holdout_digits']}): {accuracy('before')} -> {accuracy('after')}; "
            f"MNIST test {mnist_test:.2%}")
    if extra["gain_measured"]:
        line += "; the 95% intervals do not overlap: a measured difference"
    elif extra["gain_measured"] is False:
        few = extra["holdout_digits"] < MIN_MEASURED
        line += ("; the gain cannot be measured: " + (f"fewer than {MIN_MEASURED} digits held back" if few else
                 "the intervals overlap") + " (label more digits, or compare on a labelled set with report --compare)")
    return line


@app.command("adapt", cls=PlainHelpCommand)
def adapt_command(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(None, metavar="FILE|DIR", show_default=False,
                                       help="Your unlabelled images: files and folders (walked recursively)."),
    base: Optional[str] = typer.Option(None, "--from", metavar="FILE|NAME",
                                       help="The checkpoint to adapt (default: the bundled smallbn)."),
    out: Path = typer.Option(Path("runs/adapted"), metavar="DIR",
                             help="Folder for <network>-adapted.safetensors."),
    rounds: int = typer.Option(3, metavar="N", help="Self-training rounds (0: BatchNorm statistics only)."),
    steps: int = typer.Option(0, metavar="N", help="Fine-tuning steps per round (0: 100-400, by the labels)."),
    confidence: float = typer.Option(0.95, metavar="P", help="Answers at this confidence or above become labels..."),
    min_digit_score: float = typer.Option(0.5, metavar="S", help="...when their digit score is this or above."),
    lr: float = typer.Option(FINE_TUNE_LR, metavar="RATE", help="Peak learning rate of the fine-tuning."),
    seed: int = typer.Option(1, metavar="N", help="Random seed."),
    device: str = Device,
    data_dir: Optional[Path] = DataDir,
    threads: int = typer.Option(0, metavar="N", help="CPU threads for torch (0: one per core that other "
                                "processes leave free)."),
    quiet: bool = Quiet,
    json_out: bool = typer.Option(False, "--json", help="Print the adaptation's record as JSON on stdout."),
):
    """Adapt a checkpoint to your writers from unlabelled images.

    Re-estimates the BatchNorm statistics on your digits, then fine-tunes on the answers it is
    sure of (confidence and digit score), mixed with MNIST. Nothing is written if MNIST test
    accuracy would fall below 99.4%, or if too few images read as digits.

    Example, then classify with the adapted checkpoint:

    \b
      mnist-batch adapt ./scans --out runs/adapted
      mnist-batch classify ./scans --out preds.parquet \\
          --checkpoint runs/adapted/smallbn-adapted.safetensors
    """
    from mnist_batch.adapt import AdaptOptions
    from mnist_batch.adapt import adapt as adapt_job

    opts = AdaptOptions(inputs=tuple(inputs or ()), base=base, out=out, rounds=rounds, steps=steps,
                        confidence=confidence, min_digit_score=min_digit_score, lr=lr, seed=seed, device=device,
                        data_dir=data_dir, threads=threads, progress=progress_wanted(quiet))
    summary = run_job(ctx, adapt_job, opts)
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    adapted = summary["adapted"]
    typer.echo(f"adapted on {adapted['images']} images ({adapted['confident_labels']} confident digits; "
               f"kept: {adapted['kept']}); MNIST test {adapted['mnist_test_accuracy_before']:.2%} -> "
               f"{adapted['mnist_test_accuracy_after']:.2%} in {summary['seconds']:.1f} s -> {summary['checkpoint']}")


@app.command("evaluate", cls=PlainHelpCommand)
def evaluate_command(
    ctx: typer.Context,
    checkpoint: Optional[str] = Checkpoint,
    device: str = Device,
    data_dir: Optional[Path] = DataDir,
    download: bool = Download,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
):
    """Score a checkpoint on the 10,000 MNIST test images.

    Accuracy, loss and per-class accuracy.

    Example:

    \b
      mnist-batch evaluate --checkpoint runs/train/lenet.safetensors --json
    """
    from mnist_batch.options import check_device

    def evaluate_job() -> dict:
        check_device(device)  # before evaluate.py imports torch
        from mnist_batch.evaluate import EvaluateOptions, evaluate_checkpoint

        return evaluate_checkpoint(EvaluateOptions(checkpoint=checkpoint, data_dir=data_dir, download=download,
                                                   device=device))

    result = run_job(ctx, evaluate_job)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{shown(result['checkpoint'])}: accuracy {result['accuracy']:.2%}, loss {result['loss']:.4f} "
               f"on {result['images']} MNIST test images")
    typer.echo("per class: " + "  ".join(f"{d}:{a:.2%}" for d, a in enumerate(result["per_class_accuracy"])))


@app.command("checkpoints", cls=PlainHelpCommand)
def checkpoints_command(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
):
    """List the bundled checkpoints: name, network, parameters, recorded accuracy.

    Any of these names goes where a command takes --checkpoint, e.g.

    \b
      mnist-batch classify ./scans --out preds.parquet --checkpoint lenet
    """
    from mnist_batch.model import bundled_checkpoints

    listed = run_job(ctx, bundled_checkpoints)
    if json_out:
        typer.echo(json.dumps(listed, indent=2))
        return
    typer.echo(f"{'name':<12} {'network':<10} {'parameters':>10}  {'MNIST test':>10}  path")
    for row in listed:
        typer.echo(f"{row['name']:<12} {row['architecture']:<10} {row['parameters']:>10,}  "
                   f"{row['mnist_test_accuracy']:>10.2%}  {row['path']}")


@app.command("classify", cls=PlainHelpCommand)
def classify_command(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(None, metavar="FILE|DIR",
                                       help="Image files and folders (walked recursively).",
                                       show_default=False),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="FILE",
                                      help="Result file, .parquet or .csv; or a URI: s3://bucket/preds.parquet."),
    out_dir: Optional[str] = typer.Option(
        None, "--out-dir", metavar="DIR", help="Instead of --out: write a new predictions-<UTC time>.parquet here "
        "(a folder, or a URI prefix: s3://bucket/results/)."),
    incremental: bool = typer.Option(
        False, "--incremental", help="With --out-dir: classify only inputs no file there covers (new or changed)."),
    files_from: Optional[str] = typer.Option(
        None, "--files-from", metavar="FILE",
        help="File listing input paths, one per line (or NUL-separated, as find -print0 writes); - for stdin."),
    include: list[str] = typer.Option([], "--include", metavar="GLOB",
                                      help="Keep only paths matching this glob (repeatable)."),
    exclude: list[str] = typer.Option([], "--exclude", metavar="GLOB",
                                      help="Drop paths matching this glob (repeatable)."),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="FORMAT",
                                      help="parquet or csv (default: from the --out extension)."),
    checkpoint: Optional[str] = Checkpoint,
    device: str = Device,
    workers: int = typer.Option(0, metavar="N", help="Decoding processes (0: one per core; at most 8 per core)."),
    batch_size: int = typer.Option(1024, metavar="N", help="Images per model batch (and per worker task)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted run: classify only inputs without a row."),
    max_pixels: int = typer.Option(40_000_000, metavar="N",
                                   help="Refuse images with more pixels than this, before decoding."),
    min_digit_score: float = typer.Option(
        0.25, metavar="S", help="Rows whose digit score (how much the input looks like one handwritten digit, 0-1) "
        "is below this get status not_digit instead of a digit. 0 keeps every digit."),
    engine: str = typer.Option("local", metavar="NAME",
                               help="local, or ray to run on a Ray cluster (--out is then a directory)."),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDRESS",
                                          help="Ray cluster address (default: $RAY_ADDRESS, else a local one)."),
    actors: int = typer.Option(0, metavar="N", help="Ray predictor actors (0: one per GPU, or one)."),
    shared_out: bool = typer.Option(
        False, "--shared-out", help="With --engine ray on several nodes: the local --out is on a file system "
        "every node mounts (NFS); else give an s3:// URI."),
    quiet: bool = Quiet,
    json_out: bool = typer.Option(False, "--json", help="Print the run's summary as JSON on stdout."),
):
    """Classify images into a Parquet or CSV file, one row per input.

    Every input gets a row, failures included.

    Examples: a folder; only what is new (for cron); on a Ray cluster.

    \b
      mnist-batch classify ./scans --out preds.parquet
      mnist-batch classify ./inbox --out-dir results/ --incremental
      mnist-batch classify s3://bucket/scans --out results/ --engine ray

    Exit codes: 0 every input classified (or blank, or not a digit); 3 some inputs could not be
    classified (their rows say why); 1 failure; 2 usage error; 75 another run holds
    the output's lock.
    """
    from mnist_batch.engines import run_engine
    from mnist_batch.errors import PARTIAL
    from mnist_batch.options import ClassifyOptions, RayOptions
    from mnist_batch.storage import on_the_driver, output_location

    opts = ClassifyOptions(inputs=tuple(inputs or ()), out=output_location(out), out_dir=output_location(out_dir),
                           incremental=incremental, files_from=files_from,
                           include=tuple(include), exclude=tuple(exclude), format=fmt,
                           checkpoint=checkpoint, device=device, workers=workers,
                           batch_size=batch_size, overwrite=overwrite, resume=resume,
                           max_pixels=max_pixels, min_digit_score=min_digit_score,
                           progress=progress_wanted(quiet))
    ray_opts = RayOptions(address=address, actors=actors, shared_out=shared_out, driver_out=on_the_driver(out))
    summary = run_job(ctx, run_engine, engine, opts, ray_opts, STARTED)
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    elif summary.out is None:
        typer.echo(f"nothing new to classify; {shown(out_dir)} is up to date")
    else:
        blank = f", {summary.blank} blank" if summary.blank else ""
        blank += f", {summary.not_digit} not a digit" if summary.not_digit else ""
        typer.echo(f"{summary.rows} rows -> {shown(summary.out)}: {summary.ok} ok{blank}, {summary.failed} failed; "
                   f"{summary.seconds:.2f} s, {summary.images_per_second:,.0f} images/s on {summary.device}")
    if summary.failed:
        raise typer.Exit(PARTIAL)


@app.command("report", cls=PlainHelpCommand)
def report_command(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(..., metavar="FILE|GLOB",
                                       help="Result files or globs (.parquet, .csv, mixed)."),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE",
                                          help="CSV or Parquet with path and label columns."),
    labels_root: Optional[Path] = typer.Option(None, "--labels-root", metavar="DIR",
                                               help="Existing folder that the relative paths in --labels start "
                                               "from (default: the current folder)."),
    labels_from_dirs: bool = typer.Option(False, "--labels-from-dirs",
                                          help="Take each image's label from its parent folder (0-9)."),
    review_threshold: float = typer.Option(
        0.9, metavar="P", help="Confidence below which an input needs a person's look; 1 means every classified "
        "input (even one at exactly 1.0)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout (not the tables)."),
    json_file: Optional[Path] = typer.Option(None, "--json-out", metavar="FILE",
                                             help="Write the figures as JSON to FILE."),
    html_out: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                            help="Write one self-contained HTML page with plots."),
    review: Optional[Path] = typer.Option(
        None, "--review", metavar="FILE",
        help="Write the rows to review, .csv or .parquet: rejected as not a digit, low confidence, wrong, "
             "blank, failed, in that order."),
    min_accuracy: Optional[float] = typer.Option(None, metavar="P",
                                                 help="Exit with code 4 when accuracy is below this fraction."),
    gallery: int = typer.Option(24, metavar="N", help="Inputs shown in the HTML gallery."),
    compare: bool = typer.Option(
        False, "--compare", help="Compare two result files on the same inputs (A B, e.g. base then tuned): "
        "accuracy of each, the inputs where they disagree and which was right."),
):
    """Summarise result files: counts, confidence, accuracy.

    Accuracy needs labels: --labels FILE, --labels-from-dirs, or a label column.

    Examples: one run, with labels and an HTML page; two runs compared.

    \b
      mnist-batch report preds.parquet --labels labels.csv --html report.html
      mnist-batch report --compare base.parquet tuned.parquet --labels labels.csv

    Exit codes: 0 done; 4 accuracy below --min-accuracy; 1 failure; 2 usage error.
    """
    from mnist_batch.errors import GATE
    from mnist_batch.report import ReportOptions
    from mnist_batch.report import report as report_job
    from mnist_batch.report_terminal import render_terminal, terminal_console

    opts = ReportOptions(inputs=tuple(inputs), labels=labels, labels_root=labels_root,
                         labels_from_dirs=labels_from_dirs, review_threshold=review_threshold,
                         json_out=json_file, html=html_out, review=review, min_accuracy=min_accuracy,
                         gallery=gallery)
    if compare:
        from mnist_batch.compare import compare as compare_job
        from mnist_batch.report_terminal import render_compare

        summary = run_job(ctx, compare_job, opts)
        if json_out:
            typer.echo(json.dumps(summary, indent=2))
        else:
            render_compare(summary, terminal_console())
        return
    summary = run_job(ctx, report_job, opts)
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        render_terminal(summary, terminal_console())
    accuracy = summary["labels"]["accuracy"] if min_accuracy is not None else None
    if accuracy is not None and accuracy < min_accuracy:
        typer.echo(f"mnist-batch: accuracy {accuracy:.2%} is below --min-accuracy {min_accuracy:.2%}", err=True)
        raise typer.Exit(GATE)


def main():
    """Console-script entry. Ends with os._exit: torch's interpreter teardown costs about
    0.4 s on every run, and by now every output is written, closed and renamed."""
    try:
        app()
        code = 0
    except SystemExit as exit:
        code = exit.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else FAILURE
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
