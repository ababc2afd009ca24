"""Local engine vs Ray engine on the 20,000 MNIST PNGs: a local Ray cluster started by the
command, and clusters started beforehand with one node (both cores) and with two simulated
nodes (a core each, ray.cluster_utils), reached with --address. Prints each whole command's
time and rate. Run: python bench/bench_ray.py"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, OUT, machine, run_measured, write_mnist_pngs  # noqa: E402


def rate(run: dict) -> float:
    """Images per second of the whole command, as classify --json reports it."""
    return json.loads(run["stdout"])["images_per_second"]


def classify_ray(folder: Path, *options) -> dict:
    shutil.rmtree(OUT / "ray-results", ignore_errors=True)
    return run_measured([BIN / "mnist-batch", "classify", folder, "--out", OUT / "ray-results", "--engine", "ray",
                         "--quiet", "--json", *options])


def on_cluster(folder: Path, nodes: int) -> dict:
    """The Ray engine on a cluster of `nodes` simulated nodes sharing this machine's cores; the
    output folder is on this machine, which every simulated node shares (--shared-out)."""
    from ray.cluster_utils import Cluster

    cores = 2
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cores // nodes})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cores // nodes)
    cluster.wait_for_nodes()
    try:
        return classify_ray(folder, "--address", cluster.address, "--shared-out")
    finally:
        cluster.shutdown()


def main():
    folder = write_mnist_pngs(OUT / "mnist20k", 20_000)
    local = run_measured([BIN / "mnist-batch", "classify", folder, "--out", OUT / "local.parquet", "--overwrite",
                          "--quiet", "--json"])
    started_by_command = classify_ray(folder)
    print(f"20,000 MNIST PNGs, {machine()}")
    print(f"  local engine: {local['seconds']:.1f} s whole command ({rate(local):,.0f} images/s)")
    print(f"  Ray engine, local cluster started by the command: {started_by_command['seconds']:.1f} s whole command "
          f"({rate(started_by_command):,.0f} images/s including cluster start)")
    for nodes in (1, 2):
        ray = on_cluster(folder, nodes)
        print(f"  Ray engine, running cluster of {nodes} node(s), {2 // nodes} core(s) each: {ray['seconds']:.1f} s "
              f"whole command ({rate(ray):,.0f} images/s)")


if __name__ == "__main__":
    main()
