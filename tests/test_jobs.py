"""The cron job script, run for real on real images."""

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tests.conftest import write_pngs, write_tiled_pngs

REPO = Path(__file__).parent.parent
JOB = REPO / "jobs" / "classify-inbox.sh"
BIN = Path(sys.executable).parent


def run_job(inbox: Path, results: Path, **env) -> subprocess.CompletedProcess:
    """The job on INBOX into RESULTS. Its reports are the JSON figures alone unless env says otherwise:
    the HTML page (plots, a gallery) and the review file are as much CPU time again as the rest of a
    run, and test_report_formats_default_to_json_html_and_review... and the README's cron command
    run the job with its default formats."""
    environment = os.environ | {"INBOX": str(inbox), "RESULTS": str(results), "MNIST_BATCH": str(BIN / "mnist-batch"),
                                "REPORT_FORMATS": "json"}
    return subprocess.run(["bash", JOB], env=environment | env, capture_output=True, text=True, timeout=300)


def rows_in(results: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(results.glob("*.parquet")))


def folder_state(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.name != "classify-inbox.log"}


def test_three_runs_classify_each_file_once_and_changed_files_again(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    batches = [(0, 15), (15, 25), (25, 40)]
    for start, stop in batches:
        write_pngs(inbox / f"batch{start}", mnist_test.images[start:stop], mnist_test.labels[start:stop])
        done = run_job(inbox, results)
        assert done.returncode == 0, done.stderr + (results / "classify-inbox.log").read_text()
        assert done.stdout == "" and done.stderr == ""  # cron mails nothing for a good run
    files = sorted(results.glob("predictions-*.parquet"))
    assert len(files) == 3 and [pl.read_parquet(f).height for f in files] == [15, 10, 15]
    every = rows_in(results)
    assert every.height == 40 and every["path"].n_unique() == 40
    assert len(list((results / "reports").glob("*.json"))) == 3

    # a run with nothing new writes no file
    assert run_job(inbox, results).returncode == 0
    assert len(list(results.glob("predictions-*.parquet"))) == 3
    assert "nothing new" in (results / "classify-inbox.log").read_text()

    # the scanner rewrites one file with another digit: classified again, the newer row wins
    changed = sorted(inbox.rglob("*.png"))[0]
    old_pred = every.filter(pl.col("path") == str(changed))["pred"].item()
    other = next(i for i in range(40, 100) if mnist_test.labels[i] != old_pred)
    time.sleep(0.01)
    Image.fromarray(np.pad(mnist_test.images[other], 2)[2:-2, 2:-2]).save(changed)
    assert run_job(inbox, results).returncode == 0
    latest = pl.read_parquet(sorted(results.glob("predictions-*.parquet"))[-1])
    assert latest["path"].to_list() == [str(changed)]
    from mnist_batch.report import scan_results

    merged = scan_results([str(f) for f in sorted(results.glob("*.parquet"))]).collect()
    assert merged.height == 40
    assert merged.filter(pl.col("path") == str(changed))["pred"].item() == latest["pred"].item() != old_pred


def test_second_job_exits_at_once_while_the_first_holds_the_lock(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:5], mnist_test.labels[:5])
    results.mkdir()
    with open(results / ".classify-inbox.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what a running job holds
        started = time.perf_counter()
        second = run_job(inbox, results)
        assert time.perf_counter() - started < 5
        assert second.returncode == 75
        assert "another run holds" in second.stderr
        assert not list(results.glob("predictions-*"))
    assert run_job(inbox, results).returncode == 0  # once the lock is free, the job runs


def test_failing_runs_exit_non_zero_and_leave_results_as_they_were(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox / "a", mnist_test.images[:10], mnist_test.labels[:10])
    assert run_job(inbox, results).returncode == 0
    write_tiled_pngs(inbox / "b", mnist_test, 500, 2)
    before = folder_state(results)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    failed = run_job(inbox, results, CLASSIFY_ARGS=f"--checkpoint {broken}")
    assert failed.returncode == 1 and "classify exited with 1" in failed.stderr
    assert folder_state(results) == before

    # killed in the middle of writing: a wrapper kills classify once its first part file exists
    wrapper = tmp_path / "killer.sh"
    wrapper.write_text(f"""#!/usr/bin/env bash
[ "$1" = classify ] || exec "{BIN / 'mnist-batch'}" "$@"
"{BIN / 'mnist-batch'}" "$@" --workers 1 --batch-size 8 &
pid=$!
for _ in $(seq 600); do
    ls "{results}"/.predictions-*.parts/part-*.parquet >/dev/null 2>&1 && break
    sleep 0.05
done
kill -9 $pid
wait $pid
""")
    wrapper.chmod(0o755)
    killed = run_job(inbox, results, MNIST_BATCH=str(wrapper))
    assert killed.returncode == 1 and "137" in killed.stderr
    assert folder_state(results) == before

    assert run_job(inbox, results).returncode == 0  # the next good run catches up
    assert rows_in(results).height == 1010


def test_readme_cron_command_works_as_written(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- cron-command -->\s*```sh\n(.*?)```", readme, re.S).group(1).strip()
    assert "jobs/classify-inbox.sh" in block
    for name in ("jobs", "sample_inputs"):
        (tmp_path / name).symlink_to(REPO / name)
    env = os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    crontab = re.search(r"^\s*\*/5 .*$", readme, re.M).group(0)
    assert block.splitlines()[-1] in crontab  # the crontab line runs the same command
    results = list(tmp_path.rglob("predictions-*.parquet"))
    assert len(results) == 1 and pl.read_parquet(results[0]).height == 40


def test_other_parquet_in_results_is_not_read_as_a_result(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:5], mnist_test.labels[:5])
    results.mkdir()
    pl.DataFrame({"path": ["elsewhere.png"], "label": [3]}).write_parquet(results / "review.parquet")
    done = run_job(inbox, results)
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(sorted(results.glob("predictions-*.parquet"))).height == 5


def test_missing_inbox_fails_with_one_log_line_and_writes_nothing(tmp_path):
    results = tmp_path / "results"
    done = run_job(tmp_path / "no-such-inbox", results)
    assert done.returncode == 1
    assert "no-such-inbox is not a folder" in done.stderr
    failures = [line for line in (results / "classify-inbox.log").read_text().splitlines() if "FAILED" in line]
    assert len(failures) == 1 and "no-such-inbox" in failures[0]
    assert not list(results.glob("predictions-*"))


def test_result_file_without_its_report_gets_one_on_the_next_run(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:5], mnist_test.labels[:5])
    assert run_job(inbox, results).returncode == 0
    (report,) = (results / "reports").glob("*.json")
    report.unlink()  # as a kill between the rename of the result file and its report leaves it
    assert run_job(inbox, results).returncode == 0
    assert report.exists()


