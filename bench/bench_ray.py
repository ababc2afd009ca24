"""Local engine vs Ray engine (a local Ray cluster started by the command) on the 20,000
MNIST PNGs; prints both times. Run: python bench/bench_ray.py"""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_classify import summary_rate  # noqa: E402
from common import BIN, OUT, machine, run_measured, write_mnist_pngs  # noqa: E402


def main():
    folder = write_mnist_pngs(OUT / "mnist20k", 20_000)
    local = run_measured([BIN / "mnist-batch", "classify", folder, "--out", OUT / "local.parquet", "--overwrite",
                          "--quiet"])
    shutil.rmtree(OUT / "ray-results", ignore_errors=True)
    ray = run_measured([BIN / "mnist-batch", "classify", folder, "--out", OUT / "ray-results", "--engine", "ray",
                        "--quiet"])
    print(f"20,000 MNIST PNGs, {machine()}")
    print(f"  local engine: {local['seconds']:.1f} s whole command ({summary_rate(local['stdout']):,.0f} images/s)")
    print(f"  Ray engine, local cluster started by the command: {ray['seconds']:.1f} s whole command "
          f"({summary_rate(ray['stdout']):,.0f} images/s including cluster start)")


if __name__ == "__main__":
    main()
