"""Default `mnist-batch train`, the whole command, timed; prints wall time and test accuracy.
Run: make bench-train (or python bench/bench_train.py [runs])."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured  # noqa: E402


def main(runs: int):
    print(f"mnist-batch train (defaults), whole command, {machine()}")
    for run in range(runs):
        out = OUT / f"train-{run}"
        measured = run_measured([BIN / "mnist-batch", "train", "--quiet", "--out", out])
        metrics = json.loads((out / "metrics.json").read_text())
        print(f"  run {run + 1}: {measured['seconds']:.1f} s wall, test accuracy {metrics['test_accuracy']:.2%} "
              f"(targets: <= 15 s, >= 99.0%)")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
