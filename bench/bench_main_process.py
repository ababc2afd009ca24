"""Main-process CPU per input of classify, beyond the model's forward pass.

The local engine's main process takes each decoded chunk from a worker (reading back the file the
worker spooled it to), places the model's outputs at the OK inputs' rows (checkpoints.spread), builds
the rows (results.build_rows) and looks for the inputs worth a log line. This bench does exactly
that for 20,000 inputs in chunks of 1,024 (2% failed, 2% blank, the rest OK) with made-up model
outputs, and prints the process CPU time per input, best of five. Target: <= 3 us per input.

    python bench/bench_main_process.py
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from mnist_batch import records, results  # noqa: E402
from mnist_batch.checkpoints import spread  # noqa: E402
from mnist_batch.classify import spooled, unspooled  # noqa: E402

INPUTS, CHUNK, RUNS = 20_000, 1024, 5


def decoded(i: int, rng) -> records.Decoded:
    if i % 50 == 7:
        return records.Decoded("corrupt", "cannot decode image: broken data stream", None, 100, 1_700_000_000 * 10**9)
    if i % 50 == 9:
        return records.Decoded("blank", "no ink found: the image is blank or has too little contrast", None, 90,
                               1_700_000_000 * 10**9)
    return records.Decoded("ok", None, rng.integers(0, 256, (28, 28), np.uint8), 250, 1_700_000_000 * 10**9 + i)


def decoded_chunks(folder: Path) -> list[records.DecodedChunk]:
    """The chunks as the workers make them, for real files (their file ids are resolved in the worker)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(INPUTS):
        path = folder / f"folder_{i // 1000:03d}" / f"image_{i:06d}.png"
        path.parent.mkdir(exist_ok=True)
        path.touch()
        paths.append(str(path))
    return [records.DecodedChunk.of(paths[start : start + CHUNK],
                                    [decoded(i, rng) for i in range(start, min(start + CHUNK, INPUTS))])
            for start in range(0, INPUTS, CHUNK)]


def main_process(sent: list[str], probs: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """CPU seconds of each step over all chunks, as classify.classify_paths runs them: the chunk
    read back from the file the worker spooled it to, then the rows."""
    spent = dict.fromkeys(("unspool", "spread", "build_rows", "log lines"), 0.0)
    for spooled_file in sent:
        began = time.process_time()
        chunk, _ = unspooled(spooled_file)
        unspooled_at = time.process_time()
        ok = chunk.ok
        full_probs, full_score = spread(probs[: ok.sum()], ok), spread(score[: ok.sum()], ok)
        spread_done = time.process_time()
        results.build_rows(chunk, full_probs, full_score, results.DEFAULT_MIN_DIGIT_SCORE,
                           "smallbn.safetensors", "0" * 64)
        built = time.process_time()
        failed = np.flatnonzero(chunk.failed)[:10].tolist()
        untimed = np.flatnonzero(chunk.sized & ~chunk.timed)[:10].tolist()
        [(chunk.paths[i], chunk.errors[i]) for i in failed + untimed]
        ended = time.process_time()
        for step, seconds in zip(spent, (unspooled_at - began, spread_done - unspooled_at, built - spread_done,
                                         ended - built), strict=True):
            spent[step] += seconds
    return spent


def main() -> None:
    rng = np.random.default_rng(1)
    probs = rng.random((CHUNK, 10)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    score = rng.random(CHUNK).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as spool:
        chunks = decoded_chunks(Path(folder))
        runs = [main_process([spooled((chunk, 0.0), spool) for chunk in chunks], probs, score) for _ in range(RUNS)]
    best = min(runs, key=lambda spent: sum(spent.values()))
    print(f"main-process CPU per input beyond the forward pass, {INPUTS:,} inputs in chunks of {CHUNK:,}; {machine()}")
    for step, seconds in best.items():
        print(f"  {step:<12} {seconds / INPUTS * 1e6:6.2f} us")
    total = [sum(spent.values()) / INPUTS * 1e6 for spent in runs]
    every = ", ".join(f"{t:.2f}" for t in total)
    print(f"  total        {min(total):6.2f} us per input (best of {RUNS}; all: {every}); target <= 3 us")


if __name__ == "__main__":
    main()
