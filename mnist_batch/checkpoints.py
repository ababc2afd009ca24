"""Checkpoint files by name and identity, and what a network's output means as scores. Nothing
here imports torch: classify finds, names and scores with a checkpoint without it (see
onnx_inference.py)."""

import hashlib
import os
from pathlib import Path

import numpy as np

from mnist_batch.errors import UserError, log

WEIGHTS = Path(__file__).parent / "weights"  # the bundled checkpoints
DEFAULT_CHECKPOINT = WEIGHTS / "smallbn.safetensors"  # reads other writers best, and knows non-digits
CLASSES = [str(digit) for digit in range(10)]
NOT_DIGIT = "not_digit"  # the extra class of a network trained with non-digits: anything but one digit
SURE = 0.99  # a row whose top digit probability is below this gets a second look (row_scores)
# The second look: the digit moved by one or two pixels each way. Centring by the centre of mass
# is itself a pixel or two off for an unusual hand; an answer that holds only in one place is unsure.
NUDGES = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (2, 0), (-2, 0), (0, 2), (0, -2))


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """None: the bundled default. A bundled checkpoint's name (e.g. "lenet": no slash, no
    extension) is always that checkpoint, even where the current folder holds a file or folder
    of that name (a note says so, and how to name it: ./lenet). Anything else is a path."""
    if checkpoint is None:
        return DEFAULT_CHECKPOINT
    name = str(checkpoint)
    bundled = WEIGHTS / f"{name}.safetensors"
    if "/" not in name and os.sep not in name and not Path(name).suffix and bundled.is_file():
        if os.path.lexists(name):
            log(f"note: checkpoint {name!r} is the bundled one; for the {name} in the current folder, "
                f"write ./{name}")
        return bundled
    return Path(checkpoint)


def checkpoint_not_found(path: Path) -> UserError:
    names = ", ".join(bundled.stem for bundled in sorted(WEIGHTS.glob("*.safetensors")))
    problem = "is a folder" if os.path.isdir(path) else "not found"  # a train --out folder, say
    return UserError(f"checkpoint {path} {problem}; give a .safetensors file "
                     f"or a bundled name ({names}: see `mnist-batch checkpoints`)")


def file_sha256(path: Path) -> str:
    """Read a piece at a time: a file given by mistake may be larger than the memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def row_scores(log_probs_of, digits: np.ndarray, ok: list[bool], temperature: float,
               min_digit_score: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """For n inputs, the OK ones' digits given in order: (n, 10) digit probabilities and the (n,)
    digit score (None for a network without the "not a digit" output); zeros elsewhere.
    `log_probs_of` is the network: (m, 28, 28) uint8 -> (m, classes) float32 log-probabilities.
    A row the network is not sure of gets a second look: its probabilities are the mean over the
    digit as it is and nudged by each of NUDGES (on other writers' scans, 1.9% -> 1.2% wrong among
    rows at confidence >= 0.9, and 0.8 point more read right). The digit score is the first look's.
    A row whose digit score is under `min_digit_score` gets none: it becomes a not_digit row, whose
    probabilities are not kept, and most such rows are unsure (a form of empty boxes and marks
    would otherwise cost 13 looks a row)."""
    probs, digit_score = split_scores(log_probs_of(digits), temperature)
    unsure = probs.max(axis=1) < SURE
    if digit_score is not None:
        unsure &= ~(digit_score < min_digit_score)  # not rejected: the negation of results.build_rows' test
    unsure = np.flatnonzero(unsure)
    if len(unsure):
        views = np.concatenate([nudged(digits[unsure], down, right) for down, right in NUDGES])
        looks = split_scores(log_probs_of(views), temperature)[0].reshape(len(NUDGES), len(unsure), -1)
        probs[unsure] = (probs[unsure] + looks.sum(axis=0)) / (len(NUDGES) + 1)
    return spread(probs, ok), None if digit_score is None else spread(digit_score, ok)


def nudged(digits: np.ndarray, down: int, right: int) -> np.ndarray:
    """(n, h, w) digits moved `down` and `right` pixels (negative: up, left); black comes in."""
    moved = np.zeros_like(digits)
    height, width = digits.shape[1:]
    moved[:, max(down, 0) : height + min(down, 0), max(right, 0) : width + min(right, 0)] = \
        digits[:, max(-down, 0) : height + min(-down, 0), max(-right, 0) : width + min(-right, 0)]
    return moved


def split_scores(log_probs: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, classes) float32 log-probabilities -> (n, 10) digit probabilities, softmax over the
    digits' logits divided by the calibrated temperature; and the (n,) digit score, 1 - P(not a
    digit), untempered (None for a network without the "not a digit" output)."""
    logits = log_probs[:, :10] / np.float32(temperature)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    digits = exp / exp.sum(axis=1, keepdims=True)
    if log_probs.shape[1] == len(CLASSES):
        return digits, None
    return digits, 1.0 - np.exp(log_probs[:, len(CLASSES)])


def spread(values: np.ndarray, ok: list[bool]) -> np.ndarray:
    """Values of the OK inputs placed at their rows among all inputs; zeros elsewhere."""
    full = np.zeros((len(ok), *values.shape[1:]), np.float32)
    full[np.flatnonzero(np.asarray(ok, bool))] = values
    return full