def test_failure_log_line_names_the_exit_code_once(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:5], mnist_test.labels[:5])
    failed = run_job(inbox, results, CLASSIFY_ARGS="--checkpoint no-such-checkpoint")
    assert failed.returncode == 1
    (line,) = [line for line in (results / "classify-inbox.log").read_text().splitlines() if "FAILED" in line]
    assert line.endswith("FAILED: classify exited with 1")


def test_job_exits_75_while_a_manual_classify_writes_to_results(tmp_path, mnist_test):
    from mnist_batch.run_files import OutputLock

    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:5], mnist_test.labels[:5])
    with OutputLock(results, folder=True):  # what a manual `classify --out-dir results` holds
        busy = run_job(inbox, results)
    assert busy.returncode == 75 and "not starting" in busy.stderr
    assert not list(results.glob("predictions-*"))
    assert run_job(inbox, results).returncode == 0


@pytest.mark.timeout(240)
def test_a_job_stopped_by_sigterm_logs_it_and_the_next_run_catches_up(tmp_path, mnist_test):
    """systemd's stop and a shutdown send SIGTERM to the job's whole process group."""
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_tiled_pngs(inbox, mnist_test, 500, 2)
    environment = os.environ | {"INBOX": str(inbox), "RESULTS": str(results), "MNIST_BATCH": str(BIN / "mnist-batch"),
                                "CLASSIFY_ARGS": "--workers 1 --batch-size 8"}
    job = subprocess.Popen(["bash", JOB], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    while not list(results.glob(".predictions-*.parts/part-*.parquet")) and job.poll() is None:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 143 and "stopped by a signal" in stderr
    assert "FAILED: stopped by a signal" in (results / "classify-inbox.log").read_text()
    assert not list(results.glob("predictions-*"))

    assert run_job(inbox, results).returncode == 0
    assert rows_in(results).height == 1000 and not list(results.glob(".predictions-*"))


@pytest.mark.timeout(60)
def test_results_that_is_a_file_is_one_line(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    (tmp_path / "results").write_text("not a folder")
    done = run_job(tmp_path / "inbox", tmp_path / "results")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"classify-inbox: cannot create {tmp_path / 'results'}/reports: check RESULTS (a writable folder)"]


@pytest.mark.timeout(60)
def test_a_read_only_results_folder_is_a_failure_not_a_busy_lock(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:1], mnist_test.labels[:1])
    assert run_job(inbox, results).returncode == 0
    (results / ".classify-inbox.lock").unlink()
    results.chmod(0o555)
    # root writes anywhere; without the capabilities that let it, it meets permissions as anyone does
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    environment = os.environ | {"INBOX": str(inbox), "RESULTS": str(results), "MNIST_BATCH": str(BIN / "mnist-batch")}
    done = subprocess.run([*as_user, "bash", JOB], env=environment, capture_output=True, text=True, timeout=60)
    results.chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"classify-inbox: cannot open the lock file {results}/.classify-inbox.lock: its folder must exist and be "
        f"writable (see {results}/classify-inbox.log)"]


