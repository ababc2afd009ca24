#!/usr/bin/env bash
# Classify what is new in an inbox folder and report on it. Made for cron and systemd timers.
#
# Settings come from the environment, or from a file named by MNIST_BATCH_CONFIG
# (shell assignments, e.g. jobs/classify-inbox.conf.example):
#   INBOX        folder the scanner drops images into (required)
#   RESULTS      folder of result files, one predictions-<UTC time>.parquet per run (required); each
#                gets its report in RESULTS/reports. A file there that cannot be read as a result
#                file is renamed to NAME.bad (with a log line and a warning), so that it stops no run.
#   REPORT_FORMATS  what each report is made of, words among (default: json html review):
#                json    reports/<name>.json, the figures (report --json-out)
#                html    reports/<name>.html, one page with plots and a gallery (report --html)
#                review  reports/<name>.review.csv, the rows for a person to look at (report --review)
#   LOG          log file (default: $RESULTS/classify-inbox.log)
#   LOCK         lock file (default: $RESULTS/.classify-inbox.lock)
#   MNIST_BATCH  the command (default: this checkout's .venv/bin/mnist-batch, else mnist-batch on PATH)
#   CLASSIFY_ARGS, REPORT_ARGS   extra options for classify and report. In a config file, best a
#                bash array, one element per argument:
#                    CLASSIFY_ARGS=(--exclude '*/rejects/*' --checkpoint '/srv/models/my model.safetensors')
#                or a string (the only form the environment can carry), split into words as xargs
#                splits them: at blanks, except inside '...' or "..." quotes. Neither form is ever
#                glob-expanded or otherwise expanded: --exclude */rejects/* reaches classify as written.
#
# Files in RESULTS may be writable by others than the job's user (often root): the log and
# the lock are never opened through a symlink planted in their place (the job refuses such a
# link), and names from there are written to the log and stderr with control characters escaped.
#
# Exit codes: 0 done (or nothing new); 3 done, but some inputs could not be classified
# (their rows say why); 75 another run (of this job, or a classify into RESULTS) holds the
# lock, nothing done; 1 failure: classify failed and the results folder is left as it was, or a
# report failed and its result file is kept without it (the next run makes the missing report);
# 143 stopped by a signal.
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

# printable TEXT: TEXT as one line that moves no cursor, its control characters (newline, ESC of
# ANSI sequences, C1 controls) as backslash escapes, as mnist-batch writes names (\n, \x1b).
printable() {
    local LC_ALL=C text=$1 out='' c i
    case $text in *[$'\001'-$'\037'$'\177']* | *$'\302'[$'\200'-$'\237']*) ;; *) printf '%s' "$text"; return ;; esac
    for ((i = 0; i < ${#text}; i++)); do
        c=${text:i:1}
        case $c in
            $'\n') c='\n' ;;
            $'\r') c='\r' ;;
            $'\t') c='\t' ;;
            [$'\001'-$'\037'$'\177']) printf -v c '\\x%02x' "'$c" ;;
            $'\302') case ${text:i+1:1} in [$'\200'-$'\237']) printf -v c '\\x%02x' "'${text:i+1:1}"; i=$((i + 1)) ;; esac ;;
        esac
        out+=$c
    done
    printf '%s' "$out"
}
say() { echo "classify-inbox: $(printable "$1")" >&2; }
# Append stdin to FILE without following a symlink in its place (oflag=nofollow) or waiting on a FIFO.
append() { dd of="$1" oflag=append,nofollow,nonblock conv=notrunc status=none 2>/dev/null; }
# refuse_link FILE WHAT HINT: a symlink in place of a file the job writes is refused: the job would
# write, or create, the file it points to.
refuse_link() { [ -L "$1" ] && { say "refusing the $2 $1: it is a symbolic link, and this job never writes through one; $3"; exit 1; }; true; }

mkdir -p "$RESULTS/reports" 2>/dev/null || { say "cannot create $RESULTS/reports: check RESULTS (a writable folder)"; exit 1; }
refuse_link "$RESULTS/reports" "reports folder" "remove it (the next run makes the folder)"
refuse_link "$LOG" log "remove it, or set LOG to a file of its own"
: | append "$LOG" && [ -f "$LOG" ] || { say "cannot write the log $LOG: its folder must exist and be writable"; exit 1; }
log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(printable "$*")" | append "$LOG" || say "cannot write the log $LOG"; }
log_lines() { while IFS= read -r line; do log "$line"; done; }
fail() { log "FAILED: $1"; say "$1 (see $LOG)"; exit "${2:-1}"; }
busy() { log "$1; not starting"; say "$1; not starting (exit 75)"; exit 75; }

# open_lock FD FILE: FILE, created when missing and never through a symlink, open on FD for
# reading, which is all flock needs.
open_lock() {
    [ ! -L "$2" ] && : | dd of="$2" oflag=nofollow,nonblock conv=notrunc status=none 2>/dev/null && [ -f "$2" ] &&
        eval "exec $1<\"\$2\"" 2>/dev/null && [ ! -L "$2" ] && [ "$2" -ef "/dev/fd/$1" ]
}

