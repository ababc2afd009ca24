"""Errors the CLI turns into one line on stderr and a documented exit code; log lines."""

import os
import re
import signal
import sys

# Exit codes, documented in --help and the README.
OK = 0
FAILURE = 1  # the job could not run or finish: bad data, bad checkpoint, internal error
USAGE = 2  # bad command line (Click's own code for usage errors)
PARTIAL = 3  # classify finished, but some inputs could not be classified
GATE = 4  # report: accuracy below --min-accuracy
LOCKED = 75  # another run holds the output's lock (EX_TEMPFAIL: try again later)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class UserError(Exception):
    """Something the user can fix: the message says what, which file, and what to do."""

    def __init__(self, message: str, exit_code: int = FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


# What a terminal or a log reader would act on: C0 and C1 controls (newline, carriage return,
# ESC of ANSI sequences, backspace), DEL, Unicode line breaks, bidirectional overrides (text shown
# in another order than stored), and lone surrogates (bytes of a name that are not UTF-8).
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
SHOWN_CHARS = 200  # a name or label echoed longer than this is cut in the middle


def shown(text: object, limit: int | None = SHOWN_CHARS) -> str:
    """`text` (a path, a label, any value from a file) as it may be echoed to a terminal, a log or
    a table: one line that moves no cursor and forges no other line, every control character as a
    backslash escape (\\n, \\x1b; an undecodable byte \\xe9, as result files spell it), and at most
    `limit` characters: a longer one keeps its start and its end (where a file's name is) around '...'."""
    text = UNPRINTABLE.sub(escape_char, str(text))
    if limit is not None and len(text) > limit:
        head = (limit - 3) // 2
        text = f"{text[:head]}...{text[len(text) - (limit - 3 - head):]}"
    return text


def escape_char(match: re.Match) -> str:
    char = match.group()
    if char in ESCAPES:
        return ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by os.fsdecode as a surrogate
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def log(message: str) -> None:
    """A progress or warning line for the person or the log: stderr, never stdout. Whatever the
    message holds (names are best passed through shown() for their length), it stays one line."""
    line = f"mnist-batch: {shown(message, limit=None)}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        tqdm.tqdm.write(line, file=sys.stderr)  # above a progress bar, which is redrawn below it
    else:
        print(line, file=sys.stderr, flush=True)


# Ctrl-C (SIGINT) and kill, timeout or systemd's stop (SIGTERM) stop a job as KeyboardInterrupt.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A stop signal came: kept because its KeyboardInterrupt may be lost (a finalizer drops it, a
# library turns it into its own error) or held back (defer_stop_signals); raise_if_interrupted() raises it.
interrupt_pending = False
job_pid = None  # the process whose job stop_signal stops (a forked worker inherits the handler)
stops_deferred = False  # a stop signal now is kept for resume_stop_signals(), not raised


def catch_stop_signals() -> tuple:
    """Install stop_signal and unraisable for a job; returns what they replace."""
    global interrupt_pending, job_pid
    interrupt_pending = False
    job_pid = os.getpid()
    replaced = {number: signal.signal(number, stop_signal) for number in STOP_SIGNALS}, sys.unraisablehook
    sys.unraisablehook = unraisable
    return replaced


def restore_stop_signals(replaced: tuple) -> None:
    """The caller's handlers again (a test, a program calling the CLI in-process), unless the job
    was stopped: its process is about to exit, and a second Ctrl-C must not print a traceback."""
    handlers, sys.unraisablehook = replaced
    if signal.getsignal(signal.SIGINT) is stop_signal:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def stop_signal(signum, frame):
    """The handler of STOP_SIGNALS while a job runs: the first one stops it; later ones are ignored,
    so that no second Ctrl-C cuts short the cleanup (keeping the rows, removing the lock)."""
    if os.getpid() != job_pid:
        # A worker forked a moment ago, before it set its own handlers: it leaves Ctrl-C to the
        # main process and dies quietly on SIGTERM, instead of printing a KeyboardInterrupt.
        if signum == signal.SIGTERM:
            os._exit(128 + signum)
        return
    ignore_stop_signals()
    global interrupt_pending
    # Kept even when raised: an extension that turns it into another error (torch, reading a
    # checkpoint) must not hide it; raise_if_interrupted() there raises it again.
    interrupt_pending = True
    if stops_deferred:
        return
    raise KeyboardInterrupt


def defer_stop_signals() -> None:
    """Keep a stop signal from here to resume_stop_signals(), for a step that a KeyboardInterrupt
    in its middle would leave half done (a lock file taken but not yet owned by a `with`)."""
    global stops_deferred
    stops_deferred = True


def end_deferral() -> None:
    global stops_deferred
    stops_deferred = False


def resume_stop_signals() -> None:
    """End defer_stop_signals(): a stop signal that came meanwhile is raised now."""
    end_deferral()
    raise_if_interrupted()


def ignore_stop_signals() -> None:
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def unraisable(hook):
    """sys.unraisablehook: a stop signal that arrived while a finalizer ran (garbage collection of
    a worker pool, say) would be printed as "Exception ignored ... KeyboardInterrupt" and lost:
    it is kept instead, and the job stops at its next raise_if_interrupted()."""
    global interrupt_pending
    if issubclass(hook.exc_type, KeyboardInterrupt):
        interrupt_pending = True
        return
    sys.__unraisablehook__(hook)


def raise_if_interrupted() -> None:
    if interrupt_pending:
        ignore_stop_signals()
        raise KeyboardInterrupt
