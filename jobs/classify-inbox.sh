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
# (their rows say why); 75 another run holds the lock, nothing done; 1 failure, and the
# results folder is left as it was. Cron mails whatever this prints: a quiet run prints nothing.
set -uo pipefail

if [ -n "${MNIST_BATCH_CONFIG:-}" ]; then
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

mkdir -p "$RESULTS/reports" || exit 1
log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOG"; }
log_lines() { while IFS= read -r line; do log "$line"; done; }
fail() { log "FAILED: $*"; echo "classify-inbox: $* (see $LOG)" >&2; exit "${2:-1}"; }

# One run at a time: a second one leaves at once instead of queueing behind the first.
exec 9>>"$LOCK"
if ! flock --nonblock 9; then
    log "another run holds $LOCK; not starting"
    echo "classify-inbox: another run holds $LOCK; not starting (exit 75)" >&2
    exit 75
fi

log "start: $INBOX -> $RESULTS"
before=$(ls -1 "$RESULTS"/predictions-*.parquet 2>/dev/null | tail -n 1)
"$MNIST_BATCH" classify "$INBOX" --out-dir "$RESULTS" --incremental --quiet ${CLASSIFY_ARGS:-} 2>&1 | log_lines
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    rm -rf "$RESULTS"/.predictions-*.parquet.parts "$RESULTS"/.predictions-*.parquet.tmp-*  # leave the folder as it was
    fail "classify exited with $status" 1
fi

after=$(ls -1 "$RESULTS"/predictions-*.parquet 2>/dev/null | tail -n 1)
if [ -n "$after" ] && [ "$after" != "$before" ]; then
    name=$(basename "$after" .parquet)
    "$MNIST_BATCH" report "$after" --json-out "$RESULTS/reports/$name.json" ${REPORT_ARGS:-} 2>&1 | log_lines
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "report on $after failed" 1
    log "done: $after, report $RESULTS/reports/$name.json"
else
    log "done: nothing new"
fi
if [ "$status" -eq 3 ]; then
    echo "classify-inbox: some inputs could not be classified; see the status column of $after and $LOG" >&2
fi
exit "$status"
