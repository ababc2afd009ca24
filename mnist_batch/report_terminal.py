"""The report in a terminal (rich tables), or as plain text when stdout is not one."""

from rich.table import Table


def render_terminal(summary: dict, console) -> None:
    """The human summary, as rich tables (plain text when stdout is not a terminal)."""
    status = summary["status"]
    errors = ", ".join(f"{k} {v}" for k, v in status["errors"].items()) or "none"
    console.print(f"[bold]{summary['rows']:,} inputs[/bold] in {len(summary['files'])} file(s): "
                  f"{status['ok']:,} ok, {status['blank']:,} blank, {status['failed']:,} failed ({errors})")
    conf = summary["confidence"]
    if status["ok"]:
        console.print("confidence: " + ", ".join(f"{k} {conf[k]:.3f}" for k in ("min", "p05", "median", "mean")) +
                      f"; {summary['below_threshold']:,} below {summary['review_threshold']}")
    predicted = Table(title="predicted digits", show_header=True)
    for digit in range(10):
        predicted.add_column(str(digit), justify="right")
    predicted.add_row(*(f"{summary['predicted'][str(d)]:,}" for d in range(10)))
    console.print(predicted)
    labels = summary["labels"]
    if labels is None:
        console.print("no labels: give --labels FILE or --labels-from-dirs for accuracy")
        return
    if not labels["evaluated"]:
        console.print(f"labels ({labels['source']}): none matched a classified row "
                      f"({labels['unmatched_labels']:,} labels unmatched)")
        return
    low, high = labels["accuracy_ci95"]
    console.print(f"[bold]accuracy {labels['accuracy']:.2%}[/bold] (95% CI {low:.2%}-{high:.2%}) on "
                  f"{labels['evaluated']:,} labelled rows; ECE {labels['ece']:.4f}; "
                  f"{labels['unlabelled_rows']:,} rows without label, {labels['unmatched_labels']:,} labels "
                  f"matching no row, {labels['labelled_not_classified']:,} labelled but not classified")
    classes = Table(title="per class")
    for column in ("digit", "precision", "recall", "F1", "support"):
        classes.add_column(column, justify="right")
    for digit, row in labels["per_class"].items():
        classes.add_row(digit, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                        f"{row['support']:,}")
    console.print(classes)
    matrix = Table(title="confusion (rows true, columns predicted)")
    matrix.add_column("")
    for digit in range(10):
        matrix.add_column(str(digit), justify="right")
    for digit, row in enumerate(labels["confusion"]):
        matrix.add_row(str(digit), *(f"[bold]{n}[/bold]" if i == digit else str(n or ".") for i, n in enumerate(row)))
    console.print(matrix)
    if labels["most_confused"]:
        console.print("most confused: " + ", ".join(
            f"{p['true']}->{p['predicted']} ({p['count']})" for p in labels["most_confused"][:5]))
