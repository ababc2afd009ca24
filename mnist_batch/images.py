"""Decode any image Pillow reads and turn it into a 28x28 MNIST-style digit.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept, anti-aliased)
and centred by centre of mass in 28x28. Scans are dark ink on light paper, any size,
off-centre, RGB, with alpha, EXIF rotation or JPEG noise. preprocess() maps both to the
same form; an image already in MNIST form (28x28, dark background) passes through unchanged.

Everything here works on plain values (bytes, arrays) so that worker processes and
distributed batch maps can call it; nothing imports torch.
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000  # refuse larger images before decoding (decompression bombs)
MAX_FILE_BYTES = 512 * 1024 * 1024  # no digit scan is this big; never read one into memory
WORK_SIDE = 112  # larger images are reduced to about this before cropping: fast, and it averages paper noise
MIN_CONTRAST = 40  # ink must stand this far (0-255) above the paper, or the image is blank
INK_THRESHOLD = 0.3  # of the peak ink level: below it is paper noise or shading
BLANK_PEAK = 32  # an MNIST-form image whose brightest pixel is below this has no digit

# Pillow warns before refusing; our own cap decides, so its warnings would only be noise.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

OK, BLANK = "ok", "blank"

# The 108 edge pixels of a 28x28 image, as one index: the MNIST-form check runs per image.
MNIST_BORDER = np.zeros((28, 28), bool)
MNIST_BORDER[[0, -1], :] = MNIST_BORDER[:, [0, -1]] = True


class ImageProblem(Exception):
    """An input that cannot be classified: `status` is the error kind, the message says why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def read_file(path: str) -> tuple[bytes, os.stat_result]:
    """The file's bytes and stat, or an ImageProblem naming what went wrong with it."""
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_size > MAX_FILE_BYTES:
                raise ImageProblem("too_large", f"file is over {MAX_FILE_BYTES >> 20} MiB")
            data = f.read()
    except FileNotFoundError:
        raise ImageProblem("missing", "file not found (moved or deleted during the run?)") from None
    except PermissionError:
        raise ImageProblem("unreadable", "permission denied: make the file readable") from None
    except IsADirectoryError:
        raise ImageProblem("unsupported", "is a directory, not an image") from None
    except OSError as error:
        raise ImageProblem("unreadable", f"cannot read: {error.strerror or error}") from None
    if not data:
        raise ImageProblem("empty", "file is empty (0 bytes)")
    return data, info


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
    width, height = image.size
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
        top = values.max()
        scaled = values * (255.0 / top) if top > 0 else values
        return Image.fromarray(scaled.clip(0, 255).astype(np.uint8))
    return image.convert("L")


def preprocess(gray: Image.Image) -> np.ndarray | None:
    """28x28 uint8 MNIST-style digit (white on black), or None when the image is blank."""
    pixels = np.asarray(gray)
    height, width = pixels.shape
    border = pixels[MNIST_BORDER] if (height, width) == (28, 28) else np.concatenate(
        [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    light_background = np.count_nonzero(border > 127) * 2 > border.size  # majority: cheaper than a median
    if (height, width) == (28, 28) and not light_background:
        return pixels if pixels.max() >= BLANK_PEAK else None

    if max(height, width) > 2 * WORK_SIDE:
        factor = max(height, width) // WORK_SIDE
        pixels = np.asarray(gray.reduce(factor))
    ink = (255 - pixels if light_background else pixels).astype(np.float32)
    ink -= np.median(ink)  # most of a digit image is paper: its level is the background
    peak = ink.max()
    if peak < MIN_CONTRAST:
        return None
    ink *= 255.0 / peak
    ink[ink < INK_THRESHOLD * 255] = 0  # background removal: paper grain, shading, JPEG ringing
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

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


def load(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str, str | None]:
    """bytes -> (28x28 digit or None, status, error message). Never raises for bad input."""
    try:
        digit = preprocess(decode(data, max_pixels))
    except ImageProblem as problem:
        return None, problem.status, str(problem)
    if digit is None:
        return None, BLANK, "no ink found: the image is blank or has too little contrast"
    return digit, OK, None


def load_path(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple:
    """path -> (28x28 digit or None, status, error, file size, mtime in ns); never raises."""
    try:
        data, info = read_file(path)
    except ImageProblem as problem:
        try:
            info = os.stat(path)
            return None, problem.status, str(problem), info.st_size, info.st_mtime_ns
        except OSError:
            return None, problem.status, str(problem), None, None
    return (*load(data, max_pixels), info.st_size, info.st_mtime_ns)
