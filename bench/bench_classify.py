"""classify benchmarks; prints figures, asserts nothing. Run: make bench-classify
(or python bench/bench_classify.py [speed networks scans memory accuracy] [CHECKPOINT ...])."""

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from statistics import median

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured, write_mnist_pngs, write_scans  # noqa: E402

from mnist_batch.classify import cpu_count  # noqa: E402
from mnist_batch.discover import discover  # noqa: E402


def pipeline_rate(stdout: str) -> float:
    """The steady-state rate from `classify --json`: first batch through the model to the last."""
    return json.loads(stdout)["pipeline_images_per_second"]


def decode_only(paths):
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            image.load()
    return len(paths)


def bare_decode_rate(folder: Path) -> float:
    paths = discover([str(folder)])
    chunks = [paths[i : i + 512] for i in range(0, len(paths), 512)]
    with Pool(cpu_count()) as pool:
        started = time.perf_counter()
        total = sum(pool.map(decode_only, chunks))
        return total / (time.perf_counter() - started)


def classify(folder: Path, out: Path, *extra) -> dict:
    return run_measured([BIN / "mnist-batch", "classify", folder, "--out", out, "--overwrite", "--quiet", "--json",
                         *extra])


def spread(values: list[float], fmt: str) -> str:
    return f"median {format(median(values), fmt)} (runs: {', '.join(format(v, fmt) for v in values)})"


def networks(checkpoints=(), runs: int = 3):
    """classify's speed with each checkpoint (a bundled name or a file), same files, same machine."""
    folder = write_mnist_pngs(OUT / "mnist20k", 20_000)
    classify(folder, OUT / "warm.parquet")
    print(f"20,000 MNIST PNGs (28x28) by checkpoint, whole command; {machine()}")
    for checkpoint in checkpoints or ["lenet", "smallbn"]:
        measured = [classify(folder, OUT / "nets.parquet", "--checkpoint", checkpoint) for _ in range(runs)]
        seconds = [run["seconds"] for run in measured]
        print(f"  {checkpoint}: {spread(seconds, '.2f')} s, {20_000 / median(seconds):,.0f} images/s whole command; "
              f"steady state {median(pipeline_rate(run['stdout']) for run in measured):,.0f} images/s")


def speed(runs: int = 5):
    """Medians of several runs: this machine's timings vary by 20% from run to run."""
    folder = write_mnist_pngs(OUT / "mnist20k", 20_000)
    classify(folder, OUT / "warm.parquet")  # warm the page cache: every contender reads warm files
    ours = [classify(folder, OUT / "mnist20k.parquet") for _ in range(runs)]
    seconds = [run["seconds"] for run in ours]
    rates = [pipeline_rate(run["stdout"]) for run in ours]
    decode = [bare_decode_rate(folder) for _ in range(3)]
    peer = [run_measured([sys.executable, Path(__file__).parent / "peer_imagefolder.py", folder, OUT / "peer.csv"])
            ["seconds"] for _ in range(3)]
    print(f"20,000 MNIST PNGs (28x28), {machine()}")
    print(f"  (a) whole command, start to closed Parquet: {spread(seconds, '.2f')} s  (target <= 3.0)")
    print(f"  (b) steady-state rate (pipeline_images_per_second) {spread(rates, ',.0f')} images/s  (target >= 15,000)")
    print(f"  (c) bare Pillow decode, all cores:          {spread(decode, ',.0f')} images/s; "
          f"(b)/(c) = {median(rates) / median(decode):.2f}  (target >= 0.4)")
    print(f"  (d) peer ImageFolder+DataLoader -> CSV:     {spread(peer, '.2f')} s; ours/peer = "
          f"{median(seconds) / median(peer):.2f}  (target <= 0.5)")


def scans():
    folder = write_scans(OUT / "scans5k", 5_000)
    classify(folder, OUT / "warm.parquet")
    ours = classify(folder, OUT / "scans.parquet")
    print(f"5,000 scan-like RGB images (100-400 px, half JPEG, half PNG), {machine()}")
    print(f"  whole command {ours['seconds']:.2f} s; steady-state {pipeline_rate(ours['stdout']):,.0f} images/s"
          "  (target >= 1,500)")


def memory():
    small = write_mnist_pngs(OUT / "mnist20k", 20_000)
    large = write_mnist_pngs(OUT / "mnist200k", 200_000)
    a = classify(small, OUT / "m20k.parquet")
    b = classify(large, OUT / "m200k.parquet")
    print(f"peak RSS of the whole process tree, {machine()}")
    print(f"  20,000 inputs:  {a['peak_rss_mb']:.0f} MB ({a['seconds']:.1f} s)")
    print(f"  200,000 inputs: {b['peak_rss_mb']:.0f} MB ({b['seconds']:.1f} s); ratio "
          f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}  (target <= 1.5, and < 1 GB)")


def accuracy(checkpoints=()):
    folder = write_scans(OUT / "scans-acc", 10_000, seed=1)
    for checkpoint in checkpoints or [None]:
        out = OUT / "scans-acc.parquet"
        classify(folder, out, *(["--checkpoint", checkpoint] if checkpoint else []))
        frame = pl.read_parquet(out).with_columns(
            label=pl.col("path").str.extract(r"/(\d)/[^/]+$").cast(pl.Int8))
        correct = (frame["pred"] == frame["label"]).fill_null(False).mean()
        print(f"preprocessing accuracy on 10,000 scan-like images from MNIST test digits "
              f"({checkpoint or 'bundled checkpoint'}): {correct:.2%}  (target >= 98%)")


SECTIONS = ("speed", "networks", "scans", "memory", "accuracy")

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    sections = [a for a in sys.argv[1:] if a in SECTIONS]
    checkpoints = [a for a in sys.argv[1:] if a not in SECTIONS]  # bundled names or .safetensors files
    for section in sections or SECTIONS:
        globals()[section](*([checkpoints] if section in ("networks", "accuracy") else []))
