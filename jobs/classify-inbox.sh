#!/usr/bin/env bash
# Classify what is new in an inbox folder and report on it. Made for cron and systemd timers.
#
# Settings come from the environment, or from a file named by MNIST_BATCH_CONFIG
# (shell assignments, e.g. jobs/classify-inbox.conf.example):
#   INBOX        folder the scanner drops images into (required)
#   RESULTS      folder of result files, one predictions-<UTC time>.parquet per run (required)
#   LOG          log file (default: $RESULTS/classify-inbox.log)
#   LOCK         lock file (default: $RESULTS/.classify-inbox.lock)
#   MNIST_BATCH  the command (default: this checkout's .venv/bin/mnist-batch, else mnist-batch on PATH)
#   CLASSIFY_ARGS, REPORT_ARGS   extra options, e.g. CLASSIFY_ARGS="--device cpu --workers 4"
#
# Exit codes: 0 done (or nothing new); 3 done, but some inputs could not be classified
# (their rows say why); 75 another run (of this job, or a classify into RESULTS) holds the
# lock, nothing done; 1 failure, and the results folder is left as it was; 143 stopped by a signal.
# Cron mails whatever this prints: a quiet run prints nothing.
set -uo pipefail

if [ -n "${MNIST_BATCH_CONFIG:-}" ]; then
    [ -f "$MNIST_BATCH_CONFIG" ] && [ -r "$MNIST_BATCH_CONFIG" ] ||
        { echo "classify-inbox: cannot read config $MNIST_BATCH_CONFIG: no such readable file" >&2; exit 1; }
    # A bare name would make `.` search PATH first: source the file named, always.
    case $MNIST_BATCH_CONFIG in */*) ;; *) MNIST_BATCH_CONFIG=./$MNIST_BATCH_CONFIG ;; esac
    # shellcheck source=/dev/null
    . "$MNIST_BATCH_CONFIG" || { echo "classify-inbox: cannot read config $MNIST_BATCH_CONFIG" >&2; exit 1; }
fi
: "${INBOX:?set INBOX to the folder to classify}"
: "${RESULTS:?set RESULTS to the folder for result files}"
LOG=${LOG:-$RESULTS/classify-inbox.log}
LOCK=${LOCK:-$RESULTS/.classify-inbox.lock}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${MNIST_BATCH:-}" ]; then
    if [ -x "$here/.venv/bin/mnist-batch" ]; then MNIST_BATCH=$here/.venv/bin/mnist-batch; else MNIST_BATCH=mnist-batch; fi
fi

mkdir -p "$RESULTS/reports" 2>/dev/null || { echo "classify-inbox: cannot create $RESULTS/reports: check RESULTS (a writable folder)" >&2; exit 1; }
{ : >>"$LOG"; } 2>/dev/null || { echo "classify-inbox: cannot write the log $LOG: its folder must exist and be writable" >&2; exit 1; }
log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOG"; }
log_lines() { while IFS= read -r line; do log "$line"; done; }
fail() { log "FAILED: $1"; echo "classify-inbox: $1 (see $LOG)" >&2; exit "${2:-1}"; }
busy() { log "$1; not starting"; echo "classify-inbox: $1; not starting (exit 75)" >&2; exit 75; }

# One job at a time: a second one leaves at once instead of queueing behind the first.
# classify locks RESULTS itself (against a manual run beside cron); this lock also covers
# the reports made after it.
{ exec 9>>"$LOCK"; } 2>/dev/null || fail "cannot open the lock file $LOCK: its folder must exist and be writable"
flock --nonblock 9 || busy "another run holds $LOCK"
[ -d "$INBOX" ] || fail "INBOX $INBOX is not a folder: check the setting or mount"

# A stop (kill, systemd, a shutdown) is logged; the next run removes what was left half done.
trap 'fail "stopped by a signal; the next run redoes what this one did not finish" 143' TERM INT HUP
log "start: $INBOX -> $RESULTS"
"$MNIST_BATCH" classify "$INBOX" --out-dir "$RESULTS" --incremental --quiet ${CLASSIFY_ARGS:-} 2>&1 | log_lines
status=${PIPESTATUS[0]}
[ "$status" -eq 75 ] && busy "another classify run is writing to $RESULTS"
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    # Leave the folder as it was, unless a manual classify run holds it (then its files are live).
    flock --nonblock "$RESULTS/.mnist-batch.lock" \
        rm -rf "$RESULTS"/.predictions-*.parquet.parts "$RESULTS"/.predictions-*.parquet.tmp-* "$RESULTS/.mnist-batch.lock"
    fail "classify exited with $status" 1
fi

# A report for every result file without one: this run's, and one a killed run did not get to.
made=0
for result in "$RESULTS"/predictions-*.parquet; do
    [ -e "$result" ] || continue
    report="$RESULTS/reports/$(basename "$result" .parquet).json"
    [ -e "$report" ] && continue
    "$MNIST_BATCH" report "$result" --json-out "$report" ${REPORT_ARGS:-} 2>&1 | log_lines
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "report on $result failed" 1
    log "done: $result, report $report"
    made=1
done
[ "$made" -eq 1 ] || log "done: nothing new"
if [ "$status" -eq 3 ]; then
    echo "classify-inbox: some inputs could not be classified; see the status column of the newest result file and $LOG" >&2
fi
exit "$status"
