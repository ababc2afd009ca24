"""Errors the CLI turns into one line on stderr and a documented exit code; log lines."""

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


def log(message: str) -> None:
    """A progress or warning line for the person or the log: stderr, never stdout."""
    line = f"mnist-batch: {message}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        tqdm.tqdm.write(line, file=sys.stderr)  # above a progress bar, which is redrawn below it
    else:
        print(line, file=sys.stderr, flush=True)
