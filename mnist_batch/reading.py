"""Reading an input: the guarded file read, decoding, and conversion to grey.

Every image file the package opens is read here (read_file), and every decoder's failure
becomes an ImageProblem whose status names the error kind. PNG and JPEG files go through
pyspng and simplejpeg when the `fast` extra is installed (several times faster than Pillow,
and the same pixels); Pillow reads every other format, and every file the fast path declines
or fails on, so its errors and its decompression-bomb guard are the ones reported.
Nothing imports torch.
"""

import errno
import io
import os
import stat
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_batch.errors import shown

try:  # the `fast` extra: without it Pillow decodes everything
    import pyspng
except ImportError:
    pyspng = None
try:
    import simplejpeg
except ImportError:
    simplejpeg = None

DEFAULT_MAX_PIXELS = 40_000_000  # refuse larger images before decoding (decompression bombs)
MAX_FILE_BYTES = 512 * 1024 * 1024  # no digit scan is this big; never read one into memory
WORK_SIDE = 112  # larger images are reduced to about this before cropping: fast, and it averages paper noise
# Large JPEGs are decoded at 1/2 size, no less (libjpeg's DCT scaling): at 1/4 and 1/8, page scans
# lost about a point of accuracy (`python bench/bench_decode.py draft`).
MAX_DRAFT_SCALE = 2

# Pillow warns before refusing; our own cap decides, so its warnings would only be noise.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
# A JPEG with a broken MPF segment is read as the plain JPEG it is; the warning names no input.
warnings.filterwarnings("ignore", "Image appears to be a malformed MPO file")


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
    except ValueError:  # a NUL byte, from a labels file or the Python API: the kernel takes no such name
        raise ImageProblem("missing", "the path holds a NUL byte, which no file name can: fix the path") from None
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
            return ImageProblem("missing", f"broken symlink: its target {shown(os.readlink(path))} does not exist")
        return ImageProblem("missing", "file not found (moved or deleted during the run?)")
    try:  # a socket cannot be opened at all (ENXIO): what it is, not the error, says what to do
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return ImageProblem("unsupported", f"is a {file_kind(mode)}, not an image file")
    if isinstance(error, PermissionError):
        if os.path.isdir(path):
            return ImageProblem("unreadable", "cannot list this folder: permission denied; its files were skipped")
        return ImageProblem("unreadable", "permission denied: make the file readable")
    if error.errno == errno.ELOOP:
        return ImageProblem("unreadable", "symlink loop: the link leads back to itself")
    return ImageProblem("unreadable", f"cannot read: {error.strerror or error}")


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The grey pixels (Pillow's mode L) of an image file, upright, alpha flattened over white (or
    black: paper_under); large JPEGs decoded reduced."""
    fast = fast_decode(data, max_pixels)
    if fast is not None:
        return fast
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageProblem("not_image", "not an image file Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageProblem("too_large", "image has too many pixels (decompression bomb?)") from None
    except Exception as error:  # Pillow's plugins raise many types for a broken header
        raise ImageProblem("corrupt", f"broken image header: {error}") from None
    return np.asarray(prepare(image, max_pixels))


def prepare(image: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An opened image -> mode L, upright, alpha over white or black (paper_under); checks the
    pixel cap first."""
    width, height = image.size
    if not width or not height:
        raise ImageProblem("corrupt", f"a {width}x{height} image has no pixels")
    if width * height > max_pixels:
        raise ImageProblem("too_large", f"{width}x{height} pixels is over the {max_pixels:,} pixel cap")
    if image.format == "JPEG" and min(width, height) > 2 * WORK_SIDE:
        # libjpeg decodes straight to half size and to grey: several times faster.
        image.draft("L", draft_size(width, height))
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


LIGHT_STROKES = 0.95  # share of a mostly transparent image's drawn pixels: light strokes go on black
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# pyspng's output for each PNG colour type; grey with alpha comes out as RGBA (pyspng has no LA).
# A palette's tRNS transparency pyspng drops, and Pillow flattens over white: such files go to Pillow.
# (Pillow's grey and RGB images ignore a tRNS colour key, as pyspng does.)
PNG_FORMATS = {0: "L", 2: "RGB", 3: "RGB", 4: "RGBA", 6: "RGBA"}
PALETTE = 3


def fast_decode(data: bytes, max_pixels: int) -> np.ndarray | None:
    """As decode() gives it, for a PNG or JPEG the fast decoders read exactly as Pillow does; None
    for any other file, and for one they decline or fail on: Pillow reads it and names its fault."""
    try:
        if pyspng is not None and data.startswith(PNG_SIGNATURE):
            return fast_png(data, max_pixels)
        if simplejpeg is not None and data.startswith(b"\xff\xd8"):
            return fast_jpeg(data, max_pixels)
    except Exception:  # a broken file: Pillow decodes it again, for the same error row as ever
        return None
    return None


def within_cap(width: int, height: int, max_pixels: int) -> bool:
    """Whether a header's size may be decoded: larger ones go to Pillow, which refuses them before
    decoding (its own cap, when lower, included), with the messages it always gave."""
    return 0 < width * height <= min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


def fast_png(data: bytes, max_pixels: int) -> np.ndarray | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    if not within_cap(width, height, min(max_pixels, FAST_PNG_PIXELS)) or depth == 16 or colour not in PNG_FORMATS:
        return None  # larger images (those over the pixel cap included), 16 bits per sample
    chunks = intact_png_chunks(data)
    # EXIF (an eXIf chunk or an "exif" text) may turn the image: Pillow turns it.
    if chunks is None or b"eXIf" in chunks or b"exif" in chunks or (colour == PALETTE and b"tRNS" in chunks):
        return None
    pixels = pyspng.load(data, PNG_FORMATS[colour])
    return pixels if pixels.ndim == 2 else np.asarray(to_gray(Image.fromarray(pixels)))


