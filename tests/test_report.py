"""report on real result files that classify wrote from real images."""

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mnist_batch import plots
from mnist_batch.checkpoints import WEIGHTS
from tests.conftest import write_pngs

PLOT_DPI = 100  # plots.py draws every figure at 100 dpi

WRONG_LABELS = {0: 1, 1: 1, 2: 9}  # image index -> a deliberately wrong label: known confusion cells


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, mnist_test):
    """40 MNIST digits in label folders, a blank and a broken file; a labels.csv with three
    wrong labels, one input left unlabelled and two labels for files that do not exist."""
    root = tmp_path_factory.mktemp("labelled")
    images_dir = root / "images"
    paths = write_pngs(images_dir, mnist_test.images[:40], mnist_test.labels[:40])
    Image.new("L", (40, 40), 255).save(images_dir / "blank.png")
    (images_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rows = []
    for index, path in enumerate(paths):
        if index == 39:
            continue  # no label for this one
        label = WRONG_LABELS.get(index, int(mnist_test.labels[index]))
        rows.append((path.relative_to(images_dir).as_posix(), label))
    rows += [("gone/1.png", 3), ("gone/2.png", 4)]
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    return root


@pytest.fixture(scope="module")
def result_file(labelled):
    from tests.conftest import run_cli

    out = labelled / "preds.parquet"
    result = run_cli("classify", labelled / "images", "--out", out, "--quiet")
    assert result.exit_code == 3, result.stderr  # the broken file
    return out


def hand_figures(result_file: Path, labels_csv: Path, root: Path) -> dict:
    """The figures computed the plain way, row by row, to check report against."""
    labels = dict(pl.read_csv(labels_csv).select(pl.lit(str(root) + "/") + pl.col("path"), "label").iter_rows())
    rows = [r for r in pl.read_parquet(result_file).iter_rows(named=True) if r["status"] == "ok"]
    pairs = [(labels[r["path"]], r["pred"], r["confidence"]) for r in rows if r["path"] in labels]
    correct = [t == p for t, p, _ in pairs]
    f1 = {}
    for digit in range(10):
        tp = sum(t == digit and p == digit for t, p, _ in pairs)
        predicted = sum(p == digit for _, p, _ in pairs)
        actual = sum(t == digit for t, _, _ in pairs)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1[digit] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ece = 0.0
    for b in range(15):
        members = [(t == p, c) for t, p, c in pairs if min(int(c * 15), 14) == b]
        if members:
            accuracy = sum(m[0] for m in members) / len(members)
            confidence = sum(m[1] for m in members) / len(members)
            ece += len(members) / len(pairs) * abs(accuracy - confidence)
    return {"accuracy": sum(correct) / len(correct), "evaluated": len(pairs), "f1": f1, "ece": ece,
            "cell_7_1": sum(t == 1 and p == 7 for t, p, _ in pairs)}


def report_json(cli, *args) -> dict:
    result = cli("report", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_figures_agree_with_a_hand_computation(cli, labelled, result_file):
    figures = report_json(cli, result_file, "--labels", labelled / "labels.csv", "--labels-root", labelled / "images")
    hand = hand_figures(result_file, labelled / "labels.csv", labelled / "images")
    labels = figures["labels"]
    assert labels["evaluated"] == hand["evaluated"] == 39
    assert figures["checkpoints"] == [{"name": "smallbn.safetensors", "sha256": pl.read_parquet(result_file)[
        "checkpoint_sha256"][0], "rows": 42, "accuracy": labels["accuracy"], "evaluated": 39}]
    assert labels["accuracy"] == pytest.approx(hand["accuracy"])
    assert labels["accuracy"] < 1.0  # the three wrong labels at least
    assert labels["per_class"]["1"]["f1"] == pytest.approx(hand["f1"][1])
    assert labels["per_class"]["9"]["f1"] == pytest.approx(hand["f1"][9])
    assert labels["confusion"][1][7] == hand["cell_7_1"] >= 1  # image 0 is a 7 labelled 1
    assert labels["ece"] == pytest.approx(hand["ece"], abs=1e-6)
    low, high = labels["accuracy_ci95"]
    assert low < labels["accuracy"] < high
    assert labels["unmatched_labels"] == 2  # gone/1.png, gone/2.png
    assert labels["unlabelled_rows"] == 3  # image 39, blank.png, broken.png
    assert labels["labelled_not_classified"] == 0
    assert figures["status"] == {"ok": 40, "blank": 1, "not_digit": 0, "failed": 1, "errors": {"not_image": 1}}
    assert sum(figures["predicted"].values()) == 40


def test_json_shape_is_pinned(cli, labelled, result_file):
    figures = report_json(cli, result_file, "--labels-from-dirs")
    assert figures["shape"] == "mnist-batch-report/3"
    assert list(figures) == ["files", "shape", "rows", "status", "predicted", "confidence", "review_threshold",
                             "below_threshold", "min_digit_score", "risk_coverage", "checkpoints",
                             "confidence_histogram", "labels"]
    assert list(figures["status"]) == ["ok", "blank", "not_digit", "failed", "errors"]
    assert list(figures["risk_coverage"][0]) == ["threshold", "kept", "coverage", "evaluated", "accuracy", "error"]
    assert list(figures["checkpoints"][0]) == ["name", "sha256", "rows", "accuracy", "evaluated"]
    assert list(figures["confidence"]) == ["min", "p01", "p05", "p25", "median", "p75", "p95", "max", "mean"]
    assert list(figures["labels"]) == ["source", "evaluated", "correct", "accuracy", "accuracy_ci95",
                                       "unlabelled_rows", "labelled_not_classified", "rejected_not_digit",
                                       "rejected_share", "unmatched_labels",
                                       "per_class", "confusion", "most_confused", "ece", "calibration_bins"]
    assert list(figures["labels"]["per_class"]["0"]) == ["precision", "recall", "f1", "support"]
    out = labelled / "figures.json"
    assert cli("report", result_file, "--json-out", out).exit_code == 0
    assert json.loads(out.read_text())["labels"] is None


def test_three_label_sources_agree(cli, labelled, result_file, tmp_path):
    from_dirs = report_json(cli, result_file, "--labels-from-dirs")["labels"]
    assert from_dirs["source"] == "dirs" and from_dirs["evaluated"] == 40
    # a label column already in the results (here: the true labels from the folder names)
    with_column = tmp_path / "with_labels.parquet"
    pl.read_parquet(result_file).with_columns(
        label=pl.col("path").str.extract(r"/(\d)/[^/]+$").cast(pl.Int64)).write_parquet(with_column)
    from_column = report_json(cli, with_column)["labels"]
    assert from_column["source"] == "column"
    # a labels file with the true labels, paths as written in the results
    true_labels = tmp_path / "true.parquet"
    pl.read_parquet(result_file).select("path", label=pl.col("path").str.extract(r"/(\d)/[^/]+$")).drop_nulls(
        ).write_parquet(true_labels)
    from_file = report_json(cli, result_file, "--labels", true_labels)["labels"]
    assert from_file["source"] == "file"
    for figures in (from_column, from_file):
        assert figures["accuracy"] == from_dirs["accuracy"] and figures["confusion"] == from_dirs["confusion"]


def test_bad_labels_are_one_line_errors(cli, labelled, result_file, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n0/00003.png,12\n")
    result = cli("report", result_file, "--labels", bad)
    assert result.exit_code == 1 and "'12'" in result.stderr and "0-9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_column = tmp_path / "nocol.csv"
    no_column.write_text("file,digit\na.png,1\n")
    result = cli("report", result_file, "--labels", no_column)
    assert result.exit_code == 2 and "'path'" in result.stderr
    result = cli("report", tmp_path / "missing-*.parquet")
    assert result.exit_code == 2 and "not found" in result.stderr
    assert cli("report", result_file, "--min-accuracy", "0.5").exit_code == 2  # gate without labels


@pytest.mark.parametrize("column, values", [("label", [[1, 2]]), ("path", [["a.png"]]), ("label", [{"digit": 1}]),
                                            ("path", [b"\xff.png"])],
                         ids=["labels as lists", "paths as lists", "labels as structs", "paths as bytes, not UTF-8"])
def test_labels_in_nested_columns_are_one_line(cli, result_file, tmp_path, column, values):
    """A Parquet labels file whose column holds lists, structs or bytes that are no text gave polars'
    own multi-line dump."""
    labels = tmp_path / "labels.parquet"
    pl.DataFrame({"path": ["a.png"], "label": [1]}).with_columns(pl.Series(column, values)).write_parquet(labels)
    result = cli("report", result_file, "--labels", labels)
    assert result.exit_code == 2 and str(labels) in result.stderr
    assert column in result.stderr.split(str(labels))[1] and "column" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_min_accuracy_gate_and_review_file(cli, labelled, result_file, tmp_path):
    args = (result_file, "--labels", labelled / "labels.csv", "--labels-root", labelled / "images")
    assert cli("report", *args, "--min-accuracy", "0.5").exit_code == 0
    gated = cli("report", *args, "--min-accuracy", "0.999")
    assert gated.exit_code == 4 and "below --min-accuracy" in gated.stderr
    review = tmp_path / "review.csv"
    assert cli("report", *args, "--review", review, "--review-threshold", "0.95").exit_code == 0
    rows = pl.read_csv(review)
    reasons = dict(rows.group_by("review_reason").len().iter_rows())
    assert reasons.get("failed") == 1 and reasons.get("blank") == 1  # broken.png, blank.png
    assert rows.columns[:2] == ["path", "label"] and rows["label"].null_count() == rows.height  # for a person to fill
    assert rows.filter(pl.col("review_reason") == "misclassified")["given_label"].null_count() == 0
    assert reasons.get("misclassified", 0) >= 3
    # low confidence: the classified rows under the threshold that are not already there as misclassified
    wrong = set(rows.filter(pl.col("review_reason") == "misclassified")["path"])
    unsure = pl.read_parquet(result_file).filter((pl.col("status") == "ok") & (pl.col("confidence") < 0.95))
    assert reasons.get("low_confidence", 0) == len(set(unsure["path"]) - wrong)


def test_mixed_parquet_and_csv_with_globs(cli, labelled, result_file, tmp_path):
    csv_copy = tmp_path / "more.csv"
    pl.read_parquet(result_file).write_csv(csv_copy)
    shutil.copy(result_file, tmp_path / "preds.parquet")
    figures = report_json(cli, str(tmp_path / "*.*"))
    assert len(figures["files"]) == 2 and figures["rows"] == 42  # the same inputs, counted once


@pytest.mark.timeout(120)
def test_html_page_opens_in_headless_chromium_with_its_images(cli, labelled, result_file, tmp_path):
    chromium = chromium_or_skip()
    page_file = tmp_path / "report.html"
    result = cli("report", result_file, "--labels", labelled / "labels.csv", "--labels-root", labelled / "images",
                 "--html", page_file)
    assert result.exit_code == 0, result.stderr
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("requestfailed", lambda request: errors.append(request.url))
        page.goto(page_file.as_uri())
        loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        sections = page.locator("h2").all_inner_texts()
        header = page.locator("header").inner_text()
        captions = page.locator("caption").all_inner_texts()
        tables = page.locator("table").count()
        model_inputs = page.locator("img.digit").count()
        failed_rows = page.locator("table:has(caption:text('Failed inputs')) tr").all_inner_texts()
        cards = page.locator(".card").all_inner_texts()
        confusion = page.evaluate("(i => [i.getBoundingClientRect().width, i.naturalWidth])"
                                  "(document.querySelector('img[alt=\"confusion matrix\"]'))")
        screenshot = page.screenshot(full_page=True)
        browser.close()
    assert errors == []
    assert sections == ["Inputs", "Predictions", "Accuracy", "Confidence thresholds", "Plots", "Failed inputs",
                        "Blank inputs", "Rejected as not a digit", "Inputs to look at"]
    assert "smallbn.safetensors" in header and str(result_file) in header and "mnist-batch 0." in header
    assert len(captions) == tables  # every table has its caption
    assert len(loaded) == 4 + 2 * 24 and all(loaded)  # four plots; 24 cards, each its source and model input
    assert model_inputs == 24
    assert len(failed_rows) == 2 and "broken.png" in failed_rows[1] and "not_image" in failed_rows[1]
    assert all("predicted" in card and "next" in card for card in cards)
    shown, natural = confusion  # the counts in its cells, in CSS pixels at the page's width
    assert plots.CONFUSION_FONT_PT * PLOT_DPI / 72 * shown / natural >= 11
    shot = np.asarray(Image.open(io.BytesIO(screenshot)).convert("L"))
    assert shot.shape[0] > 900 and shot.std() > 20  # a real page, not a blank one
    (tmp_path / "report.png").write_bytes(screenshot)


@pytest.mark.timeout(60)
def test_without_labels_the_page_never_says_misclassified(cli, result_file, tmp_path):
    page = tmp_path / "report.html"
    result = cli("report", result_file, "--html", page, "--gallery", "2", "--review-threshold", "0.9999", "--json")
    below = json.loads(result.stdout)["below_threshold"]
    assert below > 2  # so the gallery is cut
    text = page.read_text()
    assert "isclassified" not in text
    assert f"{below - 2:,} more below the review threshold are not shown" in text
    assert text.count('class="card') == 2


@pytest.fixture(scope="module")
def classified_inside(labelled):
    """The same images classified from inside their folder, as `classify .` writes them: ./7/00000.png."""
    from tests.conftest import run_cli

    out = labelled / "inside.parquet"
    cwd = os.getcwd()
    os.chdir(labelled / "images")
    try:
        assert run_cli("classify", ".", "--out", out, "--quiet").exit_code == 3
    finally:
        os.chdir(cwd)
    return out


def spelled(labelled: Path, how: str) -> tuple[Path, list]:
    """labels.csv rewritten with its paths spelled `how`; the extra arguments report then needs."""
    images_dir = labelled / "images"
    frame = pl.read_csv(labelled / "labels.csv")
    spell = {"relative to --labels-root": ("{}", ["--labels-root", images_dir]),
             "with ./ and --labels-root": ("./{}", ["--labels-root", images_dir]),
             "with doubled slashes": (str(images_dir) + "//{}", []),
             "absolute": (str(images_dir) + "/{}", []),
             "as written inside the folder": ("{}", [])}
    pattern, extra = spell[how]
    out = labelled / f"labels-{list(spell).index(how)}.csv"
    frame.with_columns(path=pl.col("path").map_elements(pattern.format, return_dtype=pl.String)).write_csv(out)
    return out, extra


@pytest.mark.parametrize("how", ["relative to --labels-root", "with ./ and --labels-root", "with doubled slashes",
                                 "absolute", "as written inside the folder"])
@pytest.mark.parametrize("results", ["absolute paths", "./ paths from inside the folder"])
def test_labels_match_rows_however_paths_are_spelled(cli, labelled, result_file, classified_inside, how, results,
                                                     monkeypatch):
    labels, extra = spelled(labelled, how)
    if results == "absolute paths":
        if how == "as written inside the folder":
            monkeypatch.chdir(labelled / "images")  # relative labels, read from their folder
        figures = report_json(cli, result_file, "--labels", labels, *extra)
    else:
        monkeypatch.chdir(labelled / "images")  # the results' relative paths start here
        figures = report_json(cli, classified_inside, "--labels", labels, *extra)
    assert figures["labels"]["evaluated"] == 39 and figures["labels"]["unmatched_labels"] == 2


def test_labels_matching_nothing_print_one_hint_with_an_example_of_each(cli, labelled, result_file, tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative labels without --labels-root start here, where no image is
    result = cli("report", result_file, "--labels", labelled / "labels.csv")
    assert result.exit_code == 0
    hint = [line for line in result.stderr.splitlines() if "match no result row" in line]
    assert len(hint) == 1 and "label path '0/00003.png'" in hint[0] and f"result path '{labelled}/images/" in hint[0]


def test_min_accuracy_with_no_label_matched_is_a_usage_error(cli, labelled, result_file):
    result = cli("report", result_file, "--labels", labelled / "labels.csv", "--min-accuracy", "0.5")
    assert result.exit_code == 2 and "no label matched" in result.stderr
    assert "None" not in result.stderr and len(result.stderr.strip().splitlines()) == 2  # the hint, the error


def test_rows_of_two_checkpoints_are_shown_apart(cli, labelled, result_file, tmp_path):
    rows = pl.read_parquet(result_file)
    other = rows.head(10).with_columns(checkpoint=pl.lit("other.safetensors"), checkpoint_sha256=pl.lit("ab" * 32))
    mixed = tmp_path / "mixed.parquet"
    pl.concat([other, rows.slice(10)]).write_parquet(mixed)
    result = cli("report", mixed, "--labels-from-dirs", "--json")
    figures = json.loads(result.stdout)
    checkpoints = {c["name"]: c for c in figures["checkpoints"]}
    assert checkpoints["other.safetensors"]["rows"] == 10 and checkpoints["smallbn.safetensors"]["rows"] == 32
    assert checkpoints["other.safetensors"]["evaluated"] == 10 and checkpoints["smallbn.safetensors"]["evaluated"] == 30
    assert "2 checkpoints" in result.stderr
    terminal = cli("report", mixed, "--labels-from-dirs").stdout
    assert "other.safetensors (sha256 abababababab): 10 rows, accuracy" in terminal and "warning" in terminal


def test_terminal_report_is_plain_text_when_stdout_is_not_a_terminal(cli, labelled, result_file):
    result = cli("report", result_file, "--labels-from-dirs")
    assert result.exit_code == 0 and "per class" in result.stdout
    assert not set("─│┃━┏┡╇") & set(result.stdout) and "\x1b[" not in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80


@pytest.mark.parametrize("option", ["--review", "--json-out", "--html"])
@pytest.mark.parametrize("target", ["result file", "labels file"])
def test_an_output_never_replaces_an_input(cli, labelled, result_file, option, target):
    victim = result_file if target == "result file" else labelled / "labels.csv"
    before = victim.read_bytes()
    result = cli("report", result_file, "--labels", labelled / "labels.csv", option, victim)
    assert result.exit_code == 2 and option in result.stderr and "input" in result.stderr
    assert victim.read_bytes() == before


def test_review_file_of_unknown_format_names_the_extensions(cli, result_file, tmp_path):
    result = cli("report", result_file, "--review", tmp_path / "review.txt")
    assert result.exit_code == 2 and ".csv or .parquet" in result.stderr and "--format" not in result.stderr


@pytest.mark.parametrize("content", [b"", b"id,value\n1,2\n", b"PAR1 not really parquet"],
                         ids=["0 bytes", "csv of another tool", "broken parquet"])
def test_a_file_that_is_not_a_result_file_is_one_line(cli, tmp_path, content):
    suffix = ".parquet" if content.startswith(b"PAR1") else ".csv"
    path = tmp_path / f"other{suffix}"
    path.write_bytes(content)
    result = cli("report", path)
    assert result.exit_code == 1 and str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(("column", "value"), [("pred", pl.lit("7")), ("pred", pl.lit(99, pl.Int8)),
                                               ("confidence", pl.lit(2.5)), ("status", pl.lit(3))],
                         ids=["pred as string", "pred 99", "confidence 2.5", "status as number"])
def test_impossible_columns_are_one_line_naming_the_column(cli, result_file, tmp_path, column, value):
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(result_file).with_columns(value.alias(column)).write_parquet(bad)
    result = cli("report", bad)
    assert result.exit_code == 1 and f"'{column}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("column", ["confidence", "pred"])
def test_an_ok_row_without_an_answer_is_one_line(cli, result_file, tmp_path, column):
    """A hand-edited file: an ok row with no confidence stopped the report with a TypeError, and
    one with no pred was counted as a 0."""
    bad = tmp_path / "bad.parquet"
    frame = pl.read_parquet(result_file)
    assert frame["status"][0] == "ok"
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col(column)).alias(column)
                       ).write_parquet(bad)
    result = cli("report", bad)
    assert result.exit_code == 1 and "'ok' without a pred or a confidence" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_identical_duplicate_labels_are_dropped_with_a_note(cli, labelled, result_file, tmp_path):
    args = (result_file, "--labels-root", labelled / "images")
    once = report_json(cli, *args, "--labels", labelled / "labels.csv")["labels"]
    doubled = tmp_path / "doubled.csv"
    rows = pl.read_csv(labelled / "labels.csv")
    pl.concat([rows, rows.head(20)]).write_csv(doubled)
    result = cli("report", *args, "--labels", doubled, "--json")
    assert result.exit_code == 0 and "20 files more than once" in result.stderr
    assert json.loads(result.stdout)["labels"] == once


def test_conflicting_duplicate_labels_are_a_usage_error_listing_them(cli, labelled, result_file, tmp_path):
    conflicting = tmp_path / "conflicting.csv"
    rows = pl.read_csv(labelled / "labels.csv")
    changed = rows.head(5).with_columns(label=(pl.col("label") + 1) % 10)
    pl.concat([rows, changed]).write_csv(conflicting)
    result = cli("report", result_file, "--labels", conflicting, "--labels-root", labelled / "images")
    assert result.exit_code == 2 and "5 files different labels" in result.stderr
    assert sorted(changed["path"])[0] in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_csv_with_words_in_a_number_column_is_one_line_naming_it(cli, result_file, tmp_path):
    bad = tmp_path / "bad.csv"
    pl.read_parquet(result_file).with_columns(pred=pl.lit("seven")).write_csv(bad)
    result = cli("report", bad)
    assert result.exit_code == 1 and "'pred'" in result.stderr and "seven" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# Inputs that are not one digit, as on real forms; every one is read fine and rejected.
NON_DIGITS = {"other/letter0.png": "letter", "other/letter1.png": "letter", "other/empty0.png": "empty",
              "other/empty1.png": "empty", "3/a letter in a digit folder.png": "letter"}


@pytest.fixture(scope="module")
def forms(tmp_path_factory, mnist_test):
    """30 MNIST digits in label folders and five non-digits (letters, empty form fields), one of
    them in folder 3 so that it has a label; classified with the default checkpoint."""
    from mnist_batch import synthetic
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("forms")
    write_pngs(root / "images", mnist_test.images[:30], mnist_test.labels[:30])
    rng = np.random.default_rng(16)
    for name, kind in NON_DIGITS.items():
        path = root / "images" / name
        path.parent.mkdir(exist_ok=True)
        if kind == "letter":
            synthetic.glyph(rng, synthetic.TRAIN_FONTS, synthetic.LETTERS).save(path)
        else:
            synthetic.empty_field(rng).save(path)
    out = root / "preds.parquet"
    result = run_cli("classify", root / "images", "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


def folder_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """What --labels-from-dirs gives: the parent folder's digit, or null."""
    return frame.with_columns(label=pl.col("path").str.extract(r"/([0-9])/[^/]+$").cast(pl.Int8))


def test_not_digit_rows_are_counted_apart_and_kept_out_of_the_accuracy(cli, forms, tmp_path):
    rows = folder_labels(pl.read_parquet(forms))
    rejected = rows.filter(pl.col("status") == "not_digit")
    assert sorted(p.split("/images/")[1] for p in rejected["path"]) == sorted(NON_DIGITS)
    figures = report_json(cli, forms, "--labels-from-dirs")
    assert figures["status"] == {"ok": 30, "blank": 0, "not_digit": 5, "failed": 0, "errors": {}}
    assert figures["min_digit_score"] == [0.25]
    labels = figures["labels"]
    classified = rows.filter(pl.col("status") == "ok")
    assert labels["evaluated"] == 30 and labels["correct"] == (classified["pred"] == classified["label"]).sum()
    assert labels["rejected_not_digit"] == 1 and labels["rejected_share"] == pytest.approx(1 / 31)
    assert labels["labelled_not_classified"] == 0
    assert sum(figures["predicted"].values()) == 30  # rejected rows predict nothing

    terminal = cli("report", forms, "--labels-from-dirs").stdout
    assert "30 ok, 0 blank, 5 not a digit, 0 failed" in terminal
    assert "rejected as not a digit: 5 (digit score below 0.25)" in terminal
    assert "1 labelled rows (3.23%) rejected as not a digit" in terminal

    page = tmp_path / "report.html"
    assert cli("report", forms, "--labels-from-dirs", "--html", page, "--gallery", "3").exit_code == 0
    text = page.read_text()
    section = text.split("<h2>Rejected as not a digit</h2>")[1].split("<h2>")[0]
    assert section.count('class="card') == 3 and section.count('class="card wrong') == 1  # the labelled one
    assert "2 more are not shown" in section and "digit score <b>" in section
    first_shown = section.split('class="path" href=')[1].split(">", 1)[1].split("</a>")[0].replace("<wbr>", "")
    assert first_shown == rejected.sort("digit_score", "path", descending=[True, False])["path"][0]
    assert "<th>not_digit</th>" in text and "<td>5</td>" in text


@pytest.mark.parametrize("labelled", [True, False], ids=["labels", "no labels"])
def test_risk_coverage_agrees_with_a_computation_from_the_frame(cli, forms, labelled, tmp_path):
    # Confidences spread over 0.4-1 (MNIST digits alone are nearly all above 0.99), a third of them
    # on a wrong digit, so that every threshold cuts and the error differs between them.
    frame = pl.read_parquet(forms)
    rng = np.random.default_rng(3)
    spread = pl.Series(np.where(np.arange(frame.height) % 5 == 0, 0.999, rng.uniform(0.4, 0.99, frame.height)),
                       dtype=pl.Float32)
    frame = frame.with_columns(confidence=pl.when(pl.col("status") == "ok").then(spread),
                               pred=pl.when(pl.Series(rng.random(frame.height) < 0.3)).then((pl.col("pred") + 1) % 10)
                               .otherwise(pl.col("pred")).cast(pl.Int8))
    forms = tmp_path / "spread" / "preds.parquet"
    forms.parent.mkdir()
    frame.write_parquet(forms)
    rows = folder_labels(frame).filter(pl.col("status") == "ok")
    figures = report_json(cli, forms, *(["--labels-from-dirs"] if labelled else []))
    table = figures["risk_coverage"]
    assert [row["threshold"] for row in table] == [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    confidence = rows["confidence"].to_numpy()
    right = (rows["pred"] == rows["label"]).to_numpy()
    for row in table:
        kept = confidence >= np.float32(row["threshold"])
        assert row["kept"] == kept.sum() and row["coverage"] == pytest.approx(kept.mean())
        if labelled:
            assert row["evaluated"] == kept.sum() and row["accuracy"] == pytest.approx(right[kept].mean())
            assert row["error"] == pytest.approx(1 - right[kept].mean())
        else:
            assert row["evaluated"] == 0 and row["accuracy"] is None and row["error"] is None
    assert table[-1]["kept"] < table[0]["kept"]  # the thresholds do cut: the check is not vacuous
    terminal = cli("report", forms, *(["--labels-from-dirs"] if labelled else [])).stdout
    lines = terminal.split("kept at each confidence threshold")[1].splitlines()
    assert lines[1].split() == ["confidence", ">=", "kept", "share", "kept",
                                *(["labelled", "accuracy", "error"] if labelled else [])]
    assert lines[7].split()[:3] == ["0.99", f"{table[-1]['kept']:,}", f"{table[-1]['coverage']:.2%}"]


def test_review_lists_rejected_then_low_confidence_rows_first(cli, forms, tmp_path):
    review = tmp_path / "review.csv"
    result = cli("report", forms, "--labels-from-dirs", "--review", review, "--review-threshold", "0.9999")
    assert result.exit_code == 0, result.stderr
    rows = pl.read_csv(review)
    reasons = rows["review_reason"].to_list()
    rejected = rows.filter(pl.col("review_reason") == "not_digit")
    unsure = rows.filter(pl.col("review_reason") == "low_confidence")
    assert reasons[:len(rejected) + len(unsure)] == ["not_digit"] * 5 + ["low_confidence"] * len(unsure)
    assert len(unsure) >= 2  # enough to see their order
    assert rejected["digit_score"].to_list() == sorted(rejected["digit_score"], reverse=True)  # likeliest digits first
    assert unsure["confidence"].to_list() == sorted(unsure["confidence"])  # least confident first
    assert rejected["label"].null_count() == 5 and rejected["given_label"].to_list().count(3) == 1


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_a_version_1_result_file_still_reports(cli, labelled, result_file, tmp_path, suffix):
    version_1 = tmp_path / f"v1.{suffix}"
    old = pl.read_parquet(result_file).drop("digit_score", "min_digit_score")
    old.write_parquet(version_1) if suffix == "parquet" else old.write_csv(version_1)
    page, review = tmp_path / "report.html", tmp_path / "review.csv"
    result = cli("report", version_1, "--labels-from-dirs", "--json", "--html", page, "--review", review)
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["status"] == {"ok": 40, "blank": 1, "not_digit": 0, "failed": 1, "errors": {"not_image": 1}}
    assert figures["min_digit_score"] == [] and figures["labels"]["rejected_not_digit"] == 0
    assert figures["risk_coverage"][0]["kept"] == 40
    assert "record no digit check" in page.read_text()
    assert "digit_score" in pl.read_csv(review).columns
    assert "0 not a digit" in cli("report", version_1).stdout


# 19: two runs on the same inputs


def tuned_copy(result_file: Path, out: Path, changed: int = 6) -> Path:
    """The run's rows as another checkpoint would give them: the first `changed` classified rows
    get another digit, and one of them is rejected as not a digit instead."""
    rows = pl.read_parquet(result_file).sort("path").with_row_index("_i")
    ok = rows.filter(pl.col("status") == "ok")["_i"].head(changed).to_list()
    rows = rows.with_columns(
        pred=pl.when(pl.col("_i").is_in(ok)).then((pl.col("pred") + 1) % 10).otherwise("pred").cast(pl.Int8),
        status=pl.when(pl.col("_i") == ok[-1]).then(pl.lit("not_digit")).otherwise("status"),
        checkpoint=pl.lit("smallbn-tuned.safetensors"), checkpoint_sha256=pl.lit("cd" * 32)).drop("_i")
    rows.write_parquet(out)
    return out


def outcomes(frame: pl.DataFrame) -> dict:
    return {path: str(pred) if status == "ok" else status for path, status, pred in frame.select(
        "path", "status", "pred").iter_rows()}


def test_compare_gives_each_run_its_accuracy_and_the_disagreements(cli, labelled, result_file, tmp_path):
    tuned = tuned_copy(result_file, tmp_path / "tuned.parquet")
    page = tmp_path / "compare.html"
    labels = ("--labels", labelled / "labels.csv", "--labels-root", labelled / "images")
    result = cli("report", "--compare", result_file, tuned, *labels, "--json", "--html", page)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    # the figures computed the plain way
    truth = dict(pl.read_csv(labelled / "labels.csv").select(
        pl.lit(str(labelled / "images") + "/") + pl.col("path"), "label").iter_rows())
    a, b = outcomes(pl.read_parquet(result_file)), outcomes(pl.read_parquet(tuned))
    differ = [path for path in a if a[path] != b[path]]
    assert len(differ) == 6 and summary["disagreements"]["count"] == 6
    right = {side: sum(run[p] == str(truth.get(p)) for p in differ) for side, run in (("a", a), ("b", b))}
    assert summary["disagreements"]["a_right"] == right["a"] and summary["disagreements"]["b_right"] == right["b"]
    assert right["a"] >= 4  # smallbn is right on nearly all, the altered digits are wrong
    for side, run in (("a", a), ("b", b)):
        evaluated = [p for p in run if p in truth and run[p].isdigit()]  # classified, with a label
        correct = sum(run[p] == str(truth[p]) for p in evaluated)
        assert summary["runs"][side]["evaluated"] == len(evaluated) and summary["runs"][side]["correct"] == correct
        low, high = summary["runs"][side]["accuracy_ci95"]
        assert low < correct / len(evaluated) < high
    assert summary["inputs"] == {"both": 42, "only_a": 0, "only_b": 0}
    assert {r["path"] for r in summary["disagreement_rows"]} == set(differ)
    assert [c["name"] for c in summary["runs"]["b"]["checkpoints"]] == ["smallbn-tuned.safetensors"]
    terminal = cli("report", "--compare", result_file, tuned, *labels).stdout
    assert "6 inputs where A and B disagree" in terminal and f"A right {right['a']}" in terminal
    assert "not_digit" in terminal and "smallbn-tuned.safetensors" in terminal
    html_page = page.read_text()
    assert html_page.count('class="card') == 6 and "Gallery of disagreements" in html_page


def test_two_runs_without_compare_say_so_on_one_line(cli, labelled, result_file, tmp_path):
    tuned = tuned_copy(result_file, tmp_path / "tuned.parquet")
    result = cli("report", result_file, tuned)
    assert result.exit_code == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "--compare" in line]
    assert "42 of the same inputs" in warning and "different checkpoints" in warning
    # incremental runs: other inputs in each file, no warning
    rows = pl.read_parquet(result_file)
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    rows.head(20).write_parquet(first)
    pl.read_parquet(tuned).slice(20).write_parquet(second)
    assert "--compare" not in cli("report", first, second).stderr


def test_compare_counts_an_input_listed_twice_in_one_file_once(cli, labelled, result_file, tmp_path):
    """Two runs' CSVs joined into one list some inputs twice: the join counted them twice, and the
    summary said "-3 only in A"."""
    tuned = tuned_copy(result_file, tmp_path / "tuned.parquet")
    doubled = tmp_path / "doubled.parquet"
    rows = pl.read_parquet(tuned)
    pl.concat([rows, rows.head(3)]).write_parquet(doubled)
    labels = ("--labels", labelled / "labels.csv", "--labels-root", labelled / "images")
    once = json.loads(cli("report", "--compare", result_file, tuned, *labels, "--json").stdout)
    result = cli("report", "--compare", result_file, doubled, *labels, "--json")
    assert result.exit_code == 0, result.stderr
    assert "3 rows of inputs that have a row already" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["inputs"] == {"both": 42, "only_a": 0, "only_b": 0}
    assert summary["runs"] == {side: {**run, "files": summary["runs"][side]["files"]}
                               for side, run in once["runs"].items()}


def test_compare_takes_two_files(cli, result_file, tmp_path):
    result = cli("report", "--compare", result_file)
    assert result.exit_code == 2 and "two result files" in result.stderr
    result = cli("report", "--compare", result_file, result_file)
    assert result.exit_code == 2 and "same result file on both sides" in result.stderr


# 20: plots and the HTML page


@pytest.mark.parametrize("train, test, relation", [(0.9941, 0.9911, "above"), (0.9827, 0.9918, "below"),
                                                   (0.99, 0.99, "equal to")])
def test_accuracy_png_says_what_its_lines_show(tmp_path, train, test, relation):
    history = [{"epoch": 1, "train_loss": 0.3, "test_loss": 0.1, "train_accuracy": 0.9, "test_accuracy": 0.95},
               {"epoch": 2, "train_loss": 0.1, "test_loss": 0.05, "train_accuracy": train, "test_accuracy": test}]
    plots.training_curves(history, tmp_path)
    text = Image.open(tmp_path / "accuracy.png").text
    assert text["Title"] == "error rate (1 - accuracy) per epoch"  # the axis is an error rate: so is the title
    assert f"train accuracy {train:.2%}, {relation} test {test:.2%}" in text["Description"]


@pytest.mark.parametrize("name", ["lenet", "smallbn"])
def test_bundled_accuracy_plots_carry_a_caption_true_to_their_metrics(name):
    history = json.loads((WEIGHTS / name / "metrics.json").read_text())["history"]
    text = Image.open(WEIGHTS / name / "accuracy.png").text
    assert text["Description"] == plots.accuracy_note(history) and "error rate" in text["Title"]


@pytest.mark.parametrize("largest_error", [1, 3, 17])
def test_confusion_error_scale_is_ticked_at_whole_counts(largest_error):
    confusion = np.diag([50] * 10)
    confusion[2, 7], confusion[4, 9] = largest_error, 1
    figure = plots.confusion_figure(confusion.tolist())
    error_bar = figure.axes[2]
    low, high = error_bar.get_ylim()
    ticks = [t for t in error_bar.get_yticks() if low <= t <= high]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    counts = [t for t in figure.axes[0].texts if t.get_text().isdigit()]
    assert len(counts) == 12 and all(t.get_fontsize() == plots.CONFUSION_FONT_PT for t in counts)


def test_gallery_and_blank_inputs_link_to_their_files(cli, tmp_path, mnist_test):
    """Odd names (#, %, ?, a space) still link to their file, from a page written in another folder."""
    folder = tmp_path / "in #1"
    folder.mkdir()
    for index, name in enumerate(["a #2.png", "100%.png", "why?.png"]):
        Image.fromarray(mnist_test.images[index]).save(folder / name)
    for name in ("blank page.png", "blank%20.png"):
        Image.new("L", (40, 40), 255).save(folder / name)
    results = tmp_path / "preds.parquet"
    assert cli("classify", folder, "--out", results, "--quiet").exit_code == 0
    page_file = tmp_path / "pages" / "report.html"
    page_file.parent.mkdir()
    assert cli("report", results, "--html", page_file).exit_code == 0
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(page_file.as_uri())
        card_links = page.evaluate("Array.from(document.querySelectorAll('.card a')).map(a => a.href)")
        blank_rows = page.locator("table:has(caption:text('Blank inputs')) tr").all_inner_texts()
        blank_links = page.evaluate("Array.from(document.querySelectorAll('table.paths a')).map(a => a.href)")
        (tmp_path / "links.png").write_bytes(page.screenshot(full_page=True))
        browser.close()
    from urllib.parse import unquote, urlparse

    def linked(urls):
        return sorted(Path(unquote(urlparse(url).path)) for url in urls)

    assert linked(card_links) == sorted(2 * [folder / "a #2.png", folder / "100%.png", folder / "why?.png"])
    assert linked(blank_links) == [folder / "blank page.png", folder / "blank%20.png"]
    assert len(blank_rows) == 3 and "blank page.png" in blank_rows[1]


def chromium_or_skip() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "Debian's chromium is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return chromium
