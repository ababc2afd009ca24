"""Object storage in and out: a real S3 server (moto's standalone server on 127.0.0.1, started
once per test session) and the real CLI. Credentials and the endpoint come from the environment,
as they would for a user: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY."""

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from mnist_batch import run_files, storage
from tests.conftest import interruptible_classify, write_pngs, write_tiled_pngs

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

SECRET = "not-a-real-secret-but-never-to-be-shown"
BUCKETS = itertools.count()


@pytest.fixture(scope="session")
def s3_server():
    """The S3 endpoint URL; the AWS variables point every client of this process at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield settings["AWS_ENDPOINT_URL"]
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture
def store(s3_server, tmp_path, monkeypatch):
    """A new, empty bucket (its name) and a cache folder of this test's own."""
    import s3fs

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bucket = f"test-bucket-{os.getpid()}-{next(BUCKETS)}"
    fs = s3fs.S3FileSystem()
    fs.mkdir(bucket)
    fs.invalidate_cache()
    return fs, bucket


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_folder(fs, folder: Path, prefix: str) -> None:
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            fs.pipe_file(f"{prefix}/{file.relative_to(folder)}", file.read_bytes())
    fs.invalidate_cache()


@pytest.fixture(scope="module")
def scans(tmp_path_factory, mnist_test):
    """Digits, a broken file, a hidden file and a file that is no image by its name."""
    root = tmp_path_factory.mktemp("scans")
    write_pngs(root, mnist_test.images[:12], mnist_test.labels[:12])
    (root / "broken.png").write_bytes(b"not a png at all")
    (root / ".hidden.png").write_bytes(png_bytes(mnist_test.images[20]))
    (root / "notes.txt").write_text("not an input")
    return root


COMPARED = ("status", "error", "pred", "confidence", "digit_score", "file_size", "checkpoint_sha256")


def test_s3_in_and_out_gives_the_rows_of_a_local_run(cli, store, scans, tmp_path):
    fs, bucket = store
    upload_folder(fs, scans, f"{bucket}/scans")
    local = tmp_path / "local.parquet"
    assert cli("classify", scans, "--out", local, "--quiet").exit_code == 3

    result = cli("classify", f"s3://{bucket}/scans/", "--out", f"s3://{bucket}/out/preds.parquet", "--quiet")
    assert result.exit_code == 3, result.stderr
    assert f"-> s3://{bucket}/out/preds.parquet" in result.stdout
    data = fs.cat_file(f"{bucket}/out/preds.parquet")
    assert SECRET.encode() not in data and SECRET not in result.output
    got = pl.read_parquet(io.BytesIO(data))
    expected = pl.read_parquet(local)
    assert got.height == expected.height == 13  # the hidden file and notes.txt are no inputs
    assert got["file_id"].to_list() == got["path"].to_list()  # an object's identity is its URI
    assert [path.removeprefix(f"s3://{bucket}/scans/") for path in got["path"]] == \
        [os.path.relpath(path, scans) for path in expected["path"]]
    for column in COMPARED:
        assert got[column].to_list() == expected[column].to_list(), column
    assert got.filter(pl.col("status") == "not_image")["path"].to_list() == [f"s3://{bucket}/scans/broken.png"]
    assert got["file_mtime_ns"].null_count() == 0
    # Nothing of the run is left in the bucket but the result: its parts stayed in the local cache.
    assert fs.find(f"{bucket}/out") == [f"{bucket}/out/preds.parquet"]

    again = cli("classify", f"s3://{bucket}/scans/", "--out", f"s3://{bucket}/out/preds.parquet", "--quiet")
    assert again.exit_code == 2 and "pass --overwrite" in again.stderr


def test_resume_after_a_kill_uploads_every_row_once(store, mnist_test, tmp_path):
    fs, bucket = store
    folder, out = tmp_path / "many", f"s3://{bucket}/preds.parquet"
    write_tiled_pngs(folder, mnist_test, 100, 3)
    command = [str(part) for part in interruptible_classify(folder, out)]
    parts = run_files.parts_dir(storage.cache_folder(out) / "preds.parquet")  # where the README says they are
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(parts.glob("part-*.parquet")) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not fs.exists(f"{bucket}/preds.parquet")  # nothing half-written in the store

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: " in resumed.stderr and "of 300 inputs already have rows" in resumed.stderr
    fs.invalidate_cache()
    got = pl.read_parquet(io.BytesIO(fs.cat_file(f"{bucket}/preds.parquet")))
    assert got.height == 300 and got["file_id"].n_unique() == 300
    assert not parts.exists() and not (parts.parent / "preds.parquet").exists()  # nothing left behind


