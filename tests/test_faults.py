"""classify and its jobs under attack: special files, dying workers, odd names, concurrent
runs, stale resumes, nonsense options. Each test reproduces one fault on real files."""

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest
from PIL import Image

from mnist_batch import reading, records, report_html, results, run_files
from mnist_batch.classify import CHUNKS_PER_WORKER, DecodePool
from tests.conftest import (
    interruptible_classify,
    patched_environment,
    signalled_call,
    write_pngs,
    write_tiled_pngs,
)

BIN = Path(sys.executable).parent
MNIST_BATCH = str(BIN / "mnist-batch")
# root reads any file; without these capabilities it meets permissions as anyone does
AS_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def classify(cli, *args):
    return cli("classify", *[str(a) for a in args], "--quiet")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([MNIST_BATCH, *map(str, args)], capture_output=True, text=True, timeout=120, **kwargs)


def png(path: Path, digit: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(digit).save(path, "PNG")
    return path


def rows(out: Path) -> pl.DataFrame:
    return results.scan(out).collect()


def crashed_run(cli, inputs: list, out: Path) -> None:
    """What a run killed after its first part file leaves: those rows in the parts, no --out."""
    finished = out.parent / f"finished-{out.name}"
    classify(cli, *inputs, "--out", finished)
    run_files.parts_dir(out).mkdir()
    os.replace(finished, run_files.parts_dir(out) / "part-000000.parquet")


# 1-2: special files named like images


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dev-urandom"])
@pytest.mark.parametrize("named", [False, True], ids=["in-folder", "named"])
def test_special_file_named_like_an_image_is_an_unsupported_row(cli, tmp_path, mnist_test, kind, named):
    folder = tmp_path / "in"
    png(folder / "good.png", mnist_test.images[0])
    special = folder / "x.png"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special.symlink_to(f"/dev/{kind.removeprefix('dev-')}")
    out = tmp_path / "o.parquet"
    result = classify(cli, *([folder, special] if named else [folder]), "--out", out)
    assert result.exit_code == 3, result.stderr
    frame = rows(out)
    assert frame.height == 2
    row = frame.filter(pl.col("path") == str(special)).row(0, named=True)
    assert row["status"] == "unsupported" and "not an image file" in row["error"]


@pytest.mark.timeout(30)
def test_read_file_stops_at_the_cap_when_st_size_says_zero(monkeypatch):
    maps = "/proc/self/maps"  # a regular file whose st_size is 0, with kilobytes in it
    assert os.stat(maps).st_size == 0
    monkeypatch.setattr(reading, "MAX_FILE_BYTES", 512)
    with pytest.raises(reading.ImageProblem) as problem:
        reading.read_file(maps)
    assert problem.value.status == "too_large"


@pytest.mark.timeout(30)
def test_report_images_of_a_path_that_became_a_fifo_do_not_block(tmp_path, mnist_test):
    good = png(tmp_path / "good.png", mnist_test.images[0])
    assert all(uri.startswith("data:image/png") for uri in report_html.input_images(str(good)))
    os.mkfifo(tmp_path / "now-a-fifo.png")
    assert report_html.input_images(str(tmp_path / "now-a-fifo.png")) == (None, None)


# 3: dying workers


def start_classify(folder: Path, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([MNIST_BATCH, "classify", folder, "--out", out, "--quiet", *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def workers_of(process: subprocess.Popen, count: int) -> list[psutil.Process]:
    deadline = time.time() + 30
    while time.time() < deadline:
        children = psutil.Process(process.pid).children()
        if len(children) >= count:
            return children
        time.sleep(0.02)
    raise AssertionError("the worker processes never started")


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.timeout(120)
def test_worker_killed_mid_run_is_replaced_and_every_input_gets_one_row(tmp_path, mnist_test):
    folder = tmp_path / "in"
    write_tiled_pngs(folder, mnist_test, 300, 2)
    out = tmp_path / "o.parquet"
    # Every row ok: the network's judgement of an odd MNIST digit (not_digit) is not this test's subject.
    process = start_classify(folder, out, "--workers", "2", "--batch-size", "16", "--min-digit-score", "0")
    workers_of(process, 2)[0].kill()
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    assert "a decoding worker died" in stderr and "Traceback" not in stderr
    frame = rows(out)
    assert frame.height == 600 and frame["path"].n_unique() == 600 and set(frame["status"]) == {"ok"}


def die_on_poison(paths: list[str], max_pixels: int) -> records.DecodedChunk:
    """A decoder that crashes its process on one file, as a segfaulting codec would."""
    if any("poison" in path for path in paths):
        os.kill(os.getpid(), signal.SIGKILL)
    return records.preprocess_chunk(paths, max_pixels)


@pytest.mark.timeout(120)
def test_file_that_kills_its_worker_again_gets_a_crashed_row(tmp_path, mnist_test):
    paths = [str(png(tmp_path / f"{i:03d}.png", mnist_test.images[i])) for i in range(40)]
    paths[17] = str(png(tmp_path / "poison.png", mnist_test.images[17]))
    pool = DecodePool(workers=2, max_pixels=reading.DEFAULT_MAX_PIXELS)
    pool.decode_all(paths, chunk_size=8, decode=die_on_poison)
    chunks = list(pool.chunks())
    pool.close()
    statuses = {path: status for chunk in chunks
                for path, (status, _) in zip(chunk.paths, chunk.outcomes(), strict=True)}
    assert sum(len(chunk.paths) for chunk in chunks) == 40 and set(statuses) == set(paths)
    assert statuses.pop(paths[17]) == "crashed"
    assert set(statuses.values()) == {"ok"}


class DiesInAForkedChild:
    """Garbage an extension leaves (a Ray object reference, after a Ray job in the same process):
    finalised in a process forked from its own, it crashes that process, as Ray's did to classify's
    workers after the Ray tests had run in the same test process."""

    def __init__(self):
        self.owner, self.cycle = os.getpid(), self  # a cycle: only the garbage collector frees it

    def __del__(self):
        if os.getpid() != self.owner:
            os.kill(os.getpid(), signal.SIGKILL)


def collecting_decode(paths: list[str], max_pixels: int) -> records.DecodedChunk:
    gc.collect()  # as a worker's own allocations would, sooner or later
    return records.preprocess_chunk(paths, max_pixels)


@pytest.mark.timeout(120)
def test_workers_never_finalise_the_garbage_their_parent_left_uncollected(tmp_path, mnist_test):
    paths = [str(png(tmp_path / f"{i:03d}.png", mnist_test.images[i])) for i in range(24)]
    gc.disable()  # the parent's collector has not run since the garbage was made
    try:
        DiesInAForkedChild()
        pool = DecodePool(workers=2, max_pixels=reading.DEFAULT_MAX_PIXELS)
        pool.decode_all(paths, chunk_size=8, decode=collecting_decode)
        chunks = list(pool.chunks())
        pool.close()
    finally:
        gc.enable()
        gc.collect()  # here, in its own process, it is freed harmlessly
    statuses = [status for chunk in chunks for status, _ in chunk.outcomes()]
    assert len(statuses) == 24 and set(statuses) == {"ok"}, statuses


@pytest.mark.timeout(120)
def test_chunks_lost_with_a_worker_are_retried_in_halves_a_window_at_a_time(tmp_path, mnist_test):
    """The read-ahead holds a whole small run; every file of its lost chunks was retried one per task,
    all sent at once (and summed over on every send: a 100,000-file run never finished), and the
    poison file's second crash sent every one still queued to run by itself."""
    paths = [str(png(tmp_path / f"{i:03d}.png", mnist_test.images[i % 100])) for i in range(256)]
    paths[5] = str(png(tmp_path / "poison.png", mnist_test.images[5]))
    pool = DecodePool(workers=2, max_pixels=reading.DEFAULT_MAX_PIXELS)
    pool.decode_all(paths, chunk_size=32, decode=die_on_poison)
    chunks, most_alone = [], 0
    for chunk in pool.chunks():
        chunks.append(chunk)
        most_alone = max(most_alone, len(pool.alone))
    pool.close()
    outcomes = [status for chunk in chunks for status, _ in chunk.outcomes()]
    assert sorted(path for chunk in chunks for path in chunk.paths) == sorted(paths)
    assert outcomes.count("crashed") == 1 and outcomes.count("ok") == 255
    assert most_alone < 2 * CHUNKS_PER_WORKER
    assert len(chunks) < 64  # halves: not a task for each of the 200-odd lost files


def test_a_decoded_chunk_crosses_the_pipe_as_a_file_name_that_a_pipe_keeps_whole(tmp_path, mnist_test):
    """A worker killed (out of memory, kill -9) while it sent a chunk of digits, far larger than a
    pipe's buffer, left half a message in the pool's result pipe: the run waited for the rest
    forever (a 400 MB result, the worker killed 0.6 s into it). Now only the name of a spooled file
    crosses the pipe, in one write (PIPE_BUF), and the chunk comes back whole from the file."""
    import pickle
    import select

    from mnist_batch.classify import make_spool, timed, unspooled

    paths = [str(png(tmp_path / f"{i}.png", mnist_test.images[i])) for i in range(256)]
    spool = make_spool()
    sent = timed(records.preprocess_chunk, paths, reading.DEFAULT_MAX_PIXELS, spool)
    assert len(pickle.dumps(sent)) <= select.PIPE_BUF
    chunk, seconds = unspooled(sent)
    assert chunk.paths == paths and (chunk.digits == mnist_test.images[:256]).all() and seconds > 0
    assert not os.listdir(spool)  # read once, then gone
    os.rmdir(spool)


def test_a_run_leaves_no_spool_behind(tmp_path, mnist_test):
    folder = tmp_path / "in"
    write_pngs(folder, mnist_test.images[:40], mnist_test.labels[:40])
    spools = tmp_path / "tmp"
    spools.mkdir()
    done = subprocess.run([MNIST_BATCH, "classify", folder, "--out", tmp_path / "o.parquet", "--quiet"],
                          capture_output=True, text=True, env=os.environ | {"TMPDIR": str(spools)})
    assert done.returncode == 0, done.stderr
    assert rows(tmp_path / "o.parquet").height == 40 and not list(spools.iterdir())


def test_spools_of_killed_runs_are_swept_and_nothing_else(tmp_path, monkeypatch):
    """kill -9 leaves a run no time to remove its spool: the next run removes it, and leaves alone a
    live run's spool and a link that only carries the name."""
    import tempfile

    from mnist_batch.classify import SPOOL_PREFIX, make_spool

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir reads TMPDIR again
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{SPOOL_PREFIX}{gone.stdout.strip()}-abc"
    dead.mkdir()
    (dead / "x.chunk").write_bytes(b"rows")
    alive = tmp_path / f"{SPOOL_PREFIX}{os.getpid()}-def"
    alive.mkdir()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("mine")
    link = tmp_path / f"{SPOOL_PREFIX}{gone.stdout.strip()}-link"
    link.symlink_to(kept)
    spool = make_spool()
    assert not dead.exists() and alive.is_dir() and link.is_symlink() and (kept / "file").read_text() == "mine"
    assert Path(spool).parent == tmp_path and Path(spool).name.startswith(f"{SPOOL_PREFIX}{os.getpid()}-")


def test_no_room_for_the_spool_is_a_user_error_naming_tmpdir(monkeypatch):
    import errno
    import tempfile

    from mnist_batch.classify import make_spool
    from mnist_batch.errors import UserError

    def full(**_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    with pytest.raises(UserError, match="No space left on device.*set TMPDIR to a writable folder"):
        make_spool()


@pytest.mark.timeout(120)
def test_workers_exit_quietly_when_the_main_process_is_killed(tmp_path, mnist_test):
    folder = tmp_path / "in"
    write_tiled_pngs(folder, mnist_test, 500, 12)
    out = tmp_path / "o.parquet"
    process = start_classify(folder, out, "--workers", "2", "--batch-size", "32")
    workers = workers_of(process, 2)
    wait_for(run_files.parts_dir(out) / "part-000000.parquet", process)  # mid-run: the workers are busy
    process.kill()
    _, stderr = process.communicate(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "workers outlived their main process"
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


@pytest.mark.timeout(180)
def test_an_out_dir_link_swapped_mid_run_loses_no_row(tmp_path, mnist_test):
    """`ln -sfn B cur` while a run writes into cur (= A): the run's lock, parts and result file all
    stay in A, the folder it started with, and every input has its row there."""
    folder, first, second, current = tmp_path / "in", tmp_path / "A", tmp_path / "B", tmp_path / "cur"
    paths = write_tiled_pngs(folder, mnist_test, 64, 10)
    first.mkdir()
    second.mkdir()
    current.symlink_to(first)
    process = subprocess.Popen([MNIST_BATCH, "classify", folder, "--out-dir", current, "--quiet", "--workers", "1",
                                "--batch-size", "16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(first.glob(".predictions-*.parts/part-000000.parquet")):
        assert process.poll() is None and time.time() < deadline, "no part file appeared in A"
        time.sleep(0.01)
    (tmp_path / "next").symlink_to(second)
    os.replace(tmp_path / "next", current)  # what ln -sfn B cur does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    (result,) = run_files.result_files(first)
    assert pl.read_parquet(result)["path"].n_unique() == len(paths)
    assert not list(second.iterdir())


# 4-6: names and folders


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop_at", ["after the part is renamed into place", "while counting its rows"])
def test_a_stop_signal_in_the_middle_of_writing_a_part_keeps_each_row_once(tmp_path, monkeypatch, stop_at):
    """SIGTERM raises KeyboardInterrupt wherever the main process is; classify.interrupted then
    flushes the rows not yet in a part. A stop after a part was written but before the buffer was
    emptied wrote the same rows again as the next part, and --resume gave them twice (2,016 rows
    for 2,000 inputs, once in a CI run). Here the stop lands at two such places in flush()."""
    rows = pl.DataFrame({column: pl.Series([None] * 16, dtype=kind) for column, kind in results.SCHEMA.items()})
    rows = rows.with_columns(file_id=pl.Series([f"/in/{i}.png" for i in range(16)]))
    run = run_files.RunFiles(tmp_path / "out.parquet", "parquet")
    run.buffered, run.buffered_rows = [rows], rows.height
    write_atomic, height = run_files.write_atomic, pl.DataFrame.height
    stopped = []

    def stop_once():
        if not stopped:
            stopped.append(True)
            raise KeyboardInterrupt

    if stop_at == "after the part is renamed into place":
        monkeypatch.setattr(run_files, "write_atomic", lambda *args, **kw: (write_atomic(*args, **kw), stop_once()))
    else:
        monkeypatch.setattr(pl.DataFrame, "height", property(lambda frame: (stop_once(), height.fget(frame))[1]))
    with pytest.raises(KeyboardInterrupt):
        run.flush()
    run.flush()  # as classify.interrupted does
    kept = run.scan_parts().collect()
    assert sorted(kept["file_id"].to_list()) == sorted(rows["file_id"].to_list())
    assert run.kept_rows == 16


def test_name_that_is_not_utf8_is_classified_stored_escaped_and_resumed(cli, tmp_path, mnist_test):
    folder = tmp_path / "in"
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.png")
    png(Path(odd), mnist_test.images[0])
    out = tmp_path / "o.parquet"
    assert classify(cli, folder, "--out", out).exit_code == 0
    assert rows(out)["path"].to_list() == [str(folder / "caf\\xe9.png")]

    # --resume recognises it: a crashed run's parts hold its row, only the new file is classified
    out.unlink()
    crashed_run(cli, [folder], out)
    png(folder / "new.png", mnist_test.images[1])
    result = classify(cli, folder, "--out", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "1 of 2 inputs already have rows" in result.stderr
    assert rows(out)["status"].to_list() == ["ok", "ok"]

    # incremental too: a second run finds nothing new
    assert classify(cli, folder, "--out-dir", tmp_path / "r", "--incremental").exit_code == 0
    again = classify(cli, folder, "--out-dir", tmp_path / "r", "--incremental")
    assert again.exit_code == 0 and "nothing new" in again.stdout


@pytest.mark.timeout(60)
def test_spellings_of_one_file_give_one_row(cli, tmp_path, mnist_test, monkeypatch):
    png(tmp_path / "a.png", mnist_test.images[0])
    png(tmp_path / "dir" / "b.png", mnist_test.images[1])
    monkeypatch.chdir(tmp_path)
    result = classify(cli, "a.png", "./a.png", ".//a.png", "dir//b.png", "dir/b.png", "./dir/", "--out", "o.csv")
    assert result.exit_code == 0, result.stderr
    assert rows(tmp_path / "o.csv")["path"].to_list() == ["a.png", "dir/b.png"]


@pytest.mark.timeout(60)
def test_files_from_keeps_spaces_and_strips_only_the_line_ending(cli, tmp_path, mnist_test):
    spaced = png(tmp_path / " padded name.png ", mnist_test.images[0])
    plain = png(tmp_path / "plain.png", mnist_test.images[1])
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"{spaced}\r\n{plain}\n\n".encode())
    result = classify(cli, "--files-from", listing, "--out", tmp_path / "o.csv")
    assert result.exit_code == 0, result.stderr
    assert sorted(rows(tmp_path / "o.csv")["path"]) == sorted([str(spaced), str(plain)])


@pytest.mark.timeout(60)
def test_symlink_loop_named_like_an_image_is_an_unreadable_row(cli, tmp_path, mnist_test):
    folder = tmp_path / "in"
    png(folder / "good.png", mnist_test.images[0])
    (folder / "loop.png").symlink_to(folder / "loop.png")
    out = tmp_path / "o.parquet"
    assert classify(cli, folder, "--out", out).exit_code == 3
    row = rows(out).filter(pl.col("path") == str(folder / "loop.png")).row(0, named=True)
    assert row["status"] == "unreadable" and "symlink loop" in row["error"]


@pytest.mark.timeout(120)
def test_unreadable_subfolder_is_a_row_and_exit_3(tmp_path, mnist_test):
    folder = tmp_path / "in"
    png(folder / "good.png", mnist_test.images[0])
    locked = folder / "locked"
    png(locked / "inside.png", mnist_test.images[1])
    locked.chmod(0)
    out = tmp_path / "o.parquet"
    done = subprocess.run([*AS_USER, MNIST_BATCH, "classify", folder, "--out", out, "--quiet"],
                          capture_output=True, text=True, timeout=120)
    locked.chmod(0o755)
    assert done.returncode == 3, done.stderr
    row = rows(out).filter(pl.col("path") == str(locked)).row(0, named=True)
    assert row["status"] == "unreadable" and "cannot list this folder" in row["error"]


@pytest.mark.timeout(120)
def test_tree_1100_levels_deep_is_walked(cli, tmp_path, mnist_test):
    deepest = tmp_path / "tree"
    deepest.mkdir()
    for _ in range(1100):
        deepest = deepest / "d"
        deepest.mkdir()  # os.makedirs itself recurses: one level at a time
    png(deepest / "deep.png", mnist_test.images[0])
    out = tmp_path / "o.parquet"
    try:
        result = classify(cli, tmp_path / "tree", "--out", out)
        assert result.exit_code == 0, result.stderr
        assert rows(out)["path"].to_list() == [str(deepest / "deep.png")]
    finally:  # pytest's own clean-up recurses, and would fail on this tree
        (deepest / "deep.png").unlink()
        while deepest != tmp_path:
            deepest.rmdir()
            deepest = deepest.parent


# 7-8: concurrent runs


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["out", "out-dir"])
def test_second_run_on_the_same_output_exits_75_and_the_first_finishes_whole(tmp_path, mnist_test, mode):
    folder = tmp_path / "in"
    write_tiled_pngs(folder, mnist_test, 500, 4)
    output = tmp_path / ("o.parquet" if mode == "out" else "results")
    option = ["--out", output] if mode == "out" else ["--out-dir", output, "--incremental"]
    lock = output.parent / ".o.parquet.lock" if mode == "out" else output / ".mnist-batch.lock"
    command = [MNIST_BATCH, "classify", *option, "--quiet", "--workers", "1", "--batch-size", "64"]
    # The first run takes the lock, then waits for its list of inputs: it holds the lock for as long
    # as the second run takes, however fast runs are. (Stopped with SIGSTOP once the lock appeared,
    # it had sometimes finished already on a busy machine.)
    first = subprocess.Popen([*command, "--files-from", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lock, first)
        started = time.perf_counter()
        second = subprocess.run([*command, folder], capture_output=True, text=True, timeout=60)
        assert time.perf_counter() - started < 10
        assert second.returncode == 75, second.stderr
        assert f"pid {first.pid}" in second.stderr and str(output) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    except BaseException:
        first.kill()  # else it waits on its input for ever
        raise
    listing = "".join(f"{path}\n" for path in sorted(folder.rglob("*.png")))
    _, stderr = first.communicate(listing, timeout=120)
    assert first.returncode == 0, stderr
    files = [output] if mode == "out" else sorted(output.glob("predictions-*.parquet"))
    assert len(files) == 1 and rows(files[0]).height == 2000 and rows(files[0])["path"].n_unique() == 2000
    assert not lock.exists()


# 9-11: resume and incremental tell the truth


@pytest.mark.timeout(60)
def test_resume_summary_and_exit_code_count_the_kept_failed_row(cli, tmp_path, mnist_test):
    folder = tmp_path / "in"
    (folder / "bad").mkdir(parents=True)
    (folder / "bad" / "notes.png").write_text("not an image")
    out = tmp_path / "o.parquet"
    crashed_run(cli, [folder], out)
    png(folder / "good.png", mnist_test.images[0])
    result = classify(cli, folder, "--out", out, "--resume")
    assert result.exit_code == 3
    assert "1 ok, 1 failed" in result.stdout
    assert sorted(rows(out)["status"]) == ["not_image", "ok"]


@pytest.mark.timeout(60)
def test_resume_with_other_inputs_drops_the_rows_of_inputs_no_longer_given(cli, tmp_path, mnist_test):
    old = png(tmp_path / "old" / "a.png", mnist_test.images[0])
    new = png(tmp_path / "new" / "b.png", mnist_test.images[1])
    out = tmp_path / "o.parquet"
    crashed_run(cli, [old.parent], out)
    result = classify(cli, new.parent, "--out", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "dropping 1 rows" in result.stderr
    assert rows(out)["path"].to_list() == [str(new)]


@pytest.mark.timeout(120)
def test_incremental_retries_transient_errors_but_not_content_errors(tmp_path, mnist_test):
    folder = tmp_path / "in"
    locked = png(folder / "locked.png", mnist_test.images[0])
    (folder / "notes.png").write_text("not an image")
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    pl.DataFrame({"path": ["x"], "label": [1]}).write_parquet(results_dir / "review.parquet")  # not a result file
    command = [*AS_USER, MNIST_BATCH, "classify", folder, "--out-dir", results_dir, "--incremental", "--quiet"]
    locked.chmod(0)
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 3, first.stderr
    locked.chmod(0o644)  # fixing permissions changes only the ctime
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    newest = rows(sorted(results_dir.glob("predictions-*.parquet"))[-1])
    assert newest.select("path", "status").rows() == [(str(locked), "ok")]
    third = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "nothing new" in third.stdout


# 13-15 and a misspelt input: refused before any work


@pytest.mark.timeout(60)
def test_out_equal_to_an_input_file_is_a_usage_error(cli, tmp_path, mnist_test):
    image = png(tmp_path / "scan.png", mnist_test.images[0])
    before = image.read_bytes()
    result = classify(cli, image, "--out", image, "--format", "csv", "--overwrite")
    assert result.exit_code == 2 and "is one of the inputs" in result.stderr
    assert image.read_bytes() == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_out_that_is_a_folder_is_a_usage_error_up_front(cli, tmp_path, mnist_test, extra):
    png(tmp_path / "in" / "a.png", mnist_test.images[0])
    (tmp_path / "o.parquet").mkdir()
    result = classify(cli, tmp_path / "in", "--out", tmp_path / "o.parquet", *extra)
    assert result.exit_code == 2 and "is a folder" in result.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [
    ["classify", "--workers=-1", "IN", "--out", "o.csv"],
    ["classify", "--workers=99999999", "IN", "--out", "o.csv"],  # as many processes: the machine ran out of memory
    ["classify", "--batch-size=0", "IN", "--out", "o.csv"],
    ["classify", "--max-pixels=0", "IN", "--out", "o.csv"],
    ["classify", "--device=tpu", "IN", "--out", "o.csv"],
    ["train", "--epochs=0", "--out", "OUT"],
    ["train", "--lr=0", "--out", "OUT"],
    ["train", "--lr=-0.1", "--out", "OUT"],
    ["train", "--device=tpu", "--out", "OUT"],
    ["evaluate", "--device=tpu"],
], ids=lambda command: " ".join(command[:2]))
def test_impossible_option_values_are_usage_errors(tmp_path, mnist_test, command):
    png(tmp_path / "in" / "a.png", mnist_test.images[0])
    args = [str(tmp_path / "in") if a == "IN" else str(tmp_path / "train") if a == "OUT" else a for a in command]
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "at most" in done.stderr or "--workers=99999999" not in command
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "train").exists()


# In a fresh interpreter: the command's usage error, and whether torch was imported to find it.
USAGE_ERROR_IMPORTS = """
import sys
from typer.testing import CliRunner
from mnist_batch.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(result.exit_code, "torch" in sys.modules)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["train", "--epochs=0"], ["train", "--arch=resnet"], ["train", "--device=tpu"],
                                     ["evaluate", "--device=tpu"]], ids=" ".join)
def test_a_mistyped_train_or_evaluate_option_is_answered_before_torch_is_imported(tmp_path, command):
    """Importing torch takes seconds: train and evaluate check their options' values first
    (train_options.check_values, options.check_device)."""
    done = subprocess.run([sys.executable, "-c", USAGE_ERROR_IMPORTS, *command, "--out", str(tmp_path / "o")]
                          if command[0] == "train" else [sys.executable, "-c", USAGE_ERROR_IMPORTS, *command],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert not (tmp_path / "o").exists()


def test_the_architectures_train_checks_are_the_networks_there_are():
    from mnist_batch.model import ARCHITECTURES
    from mnist_batch.train_options import ARCHITECTURE_NAMES

    assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES


@pytest.mark.timeout(60)
def test_misspelt_input_is_a_usage_error_but_a_stale_list_entry_is_a_row(cli, tmp_path, mnist_test):
    png(tmp_path / "sample_inputs" / "a.png", mnist_test.images[0])
    misspelt = classify(cli, tmp_path / "sampel_inputs", "--out", tmp_path / "x.parquet")
    assert misspelt.exit_code == 2 and "sampel_inputs" in misspelt.stderr
    assert not (tmp_path / "x.parquet").exists()
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'sample_inputs' / 'a.png'}\n{tmp_path / 'gone.png'}\n")
    stale = classify(cli, "--files-from", listing, "--out", tmp_path / "y.parquet")
    assert stale.exit_code == 3
    assert sorted(rows(tmp_path / "y.parquet")["status"]) == ["missing", "ok"]


# The progress bar (stderr, for a person watching)


@pytest.mark.timeout(60)
def test_error_lines_go_above_the_progress_bar(tmp_path, mnist_test, capsys):
    from mnist_batch.api import classify_files

    write_pngs(tmp_path / "in", mnist_test.images[:40], mnist_test.labels[:40])
    (tmp_path / "in" / "bad.png").write_text("not an image")
    summary = classify_files([tmp_path / "in"], out=tmp_path / "o.parquet", progress=True, workers=1)
    assert summary.failed == 1
    stderr = capsys.readouterr().err
    segments = [segment.strip() for line in stderr.split("\n") for segment in line.split("\r")]
    assert any(segment.startswith("loading the model") for segment in segments)
    assert f"mnist-batch: {tmp_path / 'in' / 'bad.png'}: not_image: not an image file Pillow can read" in segments


# issue 19, item 14: Ctrl-C says exactly what it kept, prints no traceback, leaves no lock


def start(command: list) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def ctrl_c(process: subprocess.Popen) -> str:
    """What Ctrl-C in a terminal does: SIGINT to the whole process group, workers included. Returns stderr."""
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    return stderr


@pytest.mark.timeout(240)
def test_ctrl_c_before_any_row_says_nothing_was_kept_and_resume_says_it_starts_over(tmp_path, mnist_test):
    folder, out = tmp_path / "many", tmp_path / "preds.parquet"
    write_tiled_pngs(folder, mnist_test, 500, 2)
    command = interruptible_classify(folder, out)
    process = start(command)
    while not (tmp_path / ".preds.parquet.lock").exists() and process.poll() is None:
        time.sleep(0.01)
    (line,) = ctrl_c(process).splitlines()  # the model takes seconds to load: no row yet
    assert line.startswith("mnist-batch: error: interrupted before any") and "nothing was kept" in line
    assert "--resume" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many"]  # no lock, no parts

    resumed = run(*command[1:], "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"--resume: no rows of an earlier run are kept in {run_files.parts_dir(out)}" in resumed.stderr
    assert rows(out).height == 1000


@pytest.mark.timeout(240)
def test_ctrl_c_soon_after_the_start_keeps_the_first_rows_and_says_how_many(tmp_path, mnist_test):
    """A part holds 4,096 rows at the default batch size: 3,000 inputs would all wait for the end."""
    folder, out = tmp_path / "many", tmp_path / "preds.parquet"
    write_tiled_pngs(folder, mnist_test, 1000, 3)
    command = [*interruptible_classify(folder, out)[:-2], "--batch-size", "1024"]
    process = start(command)
    parts = run_files.parts_dir(out)
    while not list(parts.glob("part-*.parquet")) and process.poll() is None:
        time.sleep(0.01)
    assert process.poll() is None, "the first rows are written soon after the start, not at the end"
    (line,) = ctrl_c(process).splitlines()
    kept = pl.read_parquet(sorted(parts.glob("part-*.parquet"))).height
    assert 0 < kept < 3000
    assert line == (f"mnist-batch: error: interrupted; {kept:,} rows of 3,000 inputs are kept in {parts}: "
                    "rerun the same command with --resume to classify the rest")
    assert not (tmp_path / ".preds.parquet.lock").exists()

    resumed = run(*command[1:], "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {kept} of 3000 inputs already have rows" in resumed.stderr
    assert rows(out).height == 3000 and rows(out)["path"].n_unique() == 3000


# The start of a script that makes a stop signal fall into a finalizer: an object of this class,
# dropped at once, signals in its finalizer and runs on, so the handler runs inside it.
FINALIZER_THAT_SIGNALS = """
import os, signal

class SignalsInItsFinalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100_000):  # the handler runs here, inside the finalizer
            pass
"""


@pytest.mark.timeout(240)
def test_a_stop_signal_that_falls_into_a_finalizer_still_stops_the_run_without_exception_ignored(tmp_path, mnist_test):
    """Python runs a signal handler wherever the main thread is, a finalizer included (a worker
    pool's, during garbage collection), and prints "Exception ignored ... KeyboardInterrupt" for
    the exception it raises there. Made certain here: a finalizer that signals and runs on."""
    write_pngs(tmp_path / "digits", mnist_test.images[:300], mnist_test.labels[:300])
    out = tmp_path / "preds.parquet"
    script = FINALIZER_THAT_SIGNALS + f"""
import sys
from mnist_batch import cli, run_files

add = run_files.RunFiles.add
def add_then_collect(self, rows):
    add(self, rows)
    SignalsInItsFinalizer()  # dropped at once: its finalizer runs now
run_files.RunFiles.add = add_then_collect
sys.argv = ["mnist-batch", "classify", {str(tmp_path / "digits")!r}, "--out", {str(out)!r}, "--quiet",
            "--workers", "1", "--batch-size", "16"]
cli.main()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("mnist-batch: error: interrupted; ") and "rows of 300 inputs are kept in" in line
    assert not out.exists() and not (tmp_path / ".preds.parquet.lock").exists()


@pytest.mark.timeout(240)
def test_a_stop_signal_that_falls_into_a_finalizer_while_the_model_loads_keeps_no_row(tmp_path, mnist_test):
    """Importing torch runs many finalizers: Ctrl-C there was kept for later, and the first chunk's
    rows were written before the run stopped. Made certain here: a finalizer that signals runs
    while the model loads."""
    write_pngs(tmp_path / "digits", mnist_test.images[:300], mnist_test.labels[:300])
    out = tmp_path / "preds.parquet"
    script = FINALIZER_THAT_SIGNALS + f"""
import sys
from mnist_batch import classify, cli

load_model = classify.load_model
def load_model_then_collect(opts):
    inference = load_model(opts)
    SignalsInItsFinalizer()  # dropped at once: its finalizer runs now
    return inference
classify.load_model = load_model_then_collect
sys.argv = ["mnist-batch", "classify", {str(tmp_path / "digits")!r}, "--out", {str(out)!r}, "--quiet"]
cli.main()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("mnist-batch: error: interrupted before any of the 300 inputs was classified")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["digits"]


def test_a_worker_signalled_before_it_sets_its_own_handlers_prints_nothing():
    """A forked worker runs the main process's handler until init_worker replaces it: Ctrl-C in
    that moment printed a KeyboardInterrupt traceback from the worker. Made certain here: the
    child is signalled before it sets any handler of its own."""
    script = """
import os, signal, time
from mnist_batch import errors

errors.catch_stop_signals()
child = os.fork()
if child == 0:
    os.kill(os.getpid(), signal.SIGINT)  # the handler inherited from the main process runs here
    time.sleep(0.2)
    print("the worker runs on", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(0)
_, status = os.waitpid(child, 0)
print("worker exit", os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == ["the worker runs on", f"worker exit {128 + signal.SIGTERM}"]


@pytest.mark.timeout(120)
def test_a_stop_signal_while_the_checkpoint_loads_is_an_interruption_not_a_broken_checkpoint(tmp_path, mnist_test):
    """torch turns an exception raised inside its own callbacks into a ValueError: SIGTERM while
    safetensors read the weights said "checkpoint ... is not a readable safetensors file" (exit 1).
    Made certain here: the signal comes inside get_tensor, and is swallowed as torch does. Without
    ONNX Runtime, so that torch loads the checkpoint."""
    environment = patched_environment(tmp_path, """
import os, signal, safetensors, sys
sys.modules["onnxruntime"] = None  # not installed: torch runs the network
real_open = safetensors.safe_open
class SignalledOpen:
    def __init__(self, *args, **kwargs):
        self.file = real_open(*args, **kwargs)
    def __enter__(self):
        self.file.__enter__()
        return self
    def __exit__(self, *exc):
        return self.file.__exit__(*exc)
    def __getattr__(self, name):
        return getattr(self.file, name)
    def get_tensor(self, name):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            return self.file.get_tensor(name)
        except BaseException:
            raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")
safetensors.safe_open = SignalledOpen
""")
    folder = tmp_path / "in"
    write_pngs(folder, mnist_test.images[:4], mnist_test.labels[:4])
    done = run("classify", folder, "--out", tmp_path / "o.parquet", "--quiet", env=environment)
    assert done.returncode == 130, done.stderr
    assert done.stderr.startswith("mnist-batch: error: interrupted") and "safetensors" not in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "patches"]


def test_a_stop_signal_that_a_library_turns_into_its_own_error_is_an_interruption(tmp_path, mnist_dir):
    """Any command: an interrupt that a library swallows and raises as another error is exit 130
    "interrupted", not that error. Made certain here: reading MNIST gets SIGTERM and says RuntimeError."""
    environment = patched_environment(tmp_path, signalled_call("mnist_batch.data", "load", "the library's own error"))
    done = run("evaluate", "--data-dir", mnist_dir, env=environment)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "mnist-batch: error: interrupted\n"


@pytest.mark.timeout(120)
def test_a_stop_signal_while_the_decoding_pool_is_made_prints_no_traceback(tmp_path, mnist_test):
    """Ctrl-C just after the lock, while the workers were being forked, came inside the finalizer
    multiprocessing makes for each worker: half made, it printed "Exception ignored ... has no
    attribute '_key'" at exit. Made certain here: the signal comes inside the first finalizer the
    main thread makes while the pool starts, after its weak reference and before its key, as then."""
    environment = patched_environment(tmp_path, """
import concurrent.futures.process as process, multiprocessing.util as util, os, signal, threading, weakref
state = {"making": 0, "fired": False}
def making(method):
    def wrapped(*args, **kwargs):
        state["making"] += 1
        try:
            return method(*args, **kwargs)
        finally:
            state["making"] -= 1
    return wrapped
process.ProcessPoolExecutor.__init__ = making(process.ProcessPoolExecutor.__init__)
process.ProcessPoolExecutor.submit = making(process.ProcessPoolExecutor.submit)
real_init = util.Finalize.__init__
def init(self, obj, *args, **kwargs):
    if state["making"] and not state["fired"] and threading.current_thread() is threading.main_thread():
        state["fired"] = True
        self._weakref = weakref.ref(obj, self)  # as the real one begins
        os.kill(os.getpid(), signal.SIGINT)
    real_init(self, obj, *args, **kwargs)
util.Finalize.__init__ = init
""")
    folder = tmp_path / "in"
    write_pngs(folder, mnist_test.images[:8], mnist_test.labels[:8])
    done = run("classify", folder, "--out", tmp_path / "o.parquet", "--quiet", env=environment)
    assert done.returncode == 130, done.stderr
    assert done.stderr.startswith("mnist-batch: error: interrupted before any") and len(done.stderr.splitlines()) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "patches"]


def test_a_stop_signal_while_the_output_lock_is_taken_leaves_no_lock_file(tmp_path):
    """Ctrl-C between creating the lock file and the `with` that removes it left the file behind.
    Made certain here: the signal comes while flock runs."""
    script = f"""
import fcntl, os, signal
from mnist_batch import errors, run_files

errors.catch_stop_signals()
flock = fcntl.flock
def signalled_flock(fd, operation):
    os.kill(os.getpid(), signal.SIGINT)
    flock(fd, operation)
fcntl.flock = signalled_flock
try:
    with run_files.OutputLock({str(tmp_path / "preds.parquet")!r}):
        print("the with body ran")
except KeyboardInterrupt:
    print("interrupted")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["interrupted"], done.stderr
    assert list(tmp_path.iterdir()) == []


# issue 19, item 15: a full disk is one line naming it and the output; --resume finishes the run


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB file system (tmpfs) that fills up for real, for the output; mounting it needs root."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", disk], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", disk], check=True)


@pytest.mark.timeout(240)
def test_a_full_disk_names_the_file_system_and_the_output_and_resume_finishes_the_run(tmp_path, mnist_test,
                                                                                      small_disk):
    paths = write_tiled_pngs(tmp_path / "many", mnist_test, 1000, 1)
    listing = tmp_path / "all.txt"
    listing.write_text("\n".join(map(str, paths)))
    out, parts = small_disk / "preds.parquet", run_files.parts_dir(small_disk / "preds.parquet")
    options = ("--out", out, "--quiet", "--workers", "1", "--batch-size", "16")

    # full while writing parts (polars said "Invalid thrift: transport error")
    filling = run("classify", "--files-from", listing, *options)
    assert filling.returncode == 1
    (line,) = filling.stderr.splitlines()
    kept = pl.read_parquet(sorted(parts.glob("part-*.parquet")))
    assert line.startswith(f"mnist-batch: error: cannot write the rows of {out} into {parts}: the disk is full: "
                           f"the file system at {small_disk}, ")
    assert line.endswith(f"the {kept.height:,} rows written before are kept there: rerun the same command with "
                         "--resume to continue")

    # full while merging: every input of this command already has its row in the parts
    kept_listing = tmp_path / "kept.txt"
    kept_listing.write_text("\n".join(kept["path"]))
    merging = run("classify", "--files-from", kept_listing, "--resume", *options)
    assert merging.returncode == 1
    (line,) = [line for line in merging.stderr.splitlines() if "error:" in line]
    assert line.startswith(f"mnist-batch: error: cannot write {out}: the disk is full: the file system at {small_disk}")
    assert line.endswith(f"every row is kept in {parts}: rerun the same command with --resume to finish the run")
    assert not out.exists()

    subprocess.run(["mount", "-o", "remount,size=1m", small_disk], check=True)  # space freed
    finished = run("classify", "--files-from", kept_listing, "--resume", *options)
    assert finished.returncode == 0, finished.stderr
    assert rows(out).sort("path").equals(kept.sort("path")) and not parts.exists()
