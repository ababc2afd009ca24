"""Accuracy on writers MNIST does not have, for each bundled checkpoint, and the
fine-tuning curve; the gain of `adapt` (no labels); and the effect of each writer augmentation.
Prints figures, asserts nothing.
Run: make bench-accuracy (or python bench/bench_accuracy.py [table] [curve] [adapt] [ablation])."""

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    BIN,
    OUT,
    machine,
    run_measured,
    write_dithered,
    write_dusty_scans,
    write_faint,
    write_optdigits,
    write_scanned_optdigits,
    write_scans,
    write_thin_pen,
)

import mnist_batch  # noqa: E402
from mnist_batch.model import bundled_checkpoints  # noqa: E402

CONFIDENT = 0.9  # confidence coverage: the error among rows at or above this, and the share kept
CURVE = (50, 100, 200, 400)  # labelled digits for the fine-tuning curve


def labelled_files(folder: Path) -> tuple[list[str], np.ndarray]:
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))
    return paths, np.array([int(Path(p).parent.name) for p in paths])


def scores(checkpoint: str, paths: list[str], labels: np.ndarray) -> dict:
    frame = mnist_batch.Classifier(checkpoint, device="cpu").predict(paths)
    pred = frame["pred"].fill_null(-1).to_numpy()
    confidence = frame["confidence"].fill_null(0).to_numpy()
    sure = confidence >= CONFIDENT
    return {"accuracy": float((pred == labels).mean()),
            "confident_error": float((pred[sure] != labels[sure]).mean()) if sure.any() else 0.0,
            "confident_share": float(sure.mean())}


def sets() -> dict[str, Path]:
    return {
        "scan-like (10,000 MNIST test digits as ink on paper)": write_scans(OUT / "scans-acc", 10_000, seed=1),
        "optdigits (1,797, dark on white, 32x32)": write_optdigits(OUT / "optdigits"),
        "scanned other writers (1,797 optdigits as scans, JPEG)": write_scanned_optdigits(OUT / "scanned-optdigits"),
        "optdigits box-cropped (light on dark, 16x16, ink at the edges)":
            write_optdigits(OUT / "optdigits-box", light_on_dark=True, side=16),
        "thin pen (2,000 MNIST test digits, fine strokes)": write_thin_pen(OUT / "thin-pen"),
        "dusty scans (2,000 scan-like digits with specks of dust)": write_dusty_scans(OUT / "dusty"),
        "faint writing (2,000 MNIST test digits, ink 22-45 levels from the paper)": write_faint(OUT / "faint"),
        "dithered 1-bit scans (2,000 scan-like digits, greys as dots)": write_dithered(OUT / "dithered"),
    }


def accuracy_table() -> None:
    print(f"accuracy by checkpoint and set; confident = confidence >= {CONFIDENT}; {machine()}")
    for listed in bundled_checkpoints():
        evaluated = run_measured([BIN / "mnist-batch", "evaluate", "--checkpoint", listed["path"], "--json"])
        print(f"{listed['name']} ({listed['parameters']:,} parameters): MNIST test "
              f"{json.loads(evaluated['stdout'])['accuracy']:.2%}")
        for name, folder in sets().items():
            figures = scores(listed["path"], *labelled_files(folder))
            print(f"  {name}: {figures['accuracy']:.2%}; confident: error {figures['confident_error']:.2%} "
                  f"on {figures['confident_share']:.1%} of rows")


