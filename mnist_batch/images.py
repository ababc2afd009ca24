"""Decode any image Pillow reads and turn it into a 28x28 MNIST-style digit.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept, anti-aliased)
and centred by centre of mass in 28x28. Scans are dark ink on light paper, any size,
off-centre, RGB, with alpha, EXIF rotation or JPEG noise. preprocess() maps both to the
same form; an image already in MNIST form (28x28, dark background) passes through unchanged.

Everything here works on plain values (bytes, arrays) so that worker processes and
distributed batch maps can call it; nothing imports torch.
"""

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000  # refuse larger images before decoding (decompression bombs)
MAX_FILE_BYTES = 512 * 1024 * 1024  # no digit scan is this big; never read one into memory
WORK_SIDE = 112  # larger images are reduced to about this before cropping: fast, and it averages paper noise
MIN_CONTRAST = 40  # ink must stand this far (0-255) above the paper, or the image is blank
INK_THRESHOLD = 0.3  # of the peak ink level: below it is paper noise or shading
BLANK_PEAK = 32  # an MNIST-form image whose brightest pixel is below this has no digit
# Stroke widths in pixels of the 20x20 box a digit is fitted into. MNIST's run from 2.2 (5th
# percentile) to 3.5 (75th); thinner strokes are widened to MNIST's 25th percentile.
THIN_STROKE, MNIST_STROKE = 2.0, 2.6
# Pieces of ink smaller than this share of the largest, beyond this share of the digit's size
# from it, are dust or dirt, not digit.
SPECK_SHARE, SPECK_MARGIN = 0.1, 0.2
# A printed box: a row or column at least this share of one class, in the outer band of a side.
FRAME_LINE, FRAME_BAND, FRAME_THICK = 0.85, 0.15, 0.08  # ... and at most this share of it thick

# Pillow warns before refusing; our own cap decides, so its warnings would only be noise.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

OK, BLANK = "ok", "blank"  # every other status is an error kind: the input failed


def is_failed(status: str) -> bool:
    """The one definition of a failed input: neither classified nor blank."""
    return status not in (OK, BLANK)

# The 108 edge pixels of a 28x28 image, as one index: the MNIST-form check runs per image.
MNIST_BORDER = np.zeros((28, 28), bool)
MNIST_BORDER[[0, -1], :] = MNIST_BORDER[:, [0, -1]] = True
LEVELS = np.arange(256, dtype=np.float64)  # the grey levels, for histogram sums


