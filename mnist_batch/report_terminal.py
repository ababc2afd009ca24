"""The report in a terminal (rich tables at the terminal's width), or as plain text
without box drawing, never wrapped, when stdout is not one (cron mail, `> log`).

Text from the result files (checkpoint names, statuses) goes through value(): a name can
neither move the cursor nor pass for rich's [markup]."""

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnist_batch.errors import shown

UNWRAPPED = 1 << 20  # the width of a console that is no terminal: a log line is never split


def terminal_console() -> Console:
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=UNWRAPPED)


def value(text: object) -> str:
    """A value read from a result file, as console markup that prints it as it is (escaped)."""
    return escape(shown(text))


def short_hash(sha256: str | None) -> str:
    return value(sha256[:12]) if sha256 else "unknown"


def checkpoint_lines(summary: dict) -> list[str]:
    lines = []
    for checkpoint in summary["checkpoints"]:
        line = (f"checkpoint {value(checkpoint['name'] or 'unknown')} (sha256 {short_hash(checkpoint['sha256'])}): "
                f"{checkpoint['rows']:,} rows")
        if len(summary["checkpoints"]) > 1 and checkpoint["accuracy"] is not None:
            line += f", accuracy {checkpoint['accuracy']:.2%} on {checkpoint['evaluated']:,} labelled"
        lines.append(line)
    if len(summary["checkpoints"]) > 1:
        lines.append("[bold]warning:[/bold] these rows come from several checkpoints; "
                     "the figures below mix them")
    return lines


def risk_coverage_table(rows: list[dict], labelled: bool, new_table) -> Table:
    """The classified rows each confidence threshold keeps; the rest would go to a person."""
    columns = ("confidence >=", "kept", "share kept", *(("labelled", "accuracy", "error") if labelled else ()))
    table = new_table("kept at each confidence threshold (the rest to review)", *columns)
    for row in rows:
        figures = [f"{row['threshold']:g}", f"{row['kept']:,}", f"{row['coverage']:.2%}"]
        if labelled:
            figures += [f"{row['evaluated']:,}", *((f"{row['accuracy']:.2%}", f"{row['error']:.2%}")
                                                   if row["evaluated"] else ("-", "-"))]
        table.add_row(*figures)
    return table


def render_terminal(summary: dict, console: Console) -> None:
    """The human summary: rich tables in a terminal, plain aligned text elsewhere."""

    def new_table(title: str, *columns: str) -> Table:
        console.print(f"\n[bold]{title}[/bold]")  # a line of its own: a table title would wrap at the table's width
        table = Table(box=box.SIMPLE if console.is_terminal else None, pad_edge=False, show_edge=False)
        for column in columns:
            table.add_column(column, justify="right")
        return table

    status = summary["status"]
    errors = ", ".join(f"{value(k)} {v}" for k, v in status["errors"].items()) or "none"
    console.print(f"[bold]{summary['rows']:,} inputs[/bold] in {len(summary['files'])} file(s): "
                  f"{status['ok']:,} ok, {status['blank']:,} blank, {status['not_digit']:,} not a digit, "
                  f"{status['failed']:,} failed ({errors})")
    for line in checkpoint_lines(summary):
        console.print(line)
    if status["not_digit"]:
        below = " or ".join(f"{score:g}" for score in summary["min_digit_score"])
        console.print(f"rejected as not a digit: {status['not_digit']:,}" + (f" (digit score below {below})" if below
                      else "") + "; --review FILE lists them first")
    conf = summary["confidence"]
    if status["ok"]:
        below = "below" if summary["review_threshold"] < 1 else "at or below"  # a threshold of 1 takes every row
        console.print("confidence: " + ", ".join(f"{k} {conf[k]:.3f}" for k in ("min", "p05", "median", "mean")) +
                      f"; {summary['below_threshold']:,} {below} {summary['review_threshold']}")
    predicted = new_table("predicted digits", *(str(d) for d in range(10)))
    predicted.add_row(*(f"{summary['predicted'][str(d)]:,}" for d in range(10)))
    console.print(predicted)
    labels = summary["labels"]
    if status["ok"]:
        console.print(risk_coverage_table(summary["risk_coverage"], bool(labels and labels["evaluated"]), new_table))
    if labels is None:
        console.print("no labels: give --labels FILE or --labels-from-dirs for accuracy")
        return
    if not labels["evaluated"]:
        console.print(f"labels ({labels['source']}): none matched a classified row "
                      f"({labels['unmatched_labels']:,} labels unmatched)")
        return
    low, high = labels["accuracy_ci95"]
    console.print(f"[bold]accuracy {labels['accuracy']:.2%}[/bold] (95% CI {low:.2%}-{high:.2%}) on "
                  f"{labels['evaluated']:,} labelled rows; ECE {labels['ece']:.4f}")
    console.print(f"{labels['unlabelled_rows']:,} rows without label, {labels['unmatched_labels']:,} labels "
                  f"matching no row, {labels['labelled_not_classified']:,} labelled but not classified")
    if labels["rejected_not_digit"]:
        console.print(f"{labels['rejected_not_digit']:,} labelled rows ({labels['rejected_share']:.2%}) rejected as "
                      "not a digit: not in the accuracy")
    classes = new_table("per class", "digit", "precision", "recall", "F1", "support")
    for digit, row in labels["per_class"].items():
        classes.add_row(digit, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                        f"{row['support']:,}")
    console.print(classes)
    matrix = new_table("confusion (rows true, columns predicted)", "", *(str(d) for d in range(10)))
    for digit, row in enumerate(labels["confusion"]):
        matrix.add_row(str(digit), *(f"[bold]{n}[/bold]" if i == digit else str(n or ".") for i, n in enumerate(row)))
    console.print(matrix)
    if labels["most_confused"]:
        console.print("most confused: " + ", ".join(
            f"{p['true']}->{p['predicted']} ({p['count']})" for p in labels["most_confused"][:5]))


