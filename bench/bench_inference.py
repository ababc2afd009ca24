"""The network on the CPU, torch against ONNX Runtime (what classify uses there): digits per
CPU-second on one thread, in pieces of 128 as classify runs them, for each bundled checkpoint,
and the largest difference between their rows. Also the time to import each runtime.
Run: python bench/bench_inference.py [--count N]"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, mnist_test  # noqa: E402


def import_seconds(module: str, runs: int = 3) -> float:
    """Median wall time of a new Python process that imports `module`, less one that imports nothing."""
    def median_run(code: str) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    return median_run(f"import {module}") - median_run("pass")


def per_cpu_second(score, digits: np.ndarray) -> tuple[float, tuple]:
    started = time.process_time()
    result = score(digits, [True] * len(digits))
    return len(digits) / (time.process_time() - started), result


if __name__ == "__main__":
    import torch

    from mnist_batch import onnx_inference
    from mnist_batch.model import Inference

    args = sys.argv[1:]
    count = int(args[args.index("--count") + 1]) if "--count" in args else 10_000
    torch.set_num_threads(1)  # as classify runs it
    digits = mnist_test().images[:count].copy()
    print(f"the network on one CPU thread, {count:,} MNIST test digits; {machine()}")
    for module in ("torch", "onnxruntime"):
        print(f"  import {module}: {import_seconds(module):.2f} s")
    for name in ("lenet", "smallbn"):
        by_torch, by_onnx = Inference(name, "cpu"), onnx_inference.load(name, "cpu")
        per_cpu_second(by_onnx.scores, digits[:256])  # warm both up
        per_cpu_second(by_torch.scores, digits[:256])
        torch_rate, (torch_probs, _) = per_cpu_second(by_torch.scores, digits)
        onnx_rate, (onnx_probs, _) = per_cpu_second(by_onnx.scores, digits)
        print(f"  {name}: torch {torch_rate:,.0f}/s, ONNX Runtime {onnx_rate:,.0f}/s ({onnx_rate / torch_rate:.2f}x); "
              f"largest probability difference {np.abs(torch_probs - onnx_probs).max():.1e}, "
              f"same digit {(torch_probs.argmax(1) == onnx_probs.argmax(1)).mean():.2%}")