@pytest.mark.timeout(60)
def test_a_bare_config_name_is_the_file_in_the_current_folder_not_one_on_path(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    (tmp_path / "job.conf").write_text("INBOX=inbox\nRESULTS=results\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "job.conf").write_text("INBOX=elsewhere\nRESULTS=wrong-results\n")
    environment = os.environ | {"MNIST_BATCH_CONFIG": "job.conf", "MNIST_BATCH": str(BIN / "mnist-batch"),
                                "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", JOB], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert rows_in(tmp_path / "results").height == 1 and not (tmp_path / "wrong-results").exists()


@pytest.mark.timeout(60)
def test_a_missing_config_file_is_one_line(tmp_path):
    environment = os.environ | {"MNIST_BATCH_CONFIG": str(tmp_path / "no.conf")}
    done = subprocess.run(["bash", JOB], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"classify-inbox: cannot read config {tmp_path / 'no.conf'}: no such readable file"]


@pytest.mark.timeout(60)
def test_a_log_in_a_missing_folder_is_one_line_before_any_work(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    log = tmp_path / "no-such-folder" / "job.log"
    done = run_job(tmp_path / "inbox", tmp_path / "results", LOG=str(log))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"classify-inbox: cannot write the log {log}: its folder must exist and be writable"]
    assert not list((tmp_path / "results").glob("predictions-*"))


# issue 19, item 12: the job never gets stuck, and says why it fails
@pytest.mark.timeout(240)
def test_a_garbage_result_file_is_set_aside_by_name_and_no_later_run_stops_on_it(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox / "a", mnist_test.images[:3], mnist_test.labels[:3])
    assert run_job(inbox, results, REPORT_FORMATS="json").returncode == 0
    garbage = results / "predictions-20000101T000000000000Z.parquet"
    garbage.write_bytes(b"PAR1 a disk error, not a result file")
    write_pngs(inbox / "b", mnist_test.images[3:5], mnist_test.labels[3:5])

    done = run_job(inbox, results, REPORT_FORMATS="json")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"classify-inbox: a result file in {results} could not be read and was renamed to *.bad; its inputs were "
        f"classified again (see {results}/classify-inbox.log)"]
    assert not garbage.exists() and garbage.with_name(garbage.name + ".bad").read_bytes().startswith(b"PAR1 a disk")
    log = (results / "classify-inbox.log").read_text()
    assert f"{garbage} is not a readable result file" in log and f"renamed it to {garbage.name}.bad" in log
    assert rows_in(results).height == 5

    again = run_job(inbox, results, REPORT_FORMATS="json")
    assert (again.returncode, again.stderr) == (0, "")
    assert log_lines(results)[-1].endswith("done: nothing new")


def log_lines(results: Path) -> list[str]:
    return (results / "classify-inbox.log").read_text().splitlines()


@pytest.mark.timeout(240)
def test_a_failing_report_keeps_the_result_file_says_so_and_the_next_run_makes_the_report(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:3], mnist_test.labels[:3])
    failed = run_job(inbox, results, REPORT_FORMATS="json", REPORT_ARGS="--no-such-option")
    assert failed.returncode == 1
    (result,) = results.glob("predictions-*.parquet")
    assert failed.stderr.splitlines() == [
        f"classify-inbox: report on {result} failed; the result file is kept without its report, and the next run "
        f"makes the missing report (see {results}/classify-inbox.log)"]
    assert not list((results / "reports").iterdir())

    done = run_job(inbox, results, REPORT_FORMATS="json")
    assert (done.returncode, done.stderr) == (0, "")
    assert (results / "reports" / f"{result.stem}.json").is_file()
    assert list(results.glob("predictions-*.parquet")) == [result]  # nothing classified twice


