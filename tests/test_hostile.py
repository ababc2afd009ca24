"""Hardening round 3 (issue 19, items 1-6): files planted by someone who can write to the
results folder, names that would forge a log line, options that a shell would glob, cells a
spreadsheet would run, and single inputs that killed a whole run. Each test pins one fix."""

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import polars as pl
import pytest

from mnist_batch import files, labels, results
from tests.conftest import write_pngs
from tests.test_faults import MNIST_BATCH, png, run
from tests.test_jobs import JOB, run_job

VICTIM_TEXT = "a file outside the results folder\n"
# A name that would forge a log line and clear the screen if echoed raw.
FORGING = "evil\n2026-01-01T00:00:00Z done: nothing to see\x1b[2J\x1b[H.png"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside every output folder that a planted link points to; it must never change."""
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_text() == VICTIM_TEXT


def one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# 1. No file the tool writes follows a symlink planted in its place.

@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["out-dir", "out"])
def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, mnist_test, victim, mode):
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    res = tmp_path / "res"
    res.mkdir()
    if mode == "out-dir":
        link, output = res / ".mnist-batch.lock", ["--out-dir", res]
    else:
        link, output = res / ".x.parquet.lock", ["--out", res / "x.parquet"]
    link.symlink_to(victim)
    done = run("classify", tmp_path / "inbox", *output, "--quiet")
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"lock file {link}: it is a symbolic link" in line and "remove it" in line
    assert untouched(victim) and link.is_symlink(), "the link is left for a person to look at"
    assert not list(res.glob("*.parquet"))


@pytest.mark.timeout(60)
def test_a_lock_that_does_not_exist_yet_is_never_created_through_a_dangling_link(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    (tmp_path / "res").mkdir()
    target = tmp_path / "nologin"  # a file whose mere existence does harm
    (tmp_path / "res" / ".mnist-batch.lock").symlink_to(target)
    assert run("classify", tmp_path / "inbox", "--out-dir", tmp_path / "res", "--quiet").returncode == 1
    assert not target.exists()


@pytest.mark.timeout(60)
def test_a_parts_folder_that_is_a_symlink_is_refused(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".x.parquet.parts").symlink_to(elsewhere)
    done = run("classify", tmp_path / "inbox", "--out", tmp_path / "x.parquet", "--quiet")
    assert done.returncode == 1
    assert f"folder {tmp_path / '.x.parquet.parts'}: it is a symbolic link" in one_error_line(done)
    assert not list(elsewhere.iterdir()) and not (tmp_path / "x.parquet").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_an_output_that_is_a_symlink_is_replaced_never_written_through(tmp_path, mnist_test, victim, suffix):
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    out = tmp_path / f"x.{suffix}"
    out.symlink_to(victim)
    done = run("classify", tmp_path / "inbox", "--out", out, "--overwrite", "--quiet")
    assert done.returncode == 0, done.stderr
    assert untouched(victim)
    assert not out.is_symlink() and results.scan(out).collect().height == 3

    outputs = {name: tmp_path / "reports" / name for name in ("review.csv", "figures.json", "page.html")}
    outputs["review.csv"].parent.mkdir()
    victims = [victim.with_name(f"victim-{name}") for name in outputs]  # one each: report refuses two outputs in one
    for path, target in zip(outputs.values(), victims, strict=True):
        target.write_text(VICTIM_TEXT)
        path.symlink_to(target)
    done = run("report", out, "--review", outputs["review.csv"], "--review-threshold", "1.0",
               "--json-out", outputs["figures.json"], "--html", outputs["page.html"])
    assert done.returncode == 0, done.stderr
    assert all(untouched(target) for target in victims)
    assert not any(path.is_symlink() for path in outputs.values())
    assert json.loads(outputs["figures.json"].read_text())["rows"] == 3


@pytest.mark.timeout(120)
def test_an_output_that_is_a_fifo_or_a_device_is_refused_and_left_in_place(tmp_path, mnist_test):
    """`--out /dev/null` in root's cron job, or a FIFO put where an output goes: the rename that
    writes an output would put a regular file in its place. classify refuses before any work, and
    every other output (report's here) at the write. (A FIFO stands in for a device: a test that
    failed on /dev/null itself would replace the machine's.)"""
    write_pngs(tmp_path / "inbox", mnist_test.images[:3], mnist_test.labels[:3])
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    done = run("classify", tmp_path / "inbox", "--out", fifo, "--overwrite", "--quiet")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "refusing to write" in done.stderr and "FIFO" in done.stderr
    out = tmp_path / "x.csv"
    assert run("classify", tmp_path / "inbox", "--out", out, "--quiet").returncode == 0
    done = run("report", out, "--review", fifo, "--review-threshold", "1.0")
    assert done.returncode == 1 and "refusing to write" in done.stderr and "FIFO" in done.stderr, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert files.special_file(os.stat("/dev/null").st_mode) and not files.special_file(os.stat(out).st_mode)


@pytest.mark.timeout(120)
def test_train_outputs_that_are_symlinks_are_replaced_never_written_through(tmp_path, mnist_dir, victim):
    out = tmp_path / "trained"
    out.mkdir()
    names = ("lenet.safetensors", "metrics.json", "loss.png", "accuracy.png")
    for name in names:
        (out / name).symlink_to(victim)
    done = run("train", "--dry-run", "--out", out, "--data-dir", mnist_dir, "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    assert untouched(victim)
    assert not any((out / name).is_symlink() for name in names)


def test_a_temporary_file_swapped_for_a_link_mid_write_does_not_redirect_the_write(tmp_path, victim):
    """Someone who watches the folder sees the temporary file appear and puts a link in its place:
    the output is written through the descriptor opened with O_EXCL | O_NOFOLLOW, not by name."""
    out = tmp_path / "out.json"

    def write(target):
        (tmp,) = tmp_path.glob(".out.json.tmp-*")
        tmp.unlink()
        tmp.symlink_to(victim)
        if isinstance(target, (str, Path)):
            Path(target).write_text("new output")
        else:
            target.write(b"new output")

    files.write_atomic(out, write)
    assert untouched(victim)


def test_temporary_names_cannot_be_guessed():
    names = {files.temporary_name("x.parquet") for _ in range(100)}
    assert len(names) == 100 and all(name.startswith(".x.parquet.tmp-") for name in names)


# 2. Names reach logs and terminals as one escaped line of sane length.

def test_shown_escapes_controls_and_caps_the_length():
    from mnist_batch.errors import shown

    assert shown(FORGING) == "evil\\n2026-01-01T00:00:00Z done: nothing to see\\x1b[2J\\x1b[H.png"
    assert shown("caf\udce9 \u202eevil\x9b\x7f") == "caf\\xe9 \\u202eevil\\x9b\\x7f"
    long = shown("/very/long/" + "x" * 100_000 + "/name.png")
    assert len(long) == 200 and long.startswith("/very/long/xx") and long.endswith("xx/name.png") and "..." in long
    assert shown("plain/é/名前.png") == "plain/é/名前.png"


@pytest.mark.timeout(60)
def test_a_file_name_cannot_forge_a_log_line_or_move_the_cursor(tmp_path, mnist_test):
    inbox = tmp_path / "inbox"
    png(inbox / "good.png", mnist_test.images[0])
    (inbox / FORGING).write_bytes(b"")  # an empty file: an error line naming it
    done = run("classify", inbox, "--out", tmp_path / "x.parquet", "--quiet")
    assert done.returncode == 3
    line = one_error_line(done)
    assert "\x1b" not in done.stderr
    assert line == f"mnist-batch: {inbox}/evil\\n2026-01-01T00:00:00Z done: nothing to see\\x1b[2J\\x1b[H.png: " \
                   "empty: file is empty (0 bytes)"
    # the result file keeps the name as it is: it is data
    assert pl.read_parquet(tmp_path / "x.parquet")["path"].to_list()[0] == str(inbox / FORGING)


@pytest.mark.timeout(60)
def test_an_error_naming_a_huge_label_path_is_one_short_line(tmp_path, mnist_test):
    inbox = tmp_path / "inbox"
    png(inbox / "good.png", mnist_test.images[0])
    assert run("classify", inbox, "--out", tmp_path / "x.parquet", "--quiet").returncode == 0
    labels_file = tmp_path / "labels.csv"
    pl.DataFrame({"path": ["dir/" + "y" * 1_000_000 + "\x1b[2J.png"], "label": ["seven"]}).write_csv(labels_file)
    done = run("report", tmp_path / "x.parquet", "--labels", labels_file)
    assert done.returncode == 1
    line = one_error_line(done)
    assert len(line) < 600 and "\x1b" not in line and "'seven'" in line and "\\x1b[2J.png" in line


@pytest.mark.timeout(60)
def test_report_tables_print_names_from_result_files_escaped(tmp_path, mnist_test):
    inbox = tmp_path / "inbox"
    png(inbox / "good.png", mnist_test.images[0])
    out = tmp_path / "x.parquet"
    assert run("classify", inbox, "--out", out, "--quiet").returncode == 0
    forged = pl.read_parquet(out).with_columns(checkpoint=pl.lit("[bold]n\x1b[2J\n\x1b]8;;x\x07"),
                                               status=pl.lit("gone\x1b[31m"))
    forged.write_parquet(out)
    done = run("report", out)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "checkpoint [bold]n\\x1b[2J\\n\\x1b]8;;x\\x07 (sha256" in done.stdout
    assert "gone\\x1b[31m 1" in done.stdout


@pytest.mark.timeout(60)
def test_train_lists_bad_rows_of_a_labels_file_escaped(tmp_path, mnist_test, capsys):
    from mnist_batch.train import TrainOptions, load_extra

    good = [str(png(tmp_path / f"d{i}.png", mnist_test.images[i])) for i in range(4)]
    extra = tmp_path / "extra.csv"
    pl.DataFrame({"path": [*good, FORGING, "z" * 10_000 + ".png", "a\0b.png"],
                  "label": [str(d) for d in mnist_test.labels[:4]] + ["1", "x\x1b[2J", "3"]}).write_csv(extra)
    load_extra(TrainOptions(extra=(extra,)))
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 3 and "\x1b" not in stderr and all(len(line) < 600 for line in lines)
    assert any("evil\\n2026-01-01T00:00:00Z done" in line for line in lines)
    assert any("'x\\x1b[2J'" in line and "zzz...zzz" in line for line in lines)
    # a NUL byte in a path (a ValueError from the kernel's interface) is a skipped row too
    assert any("a\\x00b.png: missing: the path holds a NUL byte" in line for line in lines)


@pytest.mark.timeout(60)
def test_job_refuses_a_log_that_is_a_symlink(tmp_path, mnist_test, victim):
    write_pngs(tmp_path / "inbox", mnist_test.images[:2], mnist_test.labels[:2])
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    (results_dir / "classify-inbox.log").symlink_to(victim)
    done = run_job(tmp_path / "inbox", results_dir)
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"classify-inbox: refusing the log {results_dir}/classify-inbox.log: it is a symbolic link, and this job "
        "never writes through one; remove it, or set LOG to a file of its own")
    assert untouched(victim) and not list(results_dir.glob("predictions-*"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lock, says", [(".classify-inbox.lock", "refusing the lock file"),
                                        (".mnist-batch.lock", "classify exited with 1")], ids=["job's", "classify's"])
def test_job_creates_nothing_through_a_lock_file_that_is_a_symlink(tmp_path, mnist_test, lock, says):
    """The job refuses its own lock as a link; classify refuses its lock, and the job's clean-up
    after that failure must not follow the link either."""
    write_pngs(tmp_path / "inbox", mnist_test.images[:2], mnist_test.labels[:2])
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    target = tmp_path / "nologin"  # a file whose mere existence does harm
    (results_dir / lock).symlink_to(target)
    done = run_job(tmp_path / "inbox", results_dir)
    assert done.returncode == 1 and says in one_error_line(done)
    assert "symbolic link" in done.stderr + (results_dir / "classify-inbox.log").read_text()
    assert not target.exists() and not list(results_dir.glob("predictions-*"))


@pytest.mark.timeout(60)
def test_job_refuses_a_reports_folder_that_is_a_symlink(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:2], mnist_test.labels[:2])
    results_dir, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    results_dir.mkdir()
    elsewhere.mkdir()
    (results_dir / "reports").symlink_to(elsewhere)
    done = run_job(tmp_path / "inbox", results_dir)
    assert done.returncode == 1
    assert f"refusing the reports folder {results_dir}/reports: it is a symbolic link" in one_error_line(done)
    assert not list(elsewhere.iterdir()) and not list(results_dir.glob("predictions-*"))