class ImageProblem(Exception):
    """An input that cannot be classified: `status` is the error kind, the message says why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def read_file(path: str) -> tuple[bytes, os.stat_result]:
    """The file's bytes and stat, or an ImageProblem naming what went wrong with it.

    The one guarded read for every image file the package opens: links are followed, anything
    but a regular file (FIFO, device, socket, folder) is `unsupported`, and at most
    MAX_FILE_BYTES + 1 bytes are read, whatever st_size says. The file is opened without
    blocking (a FIFO would wait for a writer) and its type is checked on the open descriptor,
    so swapping the file between a check and the open changes nothing."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as error:
        raise open_problem(path, error) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageProblem("unsupported", f"is a {file_kind(info.st_mode)}, not an image file")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageProblem("too_large", f"file is over {MAX_FILE_BYTES >> 20} MiB")
        blocks, size = [], 0
        # st_size + 1 reads a file in one call (the next one sees the end); files that say 0 go in blocks.
        want = info.st_size + 1 if info.st_size else 1 << 16
        while block := os.read(fd, min(want, MAX_FILE_BYTES + 1 - size)):
            blocks.append(block)
            size += len(block)
            if size > MAX_FILE_BYTES:
                raise ImageProblem("too_large", f"file is over {MAX_FILE_BYTES >> 20} MiB")
    except OSError as error:
        raise ImageProblem("unreadable", f"cannot read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if not size:
        raise ImageProblem("empty", "file is empty (0 bytes)")
    return b"".join(blocks), info


OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
FILE_KINDS = {stat.S_IFDIR: "folder", stat.S_IFIFO: "FIFO (named pipe)", stat.S_IFCHR: "character device",
              stat.S_IFBLK: "block device", stat.S_IFSOCK: "socket"}


def file_kind(mode: int) -> str:
    return FILE_KINDS.get(stat.S_IFMT(mode), "special file")


def open_problem(path: str, error: OSError) -> ImageProblem:
    if isinstance(error, FileNotFoundError):
        if os.path.islink(path):
            return ImageProblem("missing", f"broken symlink: its target {os.readlink(path)} does not exist")
        return ImageProblem("missing", "file not found (moved or deleted during the run?)")
    if isinstance(error, PermissionError):
        if os.path.isdir(path):
            return ImageProblem("unreadable", "cannot list this folder: permission denied; its files were skipped")
        return ImageProblem("unreadable", "permission denied: make the file readable")
    if error.errno == errno.ELOOP:
        return ImageProblem("unreadable", "symlink loop: the link leads back to itself")
    return ImageProblem("unreadable", f"cannot read: {error.strerror or error}")


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Pillow image in mode L, upright, alpha flattened over white; large JPEGs decoded reduced."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageProblem("not_image", "not an image file Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageProblem("too_large", "image has too many pixels (decompression bomb?)") from None
    except Exception as error:  # Pillow's plugins raise many types for a broken header
        raise ImageProblem("corrupt", f"broken image header: {error}") from None
    return prepare(image, max_pixels)


def prepare(image: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An opened image -> mode L, upright, alpha over white; checks the pixel cap first."""
    width, height = image.size
    if not width or not height:
        raise ImageProblem("corrupt", f"a {width}x{height} image has no pixels")
    if width * height > max_pixels:
        raise ImageProblem("too_large", f"{width}x{height} pixels is over the {max_pixels:,} pixel cap")
    if image.format == "JPEG" and min(width, height) > 2 * WORK_SIDE:
        # libjpeg decodes straight to a 1/2..1/8 scale and to grey: many times faster.
        image.draft("L", (width * WORK_SIDE // min(width, height),) * 2)
    try:
        if image.format == "TIFF" or "exif" in image.info:
            image = ImageOps.exif_transpose(image)
        image.load()
        return to_gray(image)
    except Image.DecompressionBombError:
        raise ImageProblem("too_large", "image has too many pixels (decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error)
        kind = "truncated" if "truncated" in message or "incomplete" in message else "corrupt"
        raise ImageProblem(kind, f"cannot decode image: {message}") from None


def to_gray(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("L")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        values = np.where(np.isfinite(values), values, 0.0)  # an "F" image may hold NaN: no ink
        top = values.max()
        scaled = values * (255.0 / top) if top > 0 else values
        return Image.fromarray(scaled.clip(0, 255).astype(np.uint8))
    return image.convert("L")


def otsu_threshold(counts: np.ndarray) -> int:
    """Otsu's threshold from a 256-bin histogram: values <= t form the dark class, > t the light one."""
    counts = counts.astype(np.float64)
    dark_weight = np.cumsum(counts)
    dark_sum = np.cumsum(counts * LEVELS)
    total, total_sum = dark_weight[-1], dark_sum[-1]
    light_weight = total - dark_weight
    valid = (dark_weight > 0) & (light_weight > 0)
    between = np.zeros(256)
    between[valid] = ((total_sum * dark_weight[valid] / total - dark_sum[valid]) ** 2
                      / (dark_weight[valid] * light_weight[valid]))
    return int(np.argmax(between))


def histogram_median(counts: np.ndarray, first: int = 0) -> float:
    """The median of the values a histogram counts (bin i holds value first + i), as np.median
    gives it (the mean of the two middle values for an even count), without sorting pixels."""
    cumulative = np.cumsum(counts)
    middle = np.searchsorted(cumulative, [(cumulative[-1] - 1) // 2, cumulative[-1] // 2], side="right")
    return first + float(middle.mean())


def polarity(pixels: np.ndarray, counts: np.ndarray) -> tuple[bool, int]:
    """(light background?, Otsu threshold). Otsu splits the pixels into a dark and a light class;
    the paper is the class that holds most of the edge pixels. Unlike a fixed mid-grey cut this
    survives dim scans and light ink on a grey board; unlike "ink is the minority" it survives
    tight crops (form fields, box-normalised sets), where a 1 or a thick digit is mostly ink."""
    threshold = otsu_threshold(counts)
    border = pixels[MNIST_BORDER] if pixels.shape == (28, 28) else np.concatenate(
        [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.count_nonzero(border > threshold) * 2 > border.size, threshold


def background_level(counts: np.ndarray, threshold: int, light_background: bool) -> float:
    """The paper's grey level: the median of the image, as most of a digit image is paper; in a
    tight crop of a thick digit, where ink is the majority, the median of the paper class."""
    paper, first = (counts[threshold + 1 :], threshold + 1) if light_background else (counts[: threshold + 1], 0)
    if paper.sum() * 2 < counts.sum():
        return histogram_median(paper, first)
    return histogram_median(counts)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink area over its edge pixels (a ribbon w wide and
    L long has w*L pixels, 2L of them on its edges). Reads 2 for any stroke under 3 pixels."""
    area = np.count_nonzero(mask)
    padded = np.pad(mask, 1)
    interior = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                & padded[1:-1, :-2] & padded[1:-1, 2:])
    return 2.0 * area / max(area - np.count_nonzero(interior), 1)


def full_lines(band: np.ndarray, threshold: int, dark: bool, axis: int) -> np.ndarray:
    """Indices of the rows (axis=1) or columns (axis=0) of `band` nearly all of the one class."""
    return np.flatnonzero(((band <= threshold) == dark).mean(axis=axis) >= FRAME_LINE)


def inside_frame(pixels: np.ndarray, threshold: int, counts: np.ndarray) -> np.ndarray | None:
    """The inside of a printed box around the digit (a form field), or None when there is none.

    A box is a straight line, all of one class (dark or light), in the outer band of at least
    three of the four sides, thin, and of a class that is the minority of the image (box and digit
    against the paper). Without this, the box decides the polarity and is taken for the digit. A
    tight crop of a digit is no box: its ink is the majority, or its full edge rows are thick."""
    height, width = pixels.shape
    band_y, band_x = max(2, int(FRAME_BAND * height)), max(2, int(FRAME_BAND * width))
    dark_share = counts[: threshold + 1].sum() / pixels.size
    for dark, share in ((True, dark_share), (False, 1 - dark_share)):
        if share >= 0.5:
            continue
        top = full_lines(pixels[:band_y], threshold, dark, axis=1)
        bottom = full_lines(pixels[height - band_y :], threshold, dark, axis=1)
        left = full_lines(pixels[:, :band_x], threshold, dark, axis=0)
        right = full_lines(pixels[:, width - band_x :], threshold, dark, axis=0)
        sides = [(top, height), (bottom, height), (left, width), (right, width)]
        if sum(len(side) > 0 for side, _ in sides) < 3 or any(len(side) > FRAME_THICK * size for side, size in sides):
            continue  # a printed line is thin; a digit cropped tight has thick full rows, if any
        # Inside the innermost line of each side that has one.
        y0 = top[-1] + 1 if len(top) else 0
        y1 = height - band_y + bottom[0] if len(bottom) else height
        x0 = left[-1] + 1 if len(left) else 0
        x1 = width - band_x + right[0] if len(right) else width
        if (y1 - y0) * 2 >= height and (x1 - x0) * 2 >= width:
            return pixels[y0:y1, x0:x1]
    return None


def drop_specks(ink: np.ndarray) -> np.ndarray:
    """Dust and dirt away from the digit would stretch its box and shrink the digit. Keep the big
    pieces of ink (a tenth of the largest or more) and whatever lies near their box (within a
    fifth of its size, so a detached stroke stays); drop the specks beyond."""
    from scipy import ndimage  # loaded in the workers, and only for images off the MNIST form

    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))  # diagonal neighbours join
    if count <= 1:
        return ink
    areas = np.bincount(labels.ravel())[1:]
    boxes = ndimage.find_objects(labels)
    big = [boxes[i] for i in np.flatnonzero(areas >= SPECK_SHARE * areas.max())]
    top, bottom = min(rows.start for rows, _ in big), max(rows.stop for rows, _ in big)
    left, right = min(cols.start for _, cols in big), max(cols.stop for _, cols in big)
    near_y, near_x = SPECK_MARGIN * (bottom - top), SPECK_MARGIN * (right - left)
    keep = [rows.start < bottom + near_y and rows.stop > top - near_y
            and cols.start < right + near_x and cols.stop > left - near_x for rows, cols in boxes]
    return ink if all(keep) else np.where(np.array([False, *keep])[labels], ink, 0)


def thicken_thin_strokes(crop: np.ndarray) -> np.ndarray:
    """A digit written with a fine pen, once fitted into 20x20, has hair-thin strokes that the
    networks have never seen (MNIST's are 2.2 to 3.5 px there). Widen such strokes to MNIST's
    width with a square maximum filter; strokes of MNIST's width are left as they are."""
    scale = 20.0 / max(crop.shape)
    width = stroke_width(crop > 0)
    if width * scale >= THIN_STROKE:
        return crop
    size = 2 * round((MNIST_STROKE / scale - width) / 2) + 1
    if size < 3:
        return crop
    # Padded first, so that strokes on the crop's edge widen outwards too; a square maximum
    # filter is separable: rows, then columns.
    padded = np.pad(crop, size - 1)
    rows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=0).max(-1)
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1).max(-1)


def preprocess(gray: Image.Image) -> np.ndarray | None:
    """28x28 uint8 MNIST-style digit (white on black), or None when the image is blank."""
    pixels = np.asarray(gray)
    height, width = pixels.shape
    if (height, width) == (28, 28) and pixels[MNIST_BORDER].max() < BLANK_PEAK and pixels.mean() < 128:
        # MNIST form: a clean dark edge around a mostly dark field (not a dark box on paper): as it is
        return pixels if pixels.max() >= BLANK_PEAK else None
    if max(height, width) > 2 * WORK_SIDE:
        factor = max(height, width) // WORK_SIDE
        pixels = np.asarray(gray.reduce(factor))  # before the polarity test: less noise, a cheaper histogram
    counts = np.bincount(pixels.ravel(), minlength=256)  # one histogram: polarity and paper level
    light_background, threshold = polarity(pixels, counts)
    inner = inside_frame(pixels, threshold, counts)
    if inner is not None:  # a form field's printed box: the digit is what it holds
        pixels = inner
        counts = np.bincount(pixels.ravel(), minlength=256)
        light_background, threshold = polarity(pixels, counts)
    elif (height, width) == (28, 28) and not light_background:
        return pixels if pixels.max() >= BLANK_PEAK else None

    level = background_level(counts, threshold, light_background)
    ink = (255 - pixels if light_background else pixels).astype(np.float32)
    ink -= 255 - level if light_background else level
    peak = ink.max()
    if peak < MIN_CONTRAST:
        return None
    ink *= 255.0 / peak
    ink[ink < INK_THRESHOLD * 255] = 0  # background removal: paper grain, shading, JPEG ringing
    ink = drop_specks(ink)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = thicken_thin_strokes(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])

    # Fit into 20x20 keeping the aspect ratio, anti-aliased, as MNIST was made.
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), np.float32)
    top = digit.max()
    if top <= 0:
        return None
    digit *= 255.0 / top

    # Paste so that the centre of mass lands on the centre of the 28x28 field.
    mass = digit.sum()
    com_y = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / mass
    com_x = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / mass
    top_y = int(np.clip(round(13.5 - com_y), 0, 28 - digit.shape[0]))
    left_x = int(np.clip(round(13.5 - com_x), 0, 28 - digit.shape[1]))
    out = np.zeros((28, 28), np.uint8)
    out[top_y : top_y + digit.shape[0], left_x : left_x + digit.shape[1]] = digit.round().clip(0, 255)
    return out


class Decoded(NamedTuple):
    """One input after reading, decoding and preprocessing."""

    status: str  # OK, BLANK or an error kind
    error: str | None = None  # why it was not classified
    digit: np.ndarray | None = None  # 28x28 uint8 when status is OK
    file_size: int | None = None
    file_mtime_ns: int | None = None


@dataclass(frozen=True)
class DecodedChunk:
    """Inputs decoded together: one record each, in order, and the digits of the OK ones
    stacked into one array (cheap to send between processes)."""

    paths: list[str | None]  # None for in-memory images
    inputs: list[Decoded]  # their `digit` fields are dropped: the digits are in `digits`
    digits: np.ndarray  # (number of OK inputs, 28, 28) uint8

    @classmethod
    def of(cls, paths: list[str | None], decoded: list[Decoded]) -> "DecodedChunk":
        digits = [item.digit for item in decoded if item.digit is not None]
        return cls(paths, [item._replace(digit=None) for item in decoded], stack_digits(digits))

    @property
    def statuses(self) -> list[str]:
        return [item.status for item in self.inputs]

    @property
    def ok(self) -> list[bool]:
        """Which inputs were classified: their digits are `digits`, in order."""
        return [item.status == OK for item in self.inputs]


def stack_digits(digits: list[np.ndarray]) -> np.ndarray:
    return np.stack(digits) if digits else np.zeros((0, 28, 28), np.uint8)


def digit_of(gray: Image.Image) -> Decoded:
    digit = preprocess(gray)
    if digit is None:
        return Decoded(BLANK, "no ink found: the image is blank or has too little contrast")
    return Decoded(OK, digit=digit)


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
    return load(data, max_pixels)._replace(file_size=info.st_size, file_mtime_ns=info.st_mtime_ns)


def failed(path: str, status: str, error: str) -> Decoded:
    """The record of a file that was not classified, with its size and mtime when it can be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return Decoded(status, error)
    return Decoded(status, error, None, info.st_size, info.st_mtime_ns)


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


def image_from_array(array: np.ndarray) -> Image.Image:
    """2-D grey, or height x width x 1/3/4 channels; floats in 0-1 are scaled to 0-255."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ImageProblem("unsupported", f"array of shape {array.shape} is not an image (H x W, or H x W x 1/3/4)")
    if array.dtype.kind not in "buif":  # complex, strings, objects: no pixel values
        raise ImageProblem("unsupported", f"array of dtype {array.dtype} is not an image (give numbers or booleans)")
    if array.dtype.kind == "f":
        array = np.where(np.isfinite(array), array, 0.0)  # NaN and infinities: no ink
        array = (array * (255.0 if array.max() <= 1.0 else 1.0)).clip(0, 255).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        top = int(array.max())
        array = (array.astype(np.float64) * (255.0 / top if top > 255 else 1.0)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def preprocess_chunk(paths: list[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedChunk:
    """Worker task: image files -> one DecodedChunk."""
    return DecodedChunk.of(paths, [load_path(path, max_pixels) for path in paths])
