"""What each input became: its status, and the chunks of records the engines pass on.

A status is OK, BLANK, NOT_DIGIT or an error kind (reading.ImageProblem's); load*() turn a
file, bytes or an in-memory image into a Decoded record and never raise for bad input;
preprocess_chunk is the workers' task. Nothing imports torch.
"""

import os
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from PIL import Image

from mnist_batch.digitize import NotADigit, readings
from mnist_batch.discover import file_ids
from mnist_batch.reading import DEFAULT_MAX_PIXELS, ImageProblem, decode, image_from_array, prepare, read_file

OK, BLANK = "ok", "blank"  # every other status but NOT_DIGIT is an error kind: the input failed
NOT_DIGIT = "not_digit"  # read fine, but not one handwritten digit (an empty form field, a letter, a tick)
# Every status, in the order of their codes in DecodedChunk.statuses: the error kinds come last.
STATUSES = (OK, BLANK, NOT_DIGIT, "missing", "unreadable", "empty", "unsupported", "too_large", "not_image",
            "corrupt", "truncated", "crashed")
STATUS_CODES = {status: code for code, status in enumerate(STATUSES)}
OK_CODE, NOT_DIGIT_CODE, FIRST_ERROR_CODE = STATUS_CODES[OK], STATUS_CODES[NOT_DIGIT], STATUS_CODES["missing"]


def is_failed(status: str) -> bool:
    """The one definition of a failed input: neither classified, blank, nor found not to be a digit."""
    return status not in (OK, BLANK, NOT_DIGIT)


class Decoded(NamedTuple):
    """One input after reading, decoding and preprocessing."""

    status: str  # OK, BLANK or an error kind
    error: str | None = None  # why it was not classified
    digit: np.ndarray | None = None  # 28x28 uint8 when status is OK
    file_size: int | None = None
    file_mtime_ns: int | None = None
    other_way: np.ndarray | None = None  # the digit read with paper and ink swapped (digitize.readings)


@dataclass(frozen=True)
class DecodedChunk:
    """Inputs decoded together, as arrays aligned with `paths`: cheap to send between processes,
    and rows are built from them without a Python object per input. The digits of the OK inputs
    are stacked in their order: `ok` says which rows they belong to."""

    paths: list[str | None]  # None for in-memory images
    ids: list[str | None]  # file_id of each input (discover.file_ids); None where it is no local file
    statuses: np.ndarray  # (n,) uint8 codes into STATUSES
    errors: dict[int, str]  # input index -> why it was not classified, for the inputs that are not OK
    sizes: np.ndarray  # (n,) int64 file sizes in bytes, valid where `sized`
    sized: np.ndarray  # (n,) bool
    mtimes: np.ndarray  # (n,) int64 modification times in ns, valid where `timed`
    timed: np.ndarray  # (n,) bool
    digits: np.ndarray  # (number of OK inputs, 28, 28) uint8
    # The digits read the other way round, of the few inputs whose paper was a close call
    # (digitize.readings), and which inputs they are.
    other_ways: np.ndarray  # (k, 28, 28) uint8
    other_way_rows: np.ndarray  # (k,) int64 input indices

    @classmethod
    def of(cls, paths: list[str | None], decoded: list[Decoded], ids: list[str | None] | None = None) -> "DecodedChunk":
        """`ids`: the inputs' file_id values when not those of `paths` as local files (see discover.file_ids)."""
        sizes = [item.file_size for item in decoded]
        mtimes = [item.file_mtime_ns for item in decoded]
        return cls(
            paths, file_ids(paths) if ids is None else ids,
            np.array([STATUS_CODES[item.status] for item in decoded], np.uint8).reshape(-1),
            {i: item.error for i, item in enumerate(decoded) if item.status != OK},
            np.array([size or 0 for size in sizes], np.int64).reshape(-1),
            np.array([size is not None for size in sizes], bool).reshape(-1),
            np.array([mtime or 0 for mtime in mtimes], np.int64).reshape(-1),
            np.array([mtime is not None for mtime in mtimes], bool).reshape(-1),
            stack_digits([item.digit for item in decoded if item.digit is not None]),
            stack_digits([item.other_way for item in decoded if item.other_way is not None]),
            np.array([i for i, item in enumerate(decoded) if item.other_way is not None], np.int64))

    def with_readings(self, rows: np.ndarray, digits: np.ndarray) -> "DecodedChunk":
        """This chunk with the digits of input `rows` (OK inputs) replaced by `digits`, and no
        second readings left to choose from."""
        chosen = self.digits.copy()
        chosen[self.digit_index(rows)] = digits
        return replace(self, digits=chosen, other_ways=stack_digits([]), other_way_rows=np.zeros(0, np.int64))

    def digits_at(self, rows: np.ndarray) -> np.ndarray:
        """The digits of input `rows` (OK inputs)."""
        return self.digits[self.digit_index(rows)]

    def digit_index(self, rows: np.ndarray) -> np.ndarray:
        """Where the digits of input `rows` (OK inputs only) lie in `digits`: after those of the OK
        inputs before them."""
        return (np.cumsum(self.ok) - 1)[rows]

    @property
    def ok(self) -> np.ndarray:
        """Which inputs were classified: their digits are `digits`, in order."""
        return self.statuses == OK_CODE

    @property
    def failed(self) -> np.ndarray:
        """Which inputs failed (is_failed)."""
        return self.statuses >= FIRST_ERROR_CODE

    def outcomes(self) -> list[tuple[str, str | None]]:
        """(status, error) of each input, for callers that go through inputs one by one."""
        return [(STATUSES[code], self.errors.get(i)) for i, code in enumerate(self.statuses.tolist())]