@pytest.mark.timeout(120)
def test_job_writes_names_to_its_log_and_stderr_escaped(tmp_path, mnist_test):
    inbox, results_dir = tmp_path / "inbox", tmp_path / "results"
    png(inbox / "good.png", mnist_test.images[0])
    (inbox / FORGING).write_bytes(b"")
    done = run_job(inbox, results_dir)
    assert done.returncode == 3
    # a result file named by someone who can write to RESULTS gets its report, and its name is escaped
    (made,) = results_dir.glob("predictions-*.parquet")
    planted = results_dir / "predictions-x\n2026-01-01T00:00:00Z done: forged\x1b[2J.parquet"
    planted.write_bytes(made.read_bytes())
    again = run_job(inbox, results_dir)
    assert again.returncode == 0, again.stderr
    log = (results_dir / "classify-inbox.log").read_text()
    assert "\x1b" not in log + done.stderr + again.stderr
    assert all(line.startswith("20") for line in log.splitlines()), "every line is one timestamped record"
    assert "\\n2026-01-01T00:00:00Z done: nothing to see\\x1b[2J" in log
    assert "done: " + str(results_dir) + "/predictions-x\\n2026-01-01T00:00:00Z done: forged\\x1b[2J.parquet" in log


# 3. CLASSIFY_ARGS and REPORT_ARGS reach the commands as written: never glob-expanded.

