"""`report` over a 10-million-row result file (generated here), with labels from folders;
prints time and peak RSS. Run: make bench-report (or python bench/bench_report.py [rows])."""

import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured  # noqa: E402

from mnist_batch.results import PROB_COLUMNS, SCHEMA  # noqa: E402


def generate(path: Path, rows: int, chunk: int = 1_000_000) -> None:
    """A result file shaped like classify's: softmax rows, a few failures, label folders."""
    if path.exists() and pl.scan_parquet(path).select(pl.len()).collect().item() == rows:
        return
    rng = np.random.default_rng(0)
    parts = []
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        label = rng.integers(0, 10, n)
        logits = rng.normal(0, 1, (n, 10)).astype(np.float32)
        logits[np.arange(n), label] += rng.uniform(2, 12, n).astype(np.float32)  # mostly right
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        status = np.where(rng.random(n) < 0.001, "corrupt", "ok")
        ok = status == "ok"
        frame = pl.DataFrame({
            "path": [f"scans/{d}/{start + i:09d}.png" for i, d in enumerate(label)],
            "file_id": [f"/data/scans/{d}/{start + i:09d}.png" for i, d in enumerate(label)],
            "status": status,
            "error": [None if good else "cannot decode image" for good in ok],
            "pred": np.where(ok, probs.argmax(1), 0).astype(np.int8),
            "confidence": probs.max(1),
            **{c: probs[:, i] for i, c in enumerate(PROB_COLUMNS)},
            "digit_score": rng.uniform(0.9, 1.0, n).astype(np.float32),
            "min_digit_score": np.full(n, 0.25, np.float32),
            "file_size": rng.integers(200, 400, n),
            "file_mtime_ns": np.full(n, 1_790_000_000_000_000_000),
            "checkpoint": ["lenet.safetensors"] * n,
            "checkpoint_sha256": ["0" * 64] * n,
        }, schema=SCHEMA).with_columns(
            [pl.when(pl.Series(ok)).then(pl.col(c)).otherwise(None).alias(c)
             for c in ("pred", "confidence", *PROB_COLUMNS, "digit_score")])
        part = path.with_name(f".{path.stem}-{start}.parquet")
        frame.write_parquet(part)
        parts.append(part)
    pl.scan_parquet(parts).sink_parquet(path)
    for part in parts:
        part.unlink()


def main(rows: int):
    path = OUT / f"results-{rows}.parquet"
    generate(path, rows)
    print(f"report over {rows:,} rows ({path.stat().st_size / 2**20:.0f} MB Parquet), {machine()}")
    for label, extra in (("no labels", []), ("--labels-from-dirs", ["--labels-from-dirs"])):
        measured = run_measured([BIN / "mnist-batch", "report", path, "--json-out", OUT / "report.json", *extra])
        print(f"  {label}: {measured['seconds']:.1f} s, peak RSS {measured['peak_rss_mb']:.0f} MB "
              "(targets: < 15 s, < 2 GB)")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