# One job at a time: a second one leaves at once instead of queueing behind the first.
# classify locks RESULTS itself (against a manual run beside cron); this lock also covers
# the reports made after it.
refuse_link "$LOCK" "lock file" "remove it, or set LOCK to a file of its own"
open_lock 9 "$LOCK" || fail "cannot open the lock file $LOCK: its folder must exist and be writable"
flock --nonblock 9 || busy "another run holds $LOCK"

# options SETTING: the words of CLASSIFY_ARGS or REPORT_ARGS (an array, or a string split as
# xargs splits it) in the array `words`, never glob-expanded.
options() {
    words=()
    if [[ $(declare -p "$1" 2>/dev/null) =~ ^declare\ -[a-zA-Z]*a ]]; then
        local -n given=$1
        words=(${given[@]+"${given[@]}"})
    elif [ -n "${!1:-}" ]; then
        mapfile -d '' words < <(printf '%s' "${!1}" | xargs -r printf '%s\0' 2>/dev/null)
        wait $! || fail "cannot split $1 into options: a quote is not closed (quote a value with spaces as '...' or \"...\")"
    fi
}
options CLASSIFY_ARGS
classify_args=(${words[@]+"${words[@]}"})
options REPORT_ARGS
report_args=(${words[@]+"${words[@]}"})
read -ra formats <<<"${REPORT_FORMATS-json html review}"
for format in ${formats[@]+"${formats[@]}"}; do
    case $format in json | html | review) ;; *) fail "REPORT_FORMATS: unknown format '$format'; use json, html or review" ;; esac
done
[ -d "$INBOX" ] || fail "INBOX $INBOX is not a folder: check the setting or mount"

# A stop (kill, systemd, a shutdown) is logged; the next run removes what was left half done.
trap 'fail "stopped by a signal; the next run redoes what this one did not finish" 143' TERM INT HUP
log "start: $INBOX -> $RESULTS"
# set_aside: how many result files classify has renamed to NAME.bad (unreadable) so far
set_aside() { local count=0 file; for file in "$RESULTS"/predictions-*.parquet.bad; do [ -e "$file" ] && count=$((count + 1)); done; echo "$count"; }
bad_before=$(set_aside)
"$MNIST_BATCH" classify "$INBOX" --out-dir "$RESULTS" --incremental --quiet ${classify_args[@]+"${classify_args[@]}"} 2>&1 | log_lines
status=${PIPESTATUS[0]}
[ "$status" -eq 75 ] && busy "another classify run is writing to $RESULTS"
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    # Leave the folder as it was, unless a manual classify run holds it (then its files are live).
    if open_lock 8 "$RESULTS/.mnist-batch.lock" && flock --nonblock 8; then
        rm -rf "$RESULTS"/.predictions-*.parquet.parts "$RESULTS"/.predictions-*.parquet.tmp-* "$RESULTS/.mnist-batch.lock"
    fi
    fail "classify exited with $status" 1
fi
if [ "$(set_aside)" -gt "$bad_before" ]; then
    say "a result file in $RESULTS could not be read and was renamed to *.bad; its inputs were classified again (see $LOG)"
fi

# A report for every result file without one (this run's, one a killed run or a failed report
# did not get to), made of the REPORT_FORMATS files it lacks.
made=0
unreported=()
for result in "$RESULTS"/predictions-*.parquet; do
    [ -e "$result" ] || continue
    name=$RESULTS/reports/$(basename "$result" .parquet)
    outputs=() files=()
    for format in ${formats[@]+"${formats[@]}"}; do
        case $format in
            json) report=$name.json option=--json-out ;;
            html) report=$name.html option=--html ;;
            review) report=$name.review.csv option=--review ;;
        esac
        [ -e "$report" ] || { outputs+=("$option" "$report"); files+=("$report"); }
    done
    [ "${#outputs[@]}" -gt 0 ] || continue
    "$MNIST_BATCH" report "$result" "${outputs[@]}" ${report_args[@]+"${report_args[@]}"} 2>&1 | log_lines
    if [ "${PIPESTATUS[0]}" -eq 0 ]; then
        log "done: $result, report ${files[*]}"
        made=1
    else
        log "report on $result failed: the result file is kept without its report; the next run makes it"
        unreported+=("$result")
    fi
done
[ "${#unreported[@]}" -eq 0 ] || fail "report on ${unreported[0]} failed$([ "${#unreported[@]}" -gt 1 ] && echo " (and on $((${#unreported[@]} - 1)) more)"); the result file is kept without its report, and the next run makes the missing report" 1
[ "$made" -eq 1 ] || log "done: nothing new"
if [ "$status" -eq 3 ]; then
    say "some inputs could not be classified; see the status column of the newest result file and $LOG"
fi
exit "$status"