@pytest.mark.timeout(120)
def test_job_options_are_not_glob_expanded_in_the_working_folder(tmp_path, mnist_test):
    inbox, results_dir = tmp_path / "inbox", tmp_path / "results"
    png(inbox / "keep.png", mnist_test.images[0])
    png(inbox / "rejects" / "drop.png", mnist_test.images[1])
    png(tmp_path / "old" / "rejects" / "private.png", mnist_test.images[2])  # what */rejects/* matches in the cwd
    environment = os.environ | {"INBOX": str(inbox), "RESULTS": str(results_dir), "MNIST_BATCH": MNIST_BATCH,
                                "CLASSIFY_ARGS": "--exclude */rejects/*", "REPORT_FORMATS": "json"}  # as run_job
    done = subprocess.run(["bash", JOB], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    paths = pl.read_parquet(sorted(results_dir.glob("predictions-*.parquet")))["path"].to_list()
    assert paths == [str(inbox / "keep.png")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", ["array in the config file", "quoted string"])
def test_job_options_with_spaces_work_as_an_array_or_a_quoted_string(tmp_path, mnist_test, form):
    from mnist_batch.checkpoints import DEFAULT_CHECKPOINT

    inbox, results_dir = tmp_path / "inbox", tmp_path / "results"
    png(inbox / "keep.png", mnist_test.images[0])
    png(inbox / "rejects" / "drop.png", mnist_test.images[1])
    png(tmp_path / "old" / "rejects" / "private.png", mnist_test.images[2])
    model = tmp_path / "my model.safetensors"
    model.write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    review = results_dir / "my review.csv"
    config = tmp_path / "job.conf"
    if form == "quoted string":
        config.write_text(f"INBOX={inbox}\nRESULTS={results_dir}\n"
                          f"""CLASSIFY_ARGS="--exclude */rejects/* --checkpoint '{model}'"\n"""
                          f"""REPORT_ARGS='--review "{review}" --review-threshold 1.0'\n""")
    else:
        config.write_text(f"INBOX={inbox}\nRESULTS={results_dir}\n"
                          f"CLASSIFY_ARGS=(--exclude '*/rejects/*' --checkpoint '{model}')\n"
                          f"REPORT_ARGS=(--review '{review}' --review-threshold 1.0)\n")
    environment = os.environ | {"MNIST_BATCH_CONFIG": str(config), "MNIST_BATCH": MNIST_BATCH}
    done = subprocess.run(["bash", JOB], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + (results_dir / "classify-inbox.log").read_text()
    rows = pl.read_parquet(sorted(results_dir.glob("predictions-*.parquet")))
    assert rows["path"].to_list() == [str(inbox / "keep.png")]
    assert rows["checkpoint"].to_list() == ["my model.safetensors"]
    assert pl.read_csv(review).height == 1


@pytest.mark.timeout(60)
def test_job_options_with_an_unclosed_quote_are_one_line(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    done = run_job(tmp_path / "inbox", tmp_path / "results", CLASSIFY_ARGS="--checkpoint 'my model")
    assert done.returncode == 1
    assert "cannot split CLASSIFY_ARGS into options: a quote is not closed" in one_error_line(done)
    assert not list((tmp_path / "results").glob("predictions-*"))


# 4. The review file never carries a live formula; the result CSV is data and round-trips exactly.

FORMULA_NAMES = ["=HYPERLINK(\"evil\",\"y\").png", "+1.png", "-2.png", "@SUM(A1).png", "\tt.png",
                 "'=quoted.png", "'plain.png", "fine.png"]


@pytest.mark.timeout(120)
def test_review_csv_cells_never_start_a_formula_and_read_back_as_the_paths(tmp_path, mnist_test, monkeypatch):
    inbox = tmp_path / "inbox"
    for i, name in enumerate(FORMULA_NAMES):
        png(inbox / name, mnist_test.images[i])
    out_csv, out_parquet = tmp_path / "x.csv", tmp_path / "x.parquet"
    wrong, review = tmp_path / "wrong.parquet", tmp_path / "review.csv"
    monkeypatch.chdir(inbox)  # relative paths: each cell starts with the name itself
    assert run("classify", ".", "--out", out_csv, "--quiet").returncode == 0
    assert run("classify", ".", "--out", out_parquet, "--quiet").returncode == 0
    # the result CSV is a data contract: raw values, equal to the Parquet file's
    assert sorted(pl.read_csv(out_csv)["path"].to_list()) == sorted(FORMULA_NAMES)
    assert results.scan(out_csv).collect().equals(pl.read_parquet(out_parquet))

    # every row misclassified, so every row is one to review
    pl.read_parquet(out_parquet).select("path", label=(pl.col("pred") + 1) % 10).write_parquet(wrong)
    assert run("report", out_parquet, "--labels", wrong, "--review", review).returncode == 0
    cells = pl.read_csv(review, infer_schema=False)
    for column in cells.columns:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells[column].drop_nulls()), column
    assert sorted(cells["path"].to_list()) == sorted(
        ["'" + name if name[0] in "=+-@\t" or name.startswith("'=") else name for name in FORMULA_NAMES])
    # read back as a labels file (report --labels, train --extra), every path is the file's again
    assert sorted(labels.read_labels_file(review)["path"].to_list()) == sorted(FORMULA_NAMES)
    cells.with_columns(label=pl.lit("7")).write_csv(review)
    done = run("report", out_parquet, "--labels", review, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["labels"]["evaluated"] == len(FORMULA_NAMES)


def test_spreadsheet_escape_reverses_exactly():
    cells = ["=1+2", "+1", "-1", "@x", "\tx", "\rx", "'=x", "''x", "'x", "x", "", "'", "''", "=", None]
    frame = pl.DataFrame({"path": cells})
    escaped = labels.spreadsheet_safe(frame.lazy()).collect()
    assert escaped["path"].to_list() == ["'=1+2", "'+1", "'-1", "'@x", "'\tx", "'\rx", "''=x", "'''x", "'x", "x",
                                         "", "'", "'''", "'=", None]
    assert escaped.select(labels.from_spreadsheet(pl.col("path")))["path"].to_list() == cells


# 5. A modification time beyond what Int64 nanoseconds hold is stored as null, never fatal.

@pytest.mark.timeout(120)
@pytest.mark.parametrize("when", [{"ns": (10**19, 10**19)}, {"times": (32503680000, 32503680000)}],
                         ids=["1e19 ns", "year 3000"])
def test_a_file_from_after_2262_gets_its_row_and_incremental_runs_skip_it(tmp_path, mnist_test, when):
    inbox, res = tmp_path / "inbox", tmp_path / "res"
    future = png(inbox / "future.png", mnist_test.images[0])
    png(inbox / "now.png", mnist_test.images[1])
    os.utime(future, **when)
    if os.stat(future).st_mtime_ns < 1 << 63:
        pytest.skip("this file system cannot store a time after 2262")
    done = run("classify", inbox, "--out-dir", res, "--incremental", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "future.png: its modification time is outside the years 1677-2262" in done.stderr
    (made,) = res.glob("predictions-*.parquet")
    rows = pl.read_parquet(made).sort("path")
    assert rows["status"].to_list() == ["ok", "ok"]
    assert rows["file_mtime_ns"][0] is None and rows["file_mtime_ns"][1] is not None
    assert rows["file_size"][0] == future.stat().st_size
    again = run("classify", inbox, "--out-dir", res, "--incremental", "--quiet")
    assert again.returncode == 0 and "nothing new to classify" in again.stdout
    assert run("report", made).returncode == 0


# 6. A socket named like an image is unsupported (content), not unreadable (transient).

@pytest.mark.timeout(120)
@pytest.mark.parametrize("named", [False, True], ids=["in-folder", "named"])
def test_a_socket_named_like_an_image_is_unsupported_and_not_retried(tmp_path, mnist_test, monkeypatch, named):
    inbox, res = tmp_path / "in", tmp_path / "res"
    png(inbox / "good.png", mnist_test.images[0])
    server = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(inbox)  # a socket's path is limited to 107 bytes: bind it by its short name
    server.bind("x.png")
    try:
        inputs = [inbox, inbox / "x.png"] if named else [inbox]
        done = run("classify", *inputs, "--out-dir", res, "--incremental", "--quiet")
        assert done.returncode == 3
        (made,) = res.glob("predictions-*.parquet")
        row = pl.read_parquet(made).filter(pl.col("path") == str(inbox / "x.png")).row(0, named=True)
        assert row["status"] == "unsupported" and row["error"] == "is a socket, not an image file"
        again = run("classify", *inputs, "--out-dir", res, "--incremental", "--quiet")
        assert again.returncode == 0 and "nothing new to classify" in again.stdout
    finally:
        server.close()


def test_a_jpeg_with_a_broken_mpf_segment_prints_no_pillow_warning(tmp_path, mnist_test):
    """Pillow warns "Image appears to be a malformed MPO file" from inside its own source: two
    lines on stderr that name no input. The row (a digit, as the base JPEG) is what counts."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(255 - mnist_test.images[0]).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "mpf.jpg").write_bytes(data[:2] + b"\xff\xe2\x00\x08MPF\0\0\0" + data[2:])
    done = run("classify", folder, "--out", tmp_path / "o.csv", "--quiet")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert pl.read_csv(tmp_path / "o.csv")["status"].to_list() == ["ok"]
