"""Errors the CLI turns into one line on stderr and a documented exit code; log lines."""

import re
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
