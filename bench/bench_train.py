"""`mnist-batch train`, the whole command, timed.

    python bench/bench_train.py [--device auto|cpu|cuda] [--runs 3]
        the default recipe: wall time of the whole command, the training's own seconds, test
        accuracy, and whether `evaluate` of the written checkpoint gives the recorded figures
    python bench/bench_train.py --step-cost
        the training loop's CPU cost per step at 8 images a batch, one thread: the dispatch and
        Python work that a GPU pays as launch overhead, whatever the arithmetic
    python bench/bench_train.py --busy [--runs 2]
        one epoch on the CPU, quiet and with two spinning processes, threads chosen by train
        (new) against --threads set to every core (the old default), interleaved
"""

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured  # noqa: E402

SPINNER = "while True: pass"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_train(out: Path, *options) -> tuple[dict, float, dict]:
    """(measured, CPU seconds of the command, metrics.json) of one `train` run."""
    cpu = children_cpu()
    measured = run_measured([BIN / "mnist-batch", "train", "--quiet", "--out", out, *options])
    return measured, children_cpu() - cpu, json.loads((out / "metrics.json").read_text())


def default_recipe(device: str, runs: int) -> None:
    print(f"mnist-batch train (defaults), --device {device}, whole command, {machine()}")
    for run in range(runs):
        out = OUT / f"train-{run}"
        measured, _, metrics = timed_train(out, "--device", device)
        fit = sum(epoch["seconds"] for epoch in metrics["history"])
        evaluated = json.loads(subprocess.run(
            [BIN / "mnist-batch", "evaluate", "--checkpoint", metrics["checkpoint"],
             "--device", device, "--json"], capture_output=True, text=True, check=True).stdout)
        same = (evaluated["accuracy"], evaluated["loss"]) == (metrics["test_accuracy"], metrics["test_loss"])
        print(f"  run {run + 1}: {measured['seconds']:.1f} s wall, {metrics['seconds']:.1f} s in train "
              f"({fit:.1f} s in the {metrics['epochs']} epochs, batch {metrics['hyperparameters']['batch_size']}, "
              f"{metrics['threads']} threads) on {device_name(metrics['device'])}, "
              f"test accuracy {metrics['test_accuracy']:.2%}; "
              f"evaluate gives the recorded figures: {same}")
    print("  targets: CPU <= 15 s whole command, GPU <= 3 s; >= 99.0%")


def device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return device
    import torch

    return torch.cuda.get_device_name()


def busy_machine(runs: int) -> None:
    cores = os.cpu_count()
    print(f"mnist-batch train --epochs 1 --device cpu, quiet and with {cores} spinning processes, {machine()}")
    for busy in (False, True):
        spinners = [subprocess.Popen([sys.executable, "-c", SPINNER]) for _ in range(cores if busy else 0)]
        try:
            for run in range(runs):
                for label, options in (("old: every core", ["--threads", str(cores)]), ("new: chosen", [])):
                    load = os.getloadavg()[0]
                    measured, cpu, metrics = timed_train(OUT / "train-busy", "--epochs", "1", "--device", "cpu",
                                                         *options)
                    print(f"  {'busy' if busy else 'quiet'} run {run + 1}, {label}: {measured['seconds']:.1f} s wall, "
                          f"{cpu:.1f} s CPU, {metrics['threads']} threads, {metrics['test_accuracy']:.2%} "
                          f"(1-min load {load:.1f} before)")
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()


def step_cost(steps: int = 300) -> None:
    import time

    import torch

    from mnist_batch import data, train
    from mnist_batch.model import build

    torch.set_num_threads(1)
    mnist, test = data.load("train"), data.load("t10k")
    images, labels = torch.from_numpy(mnist.images.copy()), torch.from_numpy(mnist.labels.astype("int64"))
    few_tests = torch.from_numpy(test.images[:8].copy()), torch.from_numpy(test.labels[:8].astype("int64"))
    costs = []
    for _ in range(3):
        torch.manual_seed(1)
        model = build("lenet").to(memory_format=torch.channels_last)
        stream = train.batches(images, labels, 8, steps, torch.Generator().manual_seed(1))
        started = time.process_time()
        train.fit(model, stream, 1, steps, 0.015, few_tests, progress=False)
        costs.append((time.process_time() - started) / steps * 1e6)
    print(f"training loop, 8 images a batch, one thread: {', '.join(f'{c:,.0f}' for c in costs)} us CPU per step "
          f"({machine()}, 1-min load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--step-cost", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.step_cost:
        step_cost()
    elif args.busy:
        busy_machine(args.runs)
    else:
        default_recipe(args.device, args.runs)
