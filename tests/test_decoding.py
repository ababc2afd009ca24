"""The fast decoders (pyspng for PNG, simplejpeg for JPEG: the `fast` extra) give exactly what
Pillow gives: the same grey pixels, the same digits, the same error rows, the same refusals.
Real files the tests write; Pillow alone is the reader when the two are absent."""

import io
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mnist_batch import reading, records

pytest.importorskip("pyspng")
pytest.importorskip("simplejpeg")


@pytest.fixture
def pillow_only(monkeypatch):
    """Within it, decoding runs as it did before the fast path: Pillow reads every file."""

    def without_fast_decoders(function, *args):
        with monkeypatch.context() as patch:
            patch.setattr(reading, "pyspng", None)
            patch.setattr(reading, "simplejpeg", None)
            return function(*args)

    return without_fast_decoders


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def paper_digit(digit: np.ndarray, width: int, height: int, seed: int = 0) -> Image.Image:
    """A digit as tinted dark ink on noisy light paper, width x height, the ink about half the height."""
    rng = np.random.default_rng(seed)
    side = height // 2
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), np.float32) / 255
    paper = rng.uniform(200, 240) + rng.normal(0, 4, (height, width))
    top, left = (height - side) // 3, (width - side) // 2
    paper[top : top + side, left : left + side] *= 1 - 0.8 * ink
    gray = paper.clip(0, 255).astype(np.uint8)
    return Image.fromarray((gray[..., None] * np.array([1.0, 0.95, 0.9])).clip(0, 255).astype(np.uint8), "RGB")


def fast_path_files(digit: np.ndarray) -> dict[str, bytes]:
    """Files the fast decoders read themselves: small PNGs of every 8-bit colour type, and JPEGs
    of every size and kind (grey, colour, each chroma subsampling, progressive, drafted)."""
    small = paper_digit(digit, 40, 36)
    rgba = small.copy()
    rgba.putalpha(Image.fromarray(np.linspace(0, 255, 40 * 36).astype(np.uint8).reshape(36, 40)))
    files = {"png L": encoded(small.convert("L"), "PNG"), "png RGB": encoded(small, "PNG"),
             "png RGBA": encoded(rgba, "PNG"), "png LA": encoded(rgba.convert("LA"), "PNG"),
             "png palette": encoded(small.quantize(64), "PNG"), "png 4-bit palette": encoded(small.quantize(16), "PNG",
                                                                                            bits=4),
             "png 1-bit": encoded(small.convert("1"), "PNG"), "png MNIST": encoded(Image.fromarray(digit), "PNG"),
             "png grey with a tRNS colour key": encoded(small.convert("L"), "PNG", transparency=200)}
    for width, height in ((28, 28), (150, 120), (300, 300), (517, 301), (301, 517), (1000, 250), (1600, 1200)):
        page = paper_digit(digit, width, height)
        files[f"jpg RGB {width}x{height}"] = encoded(page, "JPEG", quality=85)
        files[f"jpg grey {width}x{height}"] = encoded(page.convert("L"), "JPEG", quality=85)
        files[f"jpg progressive {width}x{height}"] = encoded(page, "JPEG", progressive=True)
        files[f"jpg 4:4:4 {width}x{height}"] = encoded(page, "JPEG", subsampling=0)
        files[f"jpg 4:2:2 {width}x{height}"] = encoded(page, "JPEG", subsampling=1)
    return files


def pillow_files(digit: np.ndarray) -> dict[str, bytes]:
    """Files the fast path leaves to Pillow, which reads them as it always did."""
    small, page = paper_digit(digit, 40, 36), paper_digit(digit, 600, 400)
    turned = Image.Exif()
    turned[0x0112] = 6  # orientation: turned 90 degrees
    grey16 = Image.fromarray((np.asarray(small.convert("L"), np.uint16) * 200).astype(np.uint16))
    return {"png palette with transparency": encoded(small.quantize(64), "PNG", transparency=3),
            "png 16-bit grey": encoded(grey16, "PNG"), "png large": encoded(page, "PNG"),
            "png with EXIF": encoded(small, "PNG", exif=turned),
            "jpg CMYK": encoded(page.convert("CMYK"), "JPEG"), "jpg with EXIF orientation": encoded(page, "JPEG",
                                                                                                    exif=turned),
            "jpg MPO (two pictures)": encoded(page, "MPO", save_all=True, append_images=[small]),
            "gif": encoded(small, "GIF"), "bmp": encoded(small, "BMP")}


def test_the_fast_decoders_give_pillows_grey_pixels(mnist_test, pillow_only, tmp_path):
    for name, data in fast_path_files(mnist_test.images[7]).items():
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(data)
        data, _ = reading.read_file(str(path))
        fast = reading.fast_decode(data, reading.DEFAULT_MAX_PIXELS)
        assert fast is not None, name  # the fast decoder read it, not Pillow
        assert np.array_equal(np.asarray(fast), np.asarray(pillow_only(reading.decode, data))), name