# pyspng ignores the CRCs and the zlib checksum, and decodes damaged files that Pillow refuses, so
# both are checked here first. Inflating twice costs more than pyspng saves on all but small images,
# where Pillow's cost is its fixed cost per file: larger PNGs go to Pillow.
FAST_PNG_PIXELS = 64 * 64
MAX_INFLATED = 5 * FAST_PNG_PIXELS + 1024  # bytes: more than such an image holds, Adam7 filter bytes included
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
CHUNK_HEAD, CHUNK_CRC = struct.Struct(">I4s"), struct.Struct(">I")


def intact_png_chunks(data: bytes) -> set[bytes] | None:
    """The chunk types of a PNG (and b"exif" for a text chunk of that key, which Pillow reads as
    EXIF), or None unless every chunk up to IEND is whole and matches its CRC, and the image data
    inflates with its zlib checksum right."""
    view, kinds, image_data, at = memoryview(data), set(), [], 8
    while at + 12 <= len(data):
        length, kind = CHUNK_HEAD.unpack_from(data, at)
        end = at + 8 + length
        if end + 4 > len(data) or zlib.crc32(view[at + 4 : end]) != CHUNK_CRC.unpack_from(data, end)[0]:
            return None
        kinds.add(b"exif" if kind in TEXT_CHUNKS and data[at + 8 : at + 13] == b"exif\0" else kind)
        if kind == b"IDAT":
            image_data.append(view[at + 8 : end])
        if kind == b"IEND":
            # Inflated only as far as a small image goes: a stream that inflates further (a zip
            # bomb behind a small header) goes to Pillow, which inflates only what the image needs.
            inflating = zlib.decompressobj()
            inflating.decompress(b"".join(image_data), MAX_INFLATED)  # zlib.error: stream or checksum broken
            return kinds if inflating.eof else None
        at = end + 4
    return None


def fast_jpeg(data: bytes, max_pixels: int) -> np.ndarray | None:
    height, width, colour, _ = simplejpeg.decode_jpeg_header(data)
    # CMYK and YCCK (Adobe's inverted inks), EXIF that may turn the image, and MPF (Pillow reads the
    # file as MPO, without draft): Pillow.
    if not within_cap(width, height, max_pixels) or colour not in ("Gray", "YCbCr") or exif_or_mpf(data):
        return None
    if min(width, height) > 2 * WORK_SIDE:  # as prepare() drafts it: grey (the Y channel), reduced
        scale = jpeg_draft_scale(width, height)
        size = (-(-height // scale), -(-width // scale))
        pixels = simplejpeg.decode_jpeg(data, "GRAY", min_height=size[0], min_width=size[1], min_factor=scale)
        return pixels[:, :, 0] if pixels.shape[:2] == size else None
    if colour == "Gray":
        return simplejpeg.decode_jpeg(data, "GRAY")[:, :, 0]
    return np.asarray(Image.fromarray(simplejpeg.decode_jpeg(data, "RGB")).convert("L"))


def exif_or_mpf(data: bytes) -> bool:
    """Whether a JPEG's segments before its image data hold EXIF or MPF; True for segments that do
    not read as expected (Pillow reads the file). A walk over the segments, not a search of the
    whole file: a page scan is a megabyte."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xDA:  # start of scan: the image data follows
            return False
        if marker == 0xFF:  # a fill byte
            at += 1
            continue
        if (marker == 0xE1 and data[at + 4 : at + 10] == b"Exif\0\0") or (
                marker == 0xE2 and data[at + 4 : at + 8] == b"MPF\0"):
            return True
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return True


def draft_size(width: int, height: int) -> tuple[int, int]:
    """The size prepare() asks JPEG's draft() for: the shorter side stays at least WORK_SIDE, and
    the scale at most 1/MAX_DRAFT_SCALE."""
    side = width * WORK_SIDE // min(width, height)
    return max(side, width // MAX_DRAFT_SCALE), max(side, height // MAX_DRAFT_SCALE)


def jpeg_draft_scale(width: int, height: int) -> int:
    """The DCT scale (1, 2, 4 or 8) that Pillow's JPEG draft() picks for draft_size()."""
    wanted = draft_size(width, height)
    fits = min(width // wanted[0], height // wanted[1])
    return next(scale for scale in (8, 4, 2, 1) if fits >= scale or scale == 1)


def to_gray(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode == "LAB":  # a CIELAB TIFF: Pillow converts it to no other mode, and its L is the lightness
        return image.getchannel("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, paper_under(rgba)), rgba).convert("L")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        values = np.where(np.isfinite(values), values, 0.0)  # an "F" image may hold NaN: no ink
        top = values.max()
        scaled = values * (255.0 / top) if top > 0 else values
        return Image.fromarray(scaled.clip(0, 255).astype(np.uint8))
    return image.convert("L")


def paper_under(rgba: Image.Image) -> str:
    """White, as a viewer shows transparency; but black under light strokes alone on a background
    that is mostly transparent (ink drawn light on a dark canvas and exported alone), which on
    white would vanish. A light patch of paper with dark ink on it stays on white."""
    alpha = np.asarray(rgba.getchannel("A"))
    if (alpha > 0).mean() > 0.5 or not alpha.any():
        return "white"
    drawn = np.asarray(rgba.convert("L"))[alpha >= alpha.max() / 2]  # their grey, alpha aside
    return "black" if (drawn >= 128).mean() > LIGHT_STROKES else "white"


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
