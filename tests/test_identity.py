"""A file's identity (the file_id column): the same file however its path is spelt, and two
files however alike their spellings, in incremental runs, --resume, labels and report."""

import json
import os
from pathlib import Path

import polars as pl
import pytest

from mnist_batch import results, run_files
from tests.conftest import write_pngs


def classify(cli, *args):
    result = cli("classify", *args, "--quiet")
    assert result.exit_code == 0, result.stderr
    return result


def report_json(cli, *args):
    result = cli("report", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.fixture
def inbox(tmp_path, mnist_test, monkeypatch):
    """Five digits in tmp_path/inbox, a symlink `link` to it, and tmp_path as the current folder."""
    write_pngs(tmp_path / "inbox", mnist_test.images[:5], mnist_test.labels[:5])
    (tmp_path / "link").symlink_to("inbox")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "inbox"


SPELLINGS = ["inbox", "{tmp}/inbox", "link", "./link/"]


@pytest.mark.timeout(180)
def test_one_inbox_spelt_several_ways_is_classified_once_by_incremental_runs(cli, inbox, tmp_path):
    first = classify(cli, "inbox", "--out-dir", "res", "--incremental")
    assert "5 rows" in first.stdout
    for spelling in SPELLINGS[1:]:
        again = classify(cli, spelling.format(tmp=tmp_path), "--out-dir", "res", "--incremental")
        assert "nothing new" in again.stdout, spelling
    (files,) = [run_files.result_files(tmp_path / "res")]
    assert len(files) == 1
    frame = results.scan(files[0]).collect()
    assert frame["file_id"].to_list() == sorted(str(path) for path in inbox.rglob("*.png"))


@pytest.mark.timeout(180)
def test_report_counts_one_row_per_image_over_files_of_several_spellings(cli, inbox, tmp_path):
    for index, spelling in enumerate(SPELLINGS):
        classify(cli, spelling.format(tmp=tmp_path), "--out", f"run-{index}.parquet")
    figures, stderr = report_json(cli, *(f"run-{index}.parquet" for index in range(len(SPELLINGS))),
                                  "--labels-from-dirs")
    assert figures["rows"] == 5 and figures["labels"]["evaluated"] == 5
    assert "note: 15 of 20 rows are older rows of a file that a newer row also covers" in stderr


@pytest.mark.timeout(180)
def test_two_folders_classified_from_inside_are_not_merged_by_report(cli, tmp_path, mnist_test, monkeypatch):
    for name, start in (("a", 0), ("b", 200)):  # other digits, under the same 200 relative paths
        write_pngs(tmp_path / name, mnist_test.images[start:start + 200], mnist_test.labels[:200])
        monkeypatch.chdir(tmp_path / name)
        classify(cli, ".", "--out", tmp_path / f"{name}.parquet", "--min-digit-score", "0")  # every digit evaluated
    monkeypatch.chdir(tmp_path)
    figures, stderr = report_json(cli, "a.parquet", "b.parquet", "--labels-from-dirs")
    assert figures["rows"] == 400 and figures["labels"]["evaluated"] == 400
    assert "note:" not in stderr
    a, b = (pl.read_parquet(tmp_path / f"{name}.parquet") for name in ("a", "b"))
    assert set(a["path"]) == set(b["path"])  # the spellings meet; the files do not
    assert not set(a["file_id"]) & set(b["file_id"])


@pytest.mark.timeout(180)
def test_an_undecodable_name_and_one_typed_with_a_backslash_are_two_files(cli, tmp_path, mnist_test):
    folder = tmp_path / "in"
    write_pngs(folder, mnist_test.images[:1], mnist_test.labels[:1])
    (source,) = folder.rglob("*.png")
    latin1 = os.fsencode(folder) + b"/caf\xe9.png"  # the bytes of an old share's name
    typed = folder / "caf\\xe9.png"  # a name with a backslash, an x, an e and a 9
    os.rename(source, latin1)
    classify(cli, folder, "--out-dir", tmp_path / "res", "--incremental")
    # the second file: same content, size and modification time as the first
    typed.write_bytes(Path(os.fsdecode(latin1)).read_bytes())
    stat = os.stat(latin1)
    os.utime(typed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = classify(cli, folder, "--out-dir", tmp_path / "res", "--incremental")
    assert "1 rows" in second.stdout, second.stdout
    both = pl.concat([results.scan(file).collect() for file in run_files.result_files(tmp_path / "res")])
    assert both["path"].to_list() == [f"{folder}/caf\\xe9.png"] * 2  # people read one spelling...
    assert sorted(both["file_id"]) == [f"{folder}/caf\\\\xe9.png", f"{folder}/caf\\xe9.png"]  # ...files differ
    assert "nothing new" in classify(cli, folder, "--out-dir", tmp_path / "res", "--incremental").stdout


@pytest.mark.timeout(120)
def test_resume_knows_kept_rows_under_another_spelling(cli, inbox, tmp_path):
    finished = tmp_path / "first.parquet"
    classify(cli, "inbox/0", "--out", finished)  # what a run killed after its first part keeps
    run_files.parts_dir(tmp_path / "o.parquet").mkdir()
    os.replace(finished, run_files.parts_dir(tmp_path / "o.parquet") / "part-000000.parquet")
    result = classify(cli, tmp_path / "link", "--out", "o.parquet", "--resume")
    assert "1 of 5 inputs already have rows" in result.stderr and "dropping" not in result.stderr
    assert pl.read_parquet("o.parquet").height == 5


def write_labels(path: Path, rows: list[tuple[str, int]]) -> Path:
    pl.DataFrame(rows, schema=["path", "label"], orient="row").write_csv(path)
    return path


@pytest.mark.timeout(120)
def test_labels_name_files_by_identity_and_conflicts_under_two_spellings_are_refused(cli, inbox, tmp_path):
    classify(cli, "inbox", "--out", "preds.parquet")
    names = sorted(path.relative_to(inbox).as_posix() for path in inbox.rglob("*.png"))
    truth = [(name, int(name.split("/")[0])) for name in names]
    # the same labels, each file once, under three spellings: through the link, absolute, relative
    spelt = [(f"link/{name}", label) if i % 3 == 0 else (f"{inbox}/{name}", label) if i % 3 == 1
             else (f"inbox/{name}", label) for i, (name, label) in enumerate(truth)]
    figures, _ = report_json(cli, "preds.parquet", "--labels", write_labels(tmp_path / "spelt.csv", spelt))
    assert figures["labels"]["evaluated"] == 5 and figures["labels"]["unmatched_labels"] == 0

    # one file under two spellings with the same label: counted once, with a note
    repeated = [*spelt, (f"link/{names[0]}", truth[0][1]), (f"./inbox//{names[0]}", truth[0][1])]
    figures, stderr = report_json(cli, "preds.parquet", "--labels", write_labels(tmp_path / "repeated.csv", repeated))
    assert figures["labels"]["evaluated"] == 5 and "1 files more than once" in stderr

    # and with another label: refused, naming the file
    conflicting = [*spelt, (f"link/{names[0]}", (truth[0][1] + 1) % 10)]
    result = cli("report", "preds.parquet", "--labels", write_labels(tmp_path / "conflicting.csv", conflicting))
    assert result.exit_code == 2, result.stderr
    assert "gives 1 files different labels" in result.stderr and f"{inbox}/{names[0]}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(120)
def test_result_files_without_file_id_stay_readable_and_cover_their_inputs(cli, inbox, tmp_path):
    classify(cli, "inbox", "--out-dir", "res", "--incremental")
    (written,) = run_files.result_files(tmp_path / "res")
    # as schema version 1 wrote it: relative paths, no file_id, digit_score or min_digit_score
    pl.read_parquet(written).drop("file_id", "digit_score", "min_digit_score").write_parquet(written)
    assert "nothing new" in classify(cli, "link", "--out-dir", "res", "--incremental").stdout
    figures, _ = report_json(cli, written, "--labels-from-dirs")
    assert figures["rows"] == 5 and figures["labels"]["evaluated"] == 5
    assert results.scan(written).collect()["file_id"].null_count() == 5


@pytest.mark.timeout(120)
def test_one_run_given_a_file_under_several_spellings_classifies_it_once(cli, inbox, tmp_path):
    (name,) = [path.relative_to(inbox).as_posix() for path in inbox.glob("0/*.png")]
    result = classify(cli, f"inbox/{name}", f"{inbox}/{name}", f"link/{name}", "--out", "o.parquet")
    assert "1 rows" in result.stdout and "2 inputs name a file that another input names too" in result.stderr
    assert pl.read_parquet("o.parquet")["file_id"].to_list() == [f"{inbox}/{name}"]
