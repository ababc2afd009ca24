"""classify benchmarks; prints figures, asserts nothing. Run: make bench-classify
(or python bench/bench_classify.py [speed networks scans memory accuracy gpu] [CHECKPOINT ...]).
`gpu` measures the GPU targets where CUDA is present; the default run leaves it out."""

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from statistics import median

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured, write_mnist_pngs, write_scans  # noqa: E402

from mnist_batch.cores import cpu_count  # noqa: E402
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


PEER = Path(__file__).parent / "peer_imagefolder.py"


def paired(folder: Path, checkpoint: str, pairs: int, device: str = "cpu") -> tuple[list[dict], list[float]]:
    """Ours and the peer (with lenet, as the issue measured it) one after the other, `pairs` times:
    this machine's speed drifts by up to 30% over a day, so the ratio of each pair is what counts."""
    ours, peer = [], []
    for _ in range(pairs):
        ours.append(classify(folder, OUT / "paired.parquet", "--checkpoint", checkpoint, "--device", device))
        peer.append(run_measured([sys.executable, PEER, folder, OUT / "peer.csv", "lenet", device])["seconds"])
    return ours, peer


def report_pairs(checkpoint: str, ours: list[dict], peer: list[float], count: int, target: float) -> None:
    seconds = [run["seconds"] for run in ours]
    ratios = [mine / theirs for mine, theirs in zip(seconds, peer, strict=True)]
    print(f"  {checkpoint}: {spread(seconds, '.2f')} s ({count / median(seconds):,.0f} images/s); peer "
          f"{spread(peer, '.2f')} s; ours/peer median of pairs {median(ratios):.2f}  (target <= {target}); "
          f"steady state {median(pipeline_rate(run['stdout']) for run in ours):,.0f} images/s")


def speed(pairs: int = 5):
    """20,000 MNIST PNGs, each network paired against the ImageFolder+DataLoader peer."""
    folder = write_mnist_pngs(OUT / "mnist20k", 20_000)
    classify(folder, OUT / "warm.parquet")  # warm the page cache: every contender reads warm files
    print(f"20,000 MNIST PNGs (28x28), whole command, {pairs} pairs against the peer; {machine()}")
    for checkpoint, target in (("lenet", 0.25), ("smallbn", 0.40)):
        report_pairs(checkpoint, *paired(folder, checkpoint, pairs), 20_000, target)
    decode = [bare_decode_rate(folder) for _ in range(3)]
    print(f"  bare Pillow decode, all cores: {spread(decode, ',.0f')} images/s")


def gpu():
    """The issue's GPU targets in one command, on a machine with CUDA: 200,000 and 1,000,000 PNGs
    and 10,000 scan-like images."""
    import torch

    if not torch.cuda.is_available():
        print("gpu: no CUDA device here, nothing measured")
        return
    print(f"on {torch.cuda.get_device_name()}, {machine()}")
    folder = write_mnist_pngs(OUT / "mnist200k", 200_000)
    classify(folder, OUT / "warm.parquet", "--device", "cuda")
    print("200,000 MNIST PNGs, whole command (target <= 3 s, steady >= 150,000/s, <= 0.3x the peer):")
    for checkpoint in ("lenet", "smallbn"):
        report_pairs(checkpoint, *paired(folder, checkpoint, 3, "cuda"), 200_000, 0.3)
    two_hundred_k = classify(folder, OUT / "m200k.parquet", "--device", "cuda", "--checkpoint", "lenet")
    million = write_mnist_pngs(OUT / "mnist1m", 1_000_000)
    classify(million, OUT / "warm.parquet", "--device", "cuda")
    run = classify(million, OUT / "m1m.parquet", "--device", "cuda", "--checkpoint", "lenet")
    print(f"1,000,000 PNGs, lenet: {run['seconds']:.2f} s (target <= 10 s), "
          f"steady {pipeline_rate(run['stdout']):,.0f}/s; "
          f"peak RSS {run['peak_rss_mb']:.0f} MB against {two_hundred_k['peak_rss_mb']:.0f} MB at 200,000")
    scanned = write_scans(OUT / "scans10k", 10_000)
    classify(scanned, OUT / "warm.parquet", "--device", "cuda")
    run = classify(scanned, OUT / "scans.parquet", "--device", "cuda")
    print(f"10,000 scan-like images: {run['seconds']:.2f} s, steady {pipeline_rate(run['stdout']):,.0f}/s "
          "(target >= 30,000/s)")


def scans():
    folder = write_scans(OUT / "scans5k", 5_000)
    classify(folder, OUT / "warm.parquet")
    ours = classify(folder, OUT / "scans.parquet")
    print(f"5,000 scan-like RGB images (100-400 px, half JPEG, half PNG), {machine()}")
    print(f"  whole command {ours['seconds']:.2f} s; steady-state {pipeline_rate(ours['stdout']):,.0f} images/s"
          "  (target >= 4,000)")


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


SECTIONS = ("speed", "networks", "scans", "memory", "accuracy", "gpu")

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    sections = [a for a in sys.argv[1:] if a in SECTIONS]
    checkpoints = [a for a in sys.argv[1:] if a not in SECTIONS]  # bundled names or .safetensors files
    for section in sections or [section for section in SECTIONS if section != "gpu"]:
        globals()[section](*([checkpoints] if section in ("networks", "accuracy") else []))