def fine_tune_curve(checkpoint: str) -> None:
    """Fine-tune on n optdigits (stratified), measure on all the others."""
    paths, labels = labelled_files(write_optdigits(OUT / "optdigits"))
    rng = np.random.default_rng(0)
    before = scores(checkpoint, paths, labels)["accuracy"]
    print(f"fine-tuning {checkpoint} on n labelled optdigits; accuracy on the other ones (before: {before:.2%})")
    for n in CURVE:
        chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == d))[: n // 10] for d in range(10)])
        labels_file = OUT / f"finetune-{n}.csv"
        with open(labels_file, "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *((paths[i], labels[i]) for i in chosen)])
        out = OUT / f"finetune-{checkpoint}-{n}"
        started = time.perf_counter()
        run_measured([BIN / "mnist-batch", "train", "--from", checkpoint, "--extra", labels_file, "--holdout", "0",
                      "--out", out, "--quiet"])
        seconds = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text())
        rest = np.setdiff1d(np.arange(len(paths)), chosen)
        after = scores(metrics["checkpoint"], [paths[i] for i in rest], labels[rest])["accuracy"]
        print(f"  n={n}: {after:.2%} on the other {len(rest)} (error {1 - before:.2%} -> {1 - after:.2%}); "
              f"MNIST test {metrics['test_accuracy']:.2%}; {seconds:.0f} s whole command")


def adaptation_sets() -> dict[str, tuple[Path, dict[str, Path]]]:
    """name -> (the folder adapt reads, {what is measured: folder}). A set is measured on the images
    adapted on (adapt reads a batch, then classify reads it) and, where it has one, on a held-out
    half of the same writers that adapt never saw."""
    scanned = write_scanned_optdigits(OUT / "scanned-optdigits")
    scan_like = write_scans(OUT / "scans-adapt", 2_000, seed=3)
    optdigits = write_optdigits(OUT / "optdigits")
    return {
        "scanned other writers (optdigits as scans; adapted on 899, the even half)":
            (scanned / "adapt", {"same 899": scanned / "adapt", "held-out 898": scanned / "held-out"}),
        "optdigits (1,797, dark on white, 32x32)": (optdigits, {"same 1,797": optdigits}),
        "scan-like (2,000 MNIST test digits as ink on paper, a seed of their own)":
            (scan_like, {"same 2,000": scan_like}),
    }


def adaptation_gain(checkpoint: str = "smallbn") -> None:
    """`adapt` on each set without its labels: BatchNorm statistics only (--rounds 0), then with
    confident self-training (the default); accuracy before and after, MNIST test after."""
    print(f"adapting {checkpoint} to each set without labels; {machine()}")
    for name, (adapt_on, measured) in adaptation_sets().items():
        print(f"  {name}:")
        before = {part: scores(checkpoint, *labelled_files(folder)) for part, folder in measured.items()}
        for part, figures in before.items():
            print(f"    {part}: before {figures['accuracy']:.2%} (confident error {figures['confident_error']:.2%})")
        for rounds, kind in ((0, "BatchNorm only (--rounds 0)"), (None, "default")):
            out = OUT / f"adapt-{adapt_on.parent.name}-{adapt_on.name}-{rounds}"
            started = time.perf_counter()
            run = run_measured([BIN / "mnist-batch", "adapt", adapt_on, "--from", checkpoint, "--out", out,
                                *(("--rounds", rounds) if rounds is not None else ()), "--quiet", "--json"])
            seconds = time.perf_counter() - started
            adapted = json.loads(run["stdout"])["adapted"]
            cells = []
            for part, folder in measured.items():
                after = scores(json.loads(run["stdout"])["checkpoint"], *labelled_files(folder))
                gain = (after["accuracy"] - before[part]["accuracy"]) * 100
                cells.append(f"{part} {after['accuracy']:.2%} ({gain:+.1f} points; confident error "
                             f"{after['confident_error']:.2%})")
            labels = "+".join(str(r["labels"]) for r in adapted["rounds"]) or "no"
            print(f"    {kind}: {'; '.join(cells)}; MNIST test {adapted['mnist_test_accuracy_after']:.2%}; "
                  f"{labels} labels; kept {adapted['kept']}; {seconds:.0f} s")


# Each augmentation alone on top of the affine jitter, then all of them (augment.make_augment's arguments).
ABLATION = {
    "none": None,
    "affine": {"elastic": 0.0, "stroke_p": 0.0, "blur_p": 0.0},
    "affine + elastic": {"stroke_p": 0.0, "blur_p": 0.0},
    "affine + stroke width": {"elastic": 0.0, "blur_p": 0.0},
    "affine + blur": {"elastic": 0.0, "stroke_p": 0.0},
    "all (--augment-writers)": {},
}


def ablation(arch: str = "lenet", epochs: int = 6) -> None:
    """Train `arch` once per augmentation set (same seed), then score it on the sets."""
    from mnist_batch import augment, train

    print(f"augmentation ablation: {arch}, {epochs} epochs each, seed 1; {machine()}")
    for name, kwargs in ABLATION.items():
        # The run's augmentation, chosen here rather than through the CLI's two switches.
        train.make_augment = lambda opts, with_non_digits=False, kwargs=kwargs: (
            None if kwargs is None else augment.make_augment(**kwargs))
        out = OUT / f"ablation-{arch}-{name.split()[0]}-{len(name)}"
        started = time.perf_counter()
        summary = train.train(train.TrainOptions(arch=arch, epochs=epochs, out=out, progress=False, threads=1))
        seconds = time.perf_counter() - started
        cells = [f"MNIST {summary['test_accuracy']:.2%}"]
        for set_name, folder in sets().items():
            accuracy = scores(summary["checkpoint"], *labelled_files(folder))["accuracy"]
            cells.append(f"{set_name.split(' (')[0]} {accuracy:.2%}")
        print(f"  {name}: {'; '.join(cells)}; {seconds:.0f} s")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    sections = sys.argv[1:] or ["table", "curve", "adapt"]
    if "table" in sections:
        accuracy_table()
    if "curve" in sections:
        for listed in bundled_checkpoints():
            fine_tune_curve(listed["name"])
    if "adapt" in sections:
        adaptation_gain()
    if "ablation" in sections:
        ablation()
