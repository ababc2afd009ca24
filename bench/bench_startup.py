"""A command's fixed cost: how fast `mnist-batch --help` answers (heavy imports wait for the
commands that need them), and what `classify` costs before and after its images: on an empty
folder (imports, option parsing, the walk, an empty result written) and on one image (the workers
and the model too). Run: python bench/bench_startup.py"""

import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured, write_mnist_pngs  # noqa: E402


def timed(command: list, runs: int = 7) -> str:
    seconds = [run_measured(command)["seconds"] for _ in range(runs)]
    return f"median {median(seconds):.3f} s (runs: {', '.join(f'{s:.3f}' for s in seconds)})"


def classify(folder: Path) -> list:
    return [BIN / "mnist-batch", "classify", folder, "--out", OUT / "startup.parquet", "--overwrite", "--quiet"]


if __name__ == "__main__":
    empty, one = OUT / "empty-folder", write_mnist_pngs(OUT / "one-png", 1)
    empty.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}")
    print(f"  mnist-batch --help: {timed([BIN / 'mnist-batch', '--help'])}  (target < 0.5 s)")
    print(f"  classify, an empty folder: {timed(classify(empty))}")
    print(f"  classify, one PNG: {timed(classify(one))}")