def test_files_the_fast_decoders_leave_to_pillow_read_as_before(mnist_test, pillow_only):
    for name, data in pillow_files(mnist_test.images[7]).items():
        assert reading.fast_decode(data, reading.DEFAULT_MAX_PIXELS) is None, name
        assert np.array_equal(np.asarray(reading.decode(data)), np.asarray(pillow_only(reading.decode, data))), name
    turned = reading.decode(pillow_files(mnist_test.images[7])["jpg with EXIF orientation"])
    assert turned.shape[0] > turned.shape[1]  # upright: turned as its EXIF says (a 600x400 page)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def grey_png(width: int, height: int, stream: bytes) -> bytes:
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return reading.PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def damaged_files(digit: np.ndarray) -> dict[str, bytes]:
    """Damaged PNGs and JPEGs: cut short, bytes changed, and (written so, with every CRC right) a
    wrong zlib checksum. pyspng alone decodes several of them."""
    png, jpg = encoded(Image.fromarray(digit), "PNG"), encoded(paper_digit(digit, 60, 60), "JPEG")
    raw = b"".join(b"\0" + row.tobytes() for row in digit)
    files = {"png without its zlib checksum": grey_png(28, 28, zlib.compress(raw)[:-4] + bytes(4)),
             "png with its image data cut short": grey_png(28, 28, zlib.compress(raw[:-40])),
             "png with a bad filter byte": grey_png(28, 28, zlib.compress(b"\x09" + raw[1:]))}
    for data, kind in ((png, "png"), (jpg, "jpg")):
        for cut in (10, 30, len(data) // 2, len(data) - 3):
            files[f"{kind} cut at {cut}"] = data[:cut]
        for at in (20, 29, len(data) // 2, len(data) - 20, len(data) - 6):
            changed = bytearray(data)
            changed[at] ^= 0x41
            files[f"{kind} changed at {at}"] = bytes(changed)
    return files


def test_a_damaged_png_or_jpeg_gives_the_same_row_as_before(mnist_test, pillow_only, tmp_path):
    for name, data in damaged_files(mnist_test.images[3]).items():
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(data)
        fast, before = records.load_path(str(path)), pillow_only(records.load_path, str(path))
        assert (fast.status, fast.error) == (before.status, before.error), name
        assert (fast.digit is None and before.digit is None) or np.array_equal(fast.digit, before.digit), name
    assert records.load(damaged_files(mnist_test.images[3])["png without its zlib checksum"]).status == "corrupt"


def jpeg_of_size(width: int, height: int) -> bytes:
    """A valid 8x8 JPEG whose frame header claims width x height: a decompression bomb's header."""
    data = bytearray(encoded(Image.new("L", (8, 8), 128), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_the_pixel_cap_holds_before_any_fast_decoding(monkeypatch, pillow_only):
    def never(*args, **kwargs):
        raise AssertionError("a fast decoder ran on an image over the pixel cap")

    monkeypatch.setattr(reading.pyspng, "load", never)
    monkeypatch.setattr(reading.simplejpeg, "decode_jpeg", never)
    bombs = {"png": grey_png(30_000, 30_000, zlib.compress(b"\0" * 30_001)), "jpg": jpeg_of_size(40_000, 40_000),
             "capped png": encoded(Image.new("L", (28, 28)), "PNG"), "capped jpg": jpeg_of_size(200, 100)}
    for name, data in bombs.items():
        cap = 700 if name.startswith("capped") else reading.DEFAULT_MAX_PIXELS
        refused, before = records.load(data, cap), pillow_only(records.load, data, cap)
        assert refused.status == "too_large" and (refused.status, refused.error) == (before.status, before.error), name
    assert records.load(bombs["capped png"], 700).error == "28x28 pixels is over the 700 pixel cap"


def test_a_small_png_whose_data_inflates_far_beyond_its_size_is_left_to_pillow(pillow_only):
    """A zip bomb behind a 28x28 header: the fast path does not inflate it all, Pillow reads it."""
    bomb = grey_png(28, 28, zlib.compress(bytes(50_000_000), 9))
    assert reading.fast_decode(bomb, reading.DEFAULT_MAX_PIXELS) is None
    loaded, before = records.load(bomb), pillow_only(records.load, bomb)
    assert (loaded.status, loaded.error) == (before.status, before.error)


def test_classify_gives_the_same_rows_with_and_without_the_fast_decoders(cli, mnist_test, pillow_only, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(mnist_test.images[i]).save(folder / f"mnist_{i}.png")
        (folder / f"scan_{i}.jpg").write_bytes(encoded(paper_digit(mnist_test.images[i], 160 + 40 * i, 300, i),
                                                       "JPEG", quality=80))
    for name, data in list(damaged_files(mnist_test.images[0]).items())[:6]:
        (folder / f"{name.replace(' ', '_')}.{name[:3]}").write_bytes(data)

    def rows(out: Path) -> pl.DataFrame:
        result = cli("classify", folder, "--out", out, "--workers", "1", "--quiet")
        assert result.exit_code == 3, result.stderr  # the damaged files failed
        return pl.read_parquet(out).select("path", "status", "error", "pred", "confidence").sort("path")

    fast, before = rows(tmp_path / "fast.parquet"), pillow_only(rows, tmp_path / "pillow.parquet")
    assert fast.equals(before)
    assert fast["status"].value_counts().filter(pl.col("status") == "ok")["count"].item() == 24


def test_a_large_jpeg_decoded_at_a_reduced_scale_gives_the_digit_of_full_decoding(classifier, mnist_test, tmp_path):
    """Scans of 1,200 to 3,000 px are decoded at half size (libjpeg's DCT scaling): the digits they
    give are predicted as those of the full-size images are."""
    paths, full = [], []
    for i in range(12):
        width = 1200 + 150 * i
        path = tmp_path / f"page_{i}.jpg"
        path.write_bytes(encoded(paper_digit(mnist_test.images[i], width, width * 3 // 4, i), "JPEG", quality=80))
        paths.append(path)
        with Image.open(path) as image:
            full.append(image.convert("L"))  # decoded at full size: an in-memory image is never drafted
    assert {reading.jpeg_draft_scale(*Image.open(path).size) for path in paths} == {2}
    drafted, whole = classifier.predict(paths), classifier.predict(full)
    assert drafted["status"].to_list() == ["ok"] * 12
    assert drafted["pred"].to_list() == whole["pred"].to_list()
    assert (drafted["pred"].to_numpy() == mnist_test.labels[:12]).mean() >= 0.9