@pytest.mark.timeout(240)
def test_a_clock_that_went_back_still_names_the_new_file_after_the_newest(tmp_path, mnist_test):
    """A file named in 2999 is what a run leaves before the clock is set back (NTP, a wrong hardware clock)."""
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:3], mnist_test.labels[:3])
    assert run_job(inbox, results, REPORT_FORMATS="json").returncode == 0
    (first,) = results.glob("predictions-*.parquet")
    future = first.rename(results / "predictions-29990101T000000000000Z.parquet")
    changed = sorted(inbox.rglob("*.png"))[0]
    Image.fromarray(np.pad(mnist_test.images[10], 2)[2:-2, 2:-2]).save(changed)
    os.utime(changed, ns=(time.time_ns() + 10**9,) * 2)

    assert run_job(inbox, results, REPORT_FORMATS="json").returncode == 0
    files = sorted(results.glob("predictions-*.parquet"))
    assert len(files) == 2 and files[0] == future and files[-1].name.startswith("predictions-29990101T000000000001Z")
    assert "is behind the newest result file" in (results / "classify-inbox.log").read_text()

    again = run_job(inbox, results, REPORT_FORMATS="json")  # the changed file's newest row is the new one
    assert again.returncode == 0 and len(list(results.glob("predictions-*.parquet"))) == 2
    assert log_lines(results)[-1].endswith("done: nothing new")


# issue 19, item 13: the report is made of the files the README's daily workflow uses
@pytest.mark.timeout(240)
def test_report_formats_default_to_json_html_and_review_and_only_missing_ones_are_made(tmp_path, mnist_test):
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    write_pngs(inbox, mnist_test.images[:3], mnist_test.labels[:3])
    assert run_job(inbox, results, REPORT_FORMATS="json").returncode == 0
    (result,) = results.glob("predictions-*.parquet")
    reports = results / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [f"{result.stem}.json"]
    before = (reports / f"{result.stem}.json").stat().st_mtime_ns

    environment = {k: v for k, v in os.environ.items() if k != "REPORT_FORMATS"}
    done = subprocess.run(["bash", JOB], env=environment | {"INBOX": str(inbox), "RESULTS": str(results),
                                                            "MNIST_BATCH": str(BIN / "mnist-batch")},
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr) == (0, "")
    made = sorted(p.name for p in reports.iterdir())
    assert made == [f"{result.stem}.{end}" for end in ("html", "json", "review.csv")]
    assert (reports / f"{result.stem}.json").stat().st_mtime_ns == before  # made once, not again
    assert "<html" in (reports / f"{result.stem}.html").read_text().lower()
    assert pl.read_csv(reports / f"{result.stem}.review.csv").columns[:2] == ["path", "label"]


@pytest.mark.timeout(60)
def test_an_unknown_report_format_is_one_line_before_any_work(tmp_path, mnist_test):
    write_pngs(tmp_path / "inbox", mnist_test.images[:1], mnist_test.labels[:1])
    done = run_job(tmp_path / "inbox", tmp_path / "results", REPORT_FORMATS="json pdf")
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["classify-inbox: REPORT_FORMATS: unknown format 'pdf'; use json, html or "
                                        f"review (see {tmp_path}/results/classify-inbox.log)"]
    assert not list((tmp_path / "results").glob("predictions-*"))


def make_classify(inbox: Path, out: Path) -> subprocess.CompletedProcess:
    """`make classify` with this interpreter's environment (-o: never reinstall it)."""
    venv = BIN.parent
    command = ["make", "-s", "-C", str(REPO), "classify", f"VENV={venv}", "-o", f"{BIN}/mnist-batch",
               f"IN={inbox}", f"OUT={out}", "ARGS=--workers 1 --quiet"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(300)
def test_make_classify_takes_some_bad_inputs_as_done_with_a_note_and_fails_on_real_errors(tmp_path, mnist_test):
    inbox, out = tmp_path / "inbox", tmp_path / "preds.parquet"
    write_pngs(inbox, mnist_test.images[:3], mnist_test.labels[:3])
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    done = make_classify(inbox, out)
    assert done.returncode == 0, done.stderr
    assert f"some inputs could not be classified; their rows in {out} say why" in done.stdout
    assert pl.read_parquet(out).height == 4
    again = make_classify(inbox, out)  # --out exists without --overwrite: a usage error stays an error
    assert again.returncode != 0 and "--overwrite" in again.stderr
