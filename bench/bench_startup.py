"""How fast `mnist-batch --help` answers (heavy imports wait for the commands that need them).
Run: python bench/bench_startup.py"""

import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, machine, run_measured  # noqa: E402

if __name__ == "__main__":
    runs = [run_measured([BIN / "mnist-batch", "--help"])["seconds"] for _ in range(7)]
    print(f"mnist-batch --help, {machine()}: median {median(runs):.3f} s "
          f"(runs: {', '.join(f'{r:.3f}' for r in runs)})  (target < 0.5 s)")