# The real CLI in a fresh process, whose workers each note whether the S3 driver was already loaded.
DRIVER_PROBE = """
import sys
from mnist_batch import classify, cli
started, probe_file = classify.init_worker, sys.argv.pop(1)
def init_worker(parent):
    with open(probe_file, "a") as probe:
        probe.write(f"{'s3fs' in sys.modules}\\n")
    started(parent)
classify.init_worker = init_worker
cli.main()
"""


def test_workers_share_the_store_driver_loaded_before_they_fork(store, scans, tmp_path):
    """s3:// inputs: the workers fork before the walk lists the bucket, but after the driver is
    imported, not each importing it again (0.3 CPU-s and 20 MB a worker)."""
    fs, bucket = store
    upload_folder(fs, scans, f"{bucket}/scans")
    probe = tmp_path / "probe.txt"
    command = [sys.executable, "-c", DRIVER_PROBE, probe, "classify", f"s3://{bucket}/scans/",
               "--out", tmp_path / "preds.parquet", "--quiet", "--workers", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr  # broken.png
    assert pl.read_parquet(tmp_path / "preds.parquet").height == 13
    assert probe.read_text().split() == ["True", "True"]


def test_file_uris_are_local_paths(cli, scans, tmp_path):
    out = tmp_path / "preds.parquet"
    result = cli("classify", f"file://{scans}", "--out", f"file://{out}", "--quiet")
    assert result.exit_code == 3, result.stderr
    assert pl.read_parquet(out).height == 13


def test_incremental_over_a_bucket_that_grows(cli, store, mnist_test):
    fs, bucket = store
    for i in range(3):
        fs.pipe_file(f"{bucket}/inbox/{i}.png", png_bytes(mnist_test.images[i]))
    fs.invalidate_cache()
    command = ("classify", f"s3://{bucket}/inbox/", "--out-dir", f"s3://{bucket}/results/", "--incremental",
               "--quiet")
    first = cli(*command)
    assert first.exit_code == 0, first.stderr

    fs.pipe_file(f"{bucket}/inbox/3.png", png_bytes(mnist_test.images[3]))
    fs.pipe_file(f"{bucket}/inbox/4.png", png_bytes(mnist_test.images[4]))
    fs.pipe_file(f"{bucket}/inbox/0.png", png_bytes(mnist_test.images[10]))  # replaced: another size
    fs.invalidate_cache()
    second = cli(*command)
    assert second.exit_code == 0, second.stderr
    assert "3 new, changed or to retry of 5 inputs" in second.stderr

    third = cli(*command)
    assert third.exit_code == 0 and "is up to date" in third.stdout

    fs.invalidate_cache()
    files = sorted(fs.glob(f"{bucket}/results/predictions-*.parquet"))
    assert len(files) == 2
    rows = [pl.read_parquet(io.BytesIO(fs.cat_file(file))) for file in files]
    assert [frame.height for frame in rows] == [3, 3]
    assert sorted(rows[1]["path"].to_list()) == [f"s3://{bucket}/inbox/{i}.png" for i in (0, 3, 4)]
    assert rows[1].filter(pl.col("path").str.ends_with("/0.png"))["pred"].item() == mnist_test.labels[10]


def test_report_reads_results_from_the_store(cli, store, scans):
    fs, bucket = store
    upload_folder(fs, scans, f"{bucket}/scans")
    out = f"s3://{bucket}/preds.parquet"
    assert cli("classify", f"s3://{bucket}/scans/", "--out", out, "--quiet").exit_code == 3
    result = cli("report", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 13 and summary["status"]["errors"] == {"not_image": 1}
    missing = cli("report", f"s3://{bucket}/nothing.parquet")
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1 and "nothing.parquet" in missing.stderr


def test_a_wrong_bucket_is_one_line_before_any_work(cli, store, scans, tmp_path):
    fs, bucket = store
    upload_folder(fs, scans, f"{bucket}/scans")
    for args in ((scans, "--out", "s3://no-such-bucket-here/preds.parquet"),
                 (scans, "--out-dir", "s3://no-such-bucket-here/results/"),
                 ("s3://no-such-bucket-here/scans/", "--out", tmp_path / "preds.parquet")):
        result = cli("classify", *args, "--quiet")
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "s3://no-such-bucket-here/" in result.stderr and "bucket" in result.stderr
    assert not (tmp_path / "preds.parquet").exists()
    assert not list((tmp_path / "cache").rglob("*.parquet"))


@pytest.mark.parametrize("problem", ["unreachable endpoint", "no credentials"])
def test_a_store_that_cannot_be_used_is_one_line(s3_server, scans, tmp_path, problem):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "AWS_EC2_METADATA_DISABLED": "true"}
    if problem == "unreachable endpoint":
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # the discard port: nothing listens there
    else:
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    result = subprocess.run([Path(sys.executable).parent / "mnist-batch", "classify", scans,
                             "--out", "s3://some-bucket/preds.parquet", "--quiet"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "s3://some-bucket/preds.parquet" in result.stderr
    assert ("AWS_ENDPOINT_URL" if problem == "unreachable endpoint" else "AWS_ACCESS_KEY_ID") in result.stderr
    assert SECRET not in result.stderr


@pytest.fixture(scope="module")
def two_node_cluster(s3_server):
    """A Ray cluster of two nodes on this machine (head and one worker, a CPU each), its workers
    started with the S3 settings in their environment, as a real cluster's are."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # No dashboard, as classify's own local cluster (ray_engine.py): starting it is seconds of CPU
    # the tests never use.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_ray_on_two_nodes_reads_and_writes_the_store(cli, store, scans, tmp_path, two_node_cluster):
    fs, bucket = store
    upload_folder(fs, scans, f"{bucket}/scans")
    local = tmp_path / "local.parquet"
    assert cli("classify", f"s3://{bucket}/scans/", "--out", local, "--quiet").exit_code == 3

    refused = cli("classify", f"s3://{bucket}/scans/", "--out", tmp_path / "ray-out", "--engine", "ray", "--quiet")
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "2 nodes" in refused.stderr and "s3://" in refused.stderr and "--shared-out" in refused.stderr

    out = f"s3://{bucket}/ray-out/"
    result = cli("classify", f"s3://{bucket}/scans/", "--out", out, "--engine", "ray", "--quiet",
                 "--batch-size", "4")
    assert result.exit_code == 3, result.stderr
    fs.invalidate_cache()
    assert fs.exists(f"{bucket}/ray-out/_SUCCESS")
    assert not [key for key in fs.find(bucket) if ".tmp-" in key]  # the temporary prefix is gone
    got = pl.concat([pl.read_parquet(io.BytesIO(fs.cat_file(key))) for key in fs.glob(f"{bucket}/ray-out/*.parquet")])
    got = got.sort("path")
    expected = pl.read_parquet(local)
    assert got.height == expected.height == 13 and got["file_id"].n_unique() == 13
    for column in ("path", "file_id", *COMPARED, "file_mtime_ns"):
        assert got[column].to_list() == expected[column].to_list(), column

    figures = json.loads(cli("report", out, "--json").stdout)
    assert figures["rows"] == 13 and figures["status"]["errors"] == {"not_image": 1}


def test_ray_on_two_nodes_writes_local_uris_on_the_driver(cli, scans, tmp_path, two_node_cluster):
    """--out local://PATH on several nodes: every part is written on the driver's node, so the
    folder holds every row (no --shared-out needed)."""
    local = tmp_path / "local.parquet"
    assert cli("classify", scans, "--out", local, "--quiet").exit_code == 3
    out = tmp_path / "ray-out"
    result = cli("classify", scans, "--out", f"local://{out}", "--engine", "ray", "--quiet", "--batch-size", "4")
    assert result.exit_code == 3, result.stderr
    got = pl.read_parquet(out).sort("path")
    expected = pl.read_parquet(local)
    assert got.height == expected.height == 13
    for column in ("path", "file_id", *COMPARED):
        assert got[column].to_list() == expected[column].to_list(), column