def stack_digits(digits: list[np.ndarray]) -> np.ndarray:
    return np.stack(digits) if digits else np.zeros((0, 28, 28), np.uint8)


def digit_of(gray: np.ndarray | Image.Image) -> Decoded:
    try:
        digit, other_way = readings(gray)
    except NotADigit as problem:
        return Decoded(NOT_DIGIT, str(problem))
    if digit is None:
        return Decoded(BLANK, "no ink found: the image is blank or has too little contrast")
    return Decoded(OK, digit=digit, other_way=other_way)


def load(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Image file bytes -> Decoded. Never raises for bad input."""
    try:
        return digit_of(decode(data, max_pixels))
    except ImageProblem as problem:
        return Decoded(problem.status, str(problem))


def load_path(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """An image file -> Decoded, with the file's size and modification time. Never raises."""
    try:
        data, info = read_file(path)
    except ImageProblem as problem:
        return failed(path, problem.status, str(problem))
    return load(data, max_pixels)._replace(file_size=info.st_size, file_mtime_ns=mtime_ns(info))


def failed(path: str, status: str, error: str) -> Decoded:
    """The record of a file that was not classified, with its size and mtime when it can be stat'ed."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return Decoded(status, error)
    return Decoded(status, error, None, info.st_size, mtime_ns(info))


INT64_END = 1 << 63


def mtime_ns(info: os.stat_result) -> int | None:
    """The file's modification time as the file_mtime_ns column holds it (Int64 nanoseconds: the
    years 1677 to 2262), or None for a time outside them (a clock gone wild, a forged date)."""
    return info.st_mtime_ns if -INT64_END <= info.st_mtime_ns < INT64_END else None


def load_image(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """An in-memory image (PIL image or numpy array, any size and mode) -> Decoded."""
    try:
        if isinstance(image, np.ndarray):
            image = image_from_array(image)
        if not isinstance(image, Image.Image):
            raise ImageProblem("unsupported", f"{type(image).__name__} is not a path, PIL image or numpy array")
        if 0 in image.size:  # as an array of no pixels is
            raise ImageProblem("unsupported", f"a {image.width}x{image.height} image has no pixels")
        try:
            return digit_of(prepare(image, max_pixels))
        except (OSError, ValueError, TypeError) as error:
            raise ImageProblem("corrupt", f"cannot convert image: {error}") from None
    except ImageProblem as problem:
        return Decoded(problem.status, str(problem))


def preprocess_chunk(paths: list[str], max_pixels: int = DEFAULT_MAX_PIXELS,
                     ids: list[str | None] | None = None) -> DecodedChunk:
    """Worker task: image files -> one DecodedChunk. The files' identities are resolved here
    too, off the main process (`ids`: already resolved elsewhere, see DecodedChunk.of)."""
    return DecodedChunk.of(paths, [load_path(path, max_pixels) for path in paths], ids)