COMPARE_ROWS_SHOWN = 20  # disagreements listed in the terminal; --json and --html list more


def side_outcome(row: dict, side: str) -> str:
    if row[f"status_{side}"] != "ok":
        return value(row[f"status_{side}"])
    return f"{row[f'pred_{side}']} ({row[f'confidence_{side}']:.1%})"


def render_compare(summary: dict, console: Console) -> None:
    """Two runs on the same inputs: each one's accuracy, their disagreements and who was right."""
    runs, inputs, split = summary["runs"], summary["inputs"], summary["disagreements"]
    for side, run in runs.items():
        checkpoints = ", ".join(f"{value(c['name'] or 'unknown')} (sha256 {short_hash(c['sha256'])})"
                                for c in run["checkpoints"]) or "none"
        console.print(f"[bold]{side.upper()}[/bold]: {value(', '.join(run['files']))}: {run['rows']:,} rows; "
                      f"checkpoint {checkpoints}")
    if summary["same_checkpoint"]:
        console.print("[bold]note:[/bold] both runs used the same checkpoint")
    console.print(f"{inputs['both']:,} inputs in both, {inputs['only_a']:,} only in A, {inputs['only_b']:,} only in B")
    if summary["labels"] is None:
        console.print("no labels: give --labels FILE or --labels-from-dirs for each run's accuracy")
    else:
        for side, run in runs.items():
            if run["accuracy"] is None:
                console.print(f"{side.upper()}: no labelled input classified")
                continue
            low, high = run["accuracy_ci95"]
            console.print(f"{side.upper()}: [bold]accuracy {run['accuracy']:.2%}[/bold] (95% CI {low:.2%}-{high:.2%}) "
                          f"on {run['evaluated']:,} labelled inputs in both; {run['labelled_not_classified']:,} "
                          "labelled inputs not classified (blank, not a digit or failed)")
    line = f"[bold]{split['count']:,} inputs where A and B disagree[/bold]"
    if summary["labels"] is not None:
        line += (f"; of the {split['labelled']:,} labelled: A right {split['a_right']:,}, B right "
                 f"{split['b_right']:,}, neither {split['neither_right']:,}")
        if split["mcnemar_p"] is not None:
            line += (f" (McNemar p = {split['mcnemar_p']:.3g}: " +
                     ("a real difference" if split["mcnemar_p"] < 0.05 else "could be chance") + ")")
    console.print(line)
    rows = summary["disagreement_rows"]
    if not rows:
        return
    table = Table(box=box.SIMPLE if console.is_terminal else None, pad_edge=False, show_edge=False)
    for column in ("path", "label", "A", "B", "right"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for row in rows[:COMPARE_ROWS_SHOWN]:
        table.add_row(value(row["path"]), "" if row["label"] is None else str(row["label"]),
                      side_outcome(row, "a"), side_outcome(row, "b"), (row["right"] or "").upper())
    console.print("\n[bold]disagreements (labelled first)[/bold]")
    console.print(table)
    more = split["count"] - min(len(rows), COMPARE_ROWS_SHOWN)
    if more > 0:
        console.print(f"and {more:,} more: --json lists {len(rows):,}, --html shows them with their images")
