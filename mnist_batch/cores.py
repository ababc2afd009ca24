"""How many CPU threads torch should use: the cores other processes leave free.

torch's OpenMP threads wait for each other at the end of every operation, spinning. When
another process keeps the cores busy, a descheduled thread holds up the others and training
on all cores ran ten times slower than on a quiet machine; one thread per free core does not.
"""

import os
import statistics
import time
from functools import cache
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
SAMPLES, SAMPLE_GAP = 5, 0.01  # seconds apart: a passing process is not taken for a busy core


def cpu_count() -> int:
    """Cores this process may use (a container or taskset can allow fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def runnable_now(loadavg: Path = LOADAVG) -> int | None:
    """Tasks running or ready to run right now, this process included (Linux); None elsewhere."""
    try:
        return int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def busy_cores(loadavg: Path = LOADAVG) -> float:
    """Cores kept busy by other processes: the median of a few readings of the tasks ready to
    run, less this one; where that cannot be read, the one-minute load average."""
    readings = []
    for sample in range(SAMPLES):
        if sample:
            time.sleep(SAMPLE_GAP)
        count = runnable_now(loadavg)
        if count is None:
            return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        readings.append(count - 1)
    return statistics.median(readings)


def threads_for(requested: int, cores: int, loadavg: Path = LOADAVG) -> int:
    """`requested` when given (not 0); else one per core of `cores` that other processes leave free, at least one."""
    if requested:
        return requested
    return max(1, min(cores, cores - round(busy_cores(loadavg))))


@cache
def torch_default() -> int:
    """torch's own thread count (its physical cores), read before anything changes it."""
    import torch

    return torch.get_num_threads()


def use_threads(requested: int) -> int:
    """Set torch's CPU threads: `requested`, or one per free core. Returns the count."""
    import torch

    threads = threads_for(requested, torch_default())
    torch.set_num_threads(threads)
    return threads
