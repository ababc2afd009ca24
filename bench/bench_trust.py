"""Can a row be trusted? For each bundled checkpoint: accuracy on MNIST and on other writers,
how well the digit score tells digits from things that are not one digit (AUROC, rejection
rates at the default threshold), the error among confident rows, calibration (ECE), and
digits in printed form fields. Prints figures, asserts nothing.
Run: make bench-trust (or python bench/bench_trust.py [CHECKPOINT ...]: bundled names or files;
all bundled checkpoints by default)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    OUT,
    machine,
    mnist_test,
    write_form_fields,
    write_non_digits,
    write_optdigits,
    write_scanned_optdigits,
    write_scans,
    write_thick_pen,
    write_tight_letters,
)

import mnist_batch  # noqa: E402
from mnist_batch.model import bundled_checkpoints  # noqa: E402
from mnist_batch.results import DEFAULT_MIN_DIGIT_SCORE  # noqa: E402

CONFIDENT = 0.9
THRESHOLDS = sorted({0.1, DEFAULT_MIN_DIGIT_SCORE, 0.5, 0.75})


def labelled_files(folder: Path) -> tuple[list[str], np.ndarray]:
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))
    return paths, np.array([int(Path(p).parent.name) for p in paths])


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random digit scores above a random non-digit (ties count half)."""
    scores = np.concatenate([positive, negative])
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(confidence[which == b].mean() - correct[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def digit_scores(frame) -> np.ndarray:
    """Each row's digit score: run with a minimum of 0, only preprocessing rejects (an empty field
    scores 0); a network without the not-a-digit output gives 1 to every classified row."""
    ok = (frame["status"] == "ok").to_numpy()
    return np.where(ok, frame["digit_score"].fill_null(1.0).to_numpy(), 0.0)


def digit_set(classifier, paths: list[str], labels: np.ndarray) -> dict:
    frame = classifier.predict(paths)
    ok = (frame["status"] == "ok").to_numpy()
    pred = frame["pred"].fill_null(-1).to_numpy()
    confidence = frame["confidence"].fill_null(0).to_numpy()
    sure = ok & (confidence >= CONFIDENT)
    return {"accuracy": float((pred == labels).mean()), "rejected": float((frame["status"] == "not_digit").mean()),
            "confident_error": float((pred[sure] != labels[sure]).mean()) if sure.any() else 0.0,
            "confident_share": float(sure.mean()), "scores": digit_scores(frame),
            "ece": expected_calibration_error(confidence[ok], (pred == labels)[ok])}


def report_checkpoint(name: str, digit_sets: dict, non_digits: Path, letters: Path, fields: Path) -> None:
    classifier = mnist_batch.Classifier(name, device="cpu", min_digit_score=0.0)
    print(f"\n{name}")
    scored = {}
    for set_name, (paths, labels) in digit_sets.items():
        result = digit_set(classifier, paths, labels)
        scored[set_name] = result["scores"]
        print(f"  {set_name}: accuracy {result['accuracy']:.2%}, ECE {result['ece']:.4f}, "
              f"error at confidence >= {CONFIDENT} {result['confident_error']:.2%} "
              f"({result['confident_share']:.1%} of rows)")
    paths = sorted(str(p) for p in non_digits.rglob("*.png"))
    kinds = np.array([Path(p).parent.name for p in paths])
    negative = digit_scores(classifier.predict(paths))
    positive = np.concatenate(list(scored.values()))
    print(f"  digit score AUROC, digits against {len(paths)} non-digits: {auroc(positive, negative):.4f}")
    for threshold in THRESHOLDS:
        digits = ", ".join(f"{set_name} {np.mean(s < threshold):.2%}" for set_name, s in scored.items())
        by_kind = ", ".join(f"{kind} {np.mean(negative[kinds == kind] < threshold):.0%}" for kind in np.unique(kinds))
        print(f"  min digit score {threshold}: non-digits rejected {np.mean(negative < threshold):.1%} ({by_kind}); "
              f"digits rejected: {digits}")
    tight = classifier.predict(sorted(str(p) for p in letters.glob("*.png")))
    print(f"  bold letters cropped to their ink ({tight.height}; not among the non-digits above): rejected at "
          f"{DEFAULT_MIN_DIGIT_SCORE} {np.mean(digit_scores(tight) < DEFAULT_MIN_DIGIT_SCORE):.1%}")
    field_paths, field_labels = labelled_files(fields)
    frame = mnist_batch.Classifier(name, device="cpu").predict(field_paths)
    frames = np.array([Path(p).name.split("-")[0] for p in field_paths])
    read = frame["pred"].fill_null(-1).to_numpy() == field_labels
    print("  digits in form fields read right: " + ", ".join(
        f"{kind} {read[frames == kind].mean():.1%}" for kind in np.unique(frames)) + f"; all {read.mean():.1%}")


def main() -> None:
    test = mnist_test()
    mnist_dir = OUT / "mnist-2000"
    from common import write_mnist_pngs

    digit_sets = {
        "MNIST test (2,000)": labelled_files(write_mnist_pngs(mnist_dir, 2_000)),
        "scan-like (2,000)": labelled_files(write_scans(OUT / "scans-trust", 2_000, seed=7)),
        "optdigits (1,797)": labelled_files(write_optdigits(OUT / "optdigits")),
        "scanned other writers (1,797)": labelled_files(write_scanned_optdigits(OUT / "scanned-optdigits")),
        "thick pen, tight crop (1,000)": labelled_files(write_thick_pen(OUT / "thick-pen")),
    }
    non_digits = write_non_digits(OUT / "non-digits", test.images[5_000:], test.labels[5_000:], per_kind=150)
    letters = write_tight_letters(OUT / "tight-letters")
    fields = write_form_fields(OUT / "form-fields", test.images, test.labels, per_frame=150)
    print(f"trust figures; {machine()}; non-digits drawn with held-out fonts and seeds; "
          f"default min digit score {DEFAULT_MIN_DIGIT_SCORE}")
    for checkpoint in sys.argv[1:] or [listed["name"] for listed in bundled_checkpoints()]:
        report_checkpoint(checkpoint, digit_sets, non_digits, letters, fields)


if __name__ == "__main__":
    main()
