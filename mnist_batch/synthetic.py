"""Synthetic inputs drawn with Pillow: things that are not one digit, and digits in form fields.

`train` mixes non-digits into smallbn's batches as an 11th class ("not a digit"); the tests and
benches draw form fields and held-out non-digits (other fonts, other seeds) to measure against.
Every image is dark ink on light paper, as a scan is, and goes through the same preprocessing
as a user's file (digitize.preprocess), so the network learns what classify will show it.
"""

import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_batch import records

# Letters that no writer's digit resembles closely (no O, I, i, l, Z, S, B, G, b, g, q, T, ...): a
# J's or j's hook and an L's foot are what a 1 does not have (a printed j is still read as a 1 or a 3
# two times in five by the network trained with it). No D or Q: a marker's 0 cropped to its
# ink is one (trained with them, 8-12 of the bench's 1,000 thick-pen digits were 0s taken for
# non-digits; without them 6-7).
LETTERS = "ACEFHJKLMNPRUVWXYacdefhjkmnprtuvwxy"
# Signs written on forms that resemble no digit: not / ( ) [ ] ! |, which a writer's 1 looks like,
# nor $ (an S), ? (a 2 or a 7), nor - = ~, which preprocessing already finds flat (no digit).
SYMBOLS = "+#%&@*<>"
# A digit cut in half (across its ink's box) is a non-digit only where the half resembles no digit.
# Chosen from sheets of MNIST test halves by digit and side, and the network before halves were
# trained: a 1's half is a 1, an 8's top half a 0, a 7's right half a 7, a 4's right half a 1 with
# a stub, a 2's top half a 7, a 3's top half often a 2; those are left out.
HALVES_UNLIKE_A_DIGIT = {0: ("top", "bottom"), 2: ("bottom",), 3: ("bottom", "left"), 4: ("top", "left"),
                         5: ("top", "bottom", "left"), 6: ("right",), 7: ("left",), 8: ("left",), 9: ("left",)}
TRAIN_FONTS = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSerif", "DejaVuSerif-Bold",
               "DejaVuSerif-Italic", "DejaVuSansMono", "DejaVuSansMono-BoldOblique")
HELD_OUT_FONTS = ("STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "cmr10", "cmss10", "cmtt10")
TEX_TEXT_FONTS = ("cmr10", "cmss10")  # TeX's text encoding: < > ~ print as ¡ ¿ and an accent, so no signs
KINDS = ("letter", "symbol", "pair", "half", "scribble", "tick", "cross", "blot", "underline", "empty_box", "noise",
         "scratch_out", "crossed_out", "stamp", "hand_letter", "shape", "hatching")
# Capital letters of LETTERS as a writer's pen strokes, in a unit box (x right, y down); the strokes
# are jittered, slanted and rounded as a hand would (handwritten_letter).
HAND_LETTERS = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.25, 0.6), (0.75, 0.6)]],
    "C": [[(0.9, 0.15), (0.6, 0), (0.25, 0.05), (0.05, 0.5), (0.25, 0.95), (0.6, 1), (0.9, 0.85)]],
    "E": [[(0.9, 0), (0.1, 0), (0.1, 1), (0.9, 1)], [(0.1, 0.5), (0.7, 0.5)]],
    "F": [[(0.9, 0), (0.1, 0), (0.1, 1)], [(0.1, 0.5), (0.7, 0.5)]],
    "H": [[(0.1, 0), (0.1, 1)], [(0.9, 0), (0.9, 1)], [(0.1, 0.5), (0.9, 0.5)]],
    "J": [[(0.3, 0), (0.95, 0)], [(0.7, 0), (0.7, 0.75), (0.55, 0.97), (0.3, 0.97), (0.1, 0.75)]],
    "K": [[(0.1, 0), (0.1, 1)], [(0.85, 0), (0.1, 0.6)], [(0.35, 0.4), (0.9, 1)]],
    "L": [[(0.1, 0), (0.1, 1), (0.85, 1)]],
    "M": [[(0.05, 1), (0.15, 0), (0.5, 0.6), (0.85, 0), (0.95, 1)]],
    "N": [[(0.1, 1), (0.1, 0), (0.9, 1), (0.9, 0)]],
    "P": [[(0.1, 1), (0.1, 0), (0.6, 0.02), (0.85, 0.2), (0.85, 0.35), (0.6, 0.5), (0.1, 0.5)]],
    "R": [[(0.1, 1), (0.1, 0), (0.6, 0.02), (0.85, 0.2), (0.85, 0.35), (0.6, 0.5), (0.1, 0.5)], [(0.4, 0.5), (0.9, 1)]],
    "U": [[(0.1, 0), (0.1, 0.7), (0.3, 0.97), (0.7, 0.97), (0.9, 0.7), (0.9, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0.1, 0), (0.9, 1)], [(0.9, 0), (0.1, 1)]],
    "Y": [[(0.1, 0), (0.5, 0.5)], [(0.9, 0), (0.5, 0.5), (0.5, 1)]],
}
# Hand-drawn figures a form or a margin holds. No circle, square or diamond: at 28x28, where
# preprocessing gives every pen MNIST's width, a 0 is one (a thick pen's, a rounded square with a
# hole); printed boxes are a kind of their own.
SHAPES = {
    "triangle": [[(0.5, 0), (1, 1), (0, 1), (0.5, 0)]],
    "star": [[(0.5, 0), (0.79, 0.9), (0.02, 0.35), (0.98, 0.35), (0.21, 0.9), (0.5, 0)]],
    "arrow": [[(0, 0.5), (1, 0.5)], [(0.7, 0.2), (1, 0.5), (0.7, 0.8)]],
}
FRAMES = ("box", "open", "comb", "underline")
TIGHT_CROPS = 0.2  # share of scanned digits cut to their ink's box
MAX_LIT_SHARE = 0.36  # of a 28x28 digit's pixels: MNIST training digits stay under 0.33


def font_path(name: str) -> str:
    import matplotlib  # a dependency already (plots); it ships these fonts

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf")


def paper(size: tuple[int, int], rng) -> Image.Image:
    """Light paper, slightly tinted and grainy."""
    level = rng.uniform(200, 250)
    grain = rng.normal(0, rng.uniform(1, 6), (size[1], size[0]))
    return Image.fromarray((level + grain).clip(0, 255).astype(np.uint8))


def ink_level(rng) -> int:
    return int(rng.uniform(10, 90))


def pen_on_paper(rng, widths: tuple[float, float] = (0.03, 0.09)):
    """(side, page, draw, width, fill): a square crop of paper 48-119 px wide to draw on, and a pen:
    its width, `widths` of the side, and its ink level."""
    side = int(rng.integers(48, 120))
    page = paper((side, side), rng)
    return side, page, ImageDraw.Draw(page), max(1, int(side * rng.uniform(*widths))), ink_level(rng)


def glyph(rng, fonts: tuple[str, ...], characters: str) -> Image.Image:
    """One of `characters` (letters or signs) printed in one of `fonts`, slanted and blurred."""
    side = int(rng.integers(48, 120))
    page = paper((side, side), rng)
    font = ImageFont.truetype(font_path(fonts[rng.integers(len(fonts))]), int(side * rng.uniform(0.5, 0.8)))
    draw = ImageDraw.Draw(page)
    draw.text((side / 2, side / 2), characters[rng.integers(len(characters))], fill=ink_level(rng), font=font,
              anchor="mm")
    shear = rng.uniform(-0.3, 0.3)  # slant
    page = page.transform(page.size, Image.AFFINE, (1, shear, -shear * side / 2, 0, 1, 0),
                          resample=Image.BILINEAR, fillcolor=int(np.asarray(page)[0, 0]))
    return page.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def on_paper(ink: np.ndarray, rng) -> Image.Image:
    """MNIST-style ink (light on black), with 6 px of margin, enlarged and pressed onto paper."""
    ink = np.pad(ink, 6)
    scale = rng.uniform(1.5, 3.5)
    big = Image.fromarray(ink).resize((int(ink.shape[1] * scale), int(ink.shape[0] * scale)), Image.BICUBIC)
    page = np.asarray(paper(big.size, rng), np.float32)
    return Image.fromarray((page * (1 - np.asarray(big, np.float32) / 255 * rng.uniform(0.6, 0.95))).astype(np.uint8))


def digits_side_by_side(rng, images: np.ndarray) -> Image.Image:
    """Two or three MNIST digits in one crop, as a field that holds a number: apart or touching
    (overlapping by up to 4 px), of a size each, some a little higher than the others."""
    count = int(rng.integers(2, 4))
    pieces = []
    for digit in (images[i] for i in rng.integers(len(images), size=count)):
        size = int(28 * rng.uniform(0.75, 1.0))
        digit = np.asarray(Image.fromarray(digit).resize((size, size), Image.BICUBIC))
        cols = np.flatnonzero(digit.max(axis=0) > 30)
        pieces.append(digit[:, cols[0] : cols[-1] + 1] if len(cols) else digit)
    gaps = rng.integers(-4, 7, size=count)
    canvas = np.zeros((36, sum(piece.shape[1] for piece in pieces) + int(gaps[:-1].sum()) + 8), np.uint8)
    x = 4
    for piece, gap in zip(pieces, gaps, strict=True):
        y = int(rng.integers(0, 37 - piece.shape[0]))
        region = canvas[y : y + piece.shape[0], x : x + piece.shape[1]]
        np.maximum(region, piece, out=region)
        x += piece.shape[1] + int(gap)
    cols = np.flatnonzero(canvas.max(axis=0))
    return on_paper(canvas[:, cols[0] : cols[-1] + 1], rng)


def half_digit(rng, images: np.ndarray, labels: np.ndarray) -> Image.Image:
    """One side of an MNIST digit cut across its ink's box, where that side resembles no digit."""
    index = rng.choice(np.flatnonzero(np.isin(labels, list(HALVES_UNLIKE_A_DIGIT))))
    digit = images[index]
    rows, cols = np.flatnonzero(digit.max(axis=1) > 30), np.flatnonzero(digit.max(axis=0) > 30)
    ink = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = rng.choice(HALVES_UNLIKE_A_DIGIT[int(labels[index])])
    cut = rng.uniform(0.45, 0.55)
    row_cut, col_cut = round(ink.shape[0] * cut), round(ink.shape[1] * cut)
    halves = {"top": ink[:row_cut], "bottom": ink[row_cut:], "left": ink[:, :col_cut], "right": ink[:, col_cut:]}
    return on_paper(halves[side], rng)


def noise(rng) -> Image.Image:
    """A crop holding no writing: heavy grain, salt and pepper, blurred mottle, or scattered dots."""
    side = int(rng.integers(40, 120))
    pattern = rng.integers(4)
    if pattern == 0:
        pixels = rng.uniform(120, 230) + rng.normal(0, rng.uniform(20, 60), (side, side))
    elif pattern == 1:
        pixels = np.full((side, side), rng.uniform(200, 250))
        pixels[rng.random((side, side)) < rng.uniform(0.02, 0.15)] = rng.uniform(0, 60)
    elif pattern == 2:
        grain = Image.fromarray((rng.normal(128, 40, (side, side))).clip(0, 255).astype(np.uint8))
        pixels = np.asarray(grain.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4))), np.float32)
        pixels = (pixels - pixels.mean()) * rng.uniform(3, 8) + 200
    else:
        pixels = np.asarray(paper((side, side), rng), np.float32)
        for _ in range(int(rng.integers(5, 40))):
            (y, x), radius = rng.integers(0, side, 2), int(rng.integers(1, 3))
            pixels[max(0, y - radius) : y + radius, max(0, x - radius) : x + radius] = rng.uniform(0, 80)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def rounded(path: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Chaikin's corner cutting: a pen's curve through a polyline's points rather than its corners."""
    for _ in range(rounds):
        path = np.concatenate([0.75 * path[:-1] + 0.25 * path[1:], 0.25 * path[:-1] + 0.75 * path[1:]], axis=1)
        path = path.reshape(-1, 2)
    return path


def scribble(rng, side: int) -> list[list[tuple[float, float]]]:
    """The paths of a scribble: a wavy random walk, a coil of loops across the crop, or two to four
    loose curves (random walks smoothed)."""
    style = rng.integers(3)
    if style == 0:
        walk = np.cumsum(rng.normal(0, side * 0.18, (int(rng.integers(5, 14)), 2)), axis=0) + side / 2
        return [[tuple(p) for p in walk.clip(side * 0.1, side * 0.9)]]
    if style == 1:
        turns = rng.uniform(2.5, 6)
        t = np.linspace(0, turns * 2 * np.pi, int(turns * 24))
        radius = side * rng.uniform(0.1, 0.22)
        x = side * 0.15 + t / t[-1] * side * 0.7 + radius * np.cos(t) * rng.uniform(0.6, 1.2)
        y = side / 2 + radius * np.sin(t) + rng.normal(0, side * 0.02, len(t))
        return [list(zip(x.clip(0, side), y.clip(0, side), strict=True))]
    paths = []
    for _ in range(int(rng.integers(2, 5))):
        start = side * rng.uniform(0.3, 0.7, 2)
        walk = rounded(np.cumsum(rng.normal(0, side * 0.15, (int(rng.integers(4, 9)), 2)), axis=0) + start)
        paths.append([tuple(p) for p in walk.clip(side * 0.05, side * 0.95)])
    return paths


def zigzag(rng, box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """A scratch-out over `box` (x0, y0, x1, y1): 6-14 strokes back and forth across it, along or down."""
    x0, y0, x1, y1 = box
    count = int(rng.integers(6, 15))
    along = np.linspace(0, 1, count) + rng.normal(0, 0.03, count)
    ends = np.where(np.arange(count) % 2 == 0, 0.0, 1.0) + rng.normal(0, 0.05, count)
    if rng.random() < 0.5:
        return [(x0 + (x1 - x0) * e, y0 + (y1 - y0) * a) for a, e in zip(along, ends, strict=True)]
    return [(x0 + (x1 - x0) * a, y0 + (y1 - y0) * e) for a, e in zip(along, ends, strict=True)]


def blot(rng, draw: ImageDraw.ImageDraw, side: int, fill: int) -> None:
    """Ink spilt on the page: overlapping round drops, one ragged blob, or a blob with its splashes."""
    centre = side * rng.uniform(0.35, 0.65, 2)
    if rng.random() < 0.4:
        for _ in range(int(rng.integers(1, 5))):
            x, y = side * rng.uniform(0.3, 0.7, 2)
            rx, ry = side * rng.uniform(0.05, 0.25, 2)
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)
        return
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(7, 16))))
    radii = side * rng.uniform(0.08, 0.3) * rng.uniform(0.5, 1.3, len(angles))
    outline = centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    draw.polygon([tuple(p) for p in outline], fill=fill)
    for _ in range(int(rng.integers(0, 9)) if rng.random() < 0.5 else 0):
        x, y = centre + rng.normal(0, side * 0.25, 2)
        r = side * rng.uniform(0.01, 0.04)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def strokes(rng, kind: str) -> Image.Image:
    """Pen marks: a scribble, a scratch-out, a tick, a cross, an ink blot, or an underline."""
    side, page, draw, width, fill = pen_on_paper(rng)

    def point(x0, x1, y0, y1):
        return (side * rng.uniform(x0, x1), side * rng.uniform(y0, y1))

    if kind == "scribble":
        for path in scribble(rng, side):
            draw.line(path, fill=fill, width=width, joint="curve")
    elif kind == "scratch_out":
        draw.line(zigzag(rng, (*point(0.05, 0.3, 0.05, 0.3), *point(0.7, 0.95, 0.7, 0.95))), fill=fill, width=width,
                  joint="curve")
    elif kind == "tick":
        draw.line([point(0.15, 0.35, 0.45, 0.65), point(0.35, 0.5, 0.7, 0.9), point(0.65, 0.9, 0.1, 0.35)],
                  fill=fill, width=width, joint="curve")
    elif kind == "cross":
        draw.line([point(0.1, 0.3, 0.1, 0.3), point(0.7, 0.9, 0.7, 0.9)], fill=fill, width=width)
        draw.line([point(0.7, 0.9, 0.1, 0.3), point(0.1, 0.3, 0.7, 0.9)], fill=fill, width=width)
    elif kind == "blot":
        spilt = Image.new("L", page.size)
        blot(rng, ImageDraw.Draw(spilt), side, 255)
        soaked = np.asarray(spilt, np.float32) / 255 * (mottle(rng, side) if rng.random() < 0.35 else 1.0)
        shade = rng.uniform(10, 170)  # ink, or something lighter: coffee, watercolour, a pencil's smudge
        page = Image.fromarray((np.asarray(page, np.float32) * (1 - soaked * (1 - shade / 255))).astype(np.uint8))
        smudge = rng.uniform(0.5, 2.5) if rng.random() < 0.65 else rng.uniform(2.5, 6)
        page = page.filter(ImageFilter.GaussianBlur(smudge))
    elif kind == "underline":
        y = side * rng.uniform(0.6, 0.9)
        draw.line([(side * rng.uniform(0, 0.2), y), (side * rng.uniform(0.8, 1), y + rng.normal(0, 2))],
                  fill=fill, width=width)
    return page


def mottle(rng, side: int) -> np.ndarray:
    """(side, side) of 0.3-1: how much ink a blot soaked in, place by place."""
    grain = Image.fromarray(rng.normal(128, 60, (side, side)).clip(0, 255).astype(np.uint8))
    soft = np.asarray(grain.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3))), np.float32)
    return np.interp(soft, (soft.min(), soft.max()), (0.3, 1.0))


def hand_drawn(rng, figure: list[list[tuple[float, float]]], turn: float, aspect: tuple[float, float]) -> Image.Image:
    """`figure`'s strokes (points in a unit box) written with a pen on a crop of paper: each point
    moved a little, the whole slanted, stretched to a width of `aspect[0]`-`aspect[1]` times its
    height and turned by up to `turn` degrees either way, then the corners rounded."""
    side, page, draw, width, fill = pen_on_paper(rng)
    height = side * rng.uniform(0.45, 0.8)
    stretch = np.array([height * rng.uniform(*aspect), height])
    slant, angle = rng.uniform(-0.3, 0.3), np.radians(rng.uniform(-turn, turn))
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    centre = side / 2 + rng.normal(0, side * 0.04, 2)
    for stroke in figure:
        points = np.asarray(stroke, np.float64) + rng.normal(0, 0.04, (len(stroke), 2)) - 0.5
        points = ((points + np.outer(points[:, 1], [slant, 0])) * stretch) @ rotation + centre
        dense = np.concatenate([np.linspace(a, b, 3, endpoint=False) for a, b in itertools.pairwise(points)]
                               + [points[-1:]])
        # Rounding cuts the ends too: put back where the pen began and lifted.
        path = np.concatenate([dense[:1], rounded(dense, 2), dense[-1:]])
        draw.line([tuple(p) for p in path], fill=fill, width=width, joint="curve")
    return page


def handwritten_letter(rng) -> Image.Image:
    """A capital letter written by hand (HAND_LETTERS)."""
    letters = sorted(HAND_LETTERS)
    return hand_drawn(rng, HAND_LETTERS[letters[rng.integers(len(letters))]], turn=12, aspect=(0.6, 1.1))


def shape(rng) -> Image.Image:
    """A hand-drawn triangle, star or arrow (SHAPES), pointing any way."""
    names = sorted(SHAPES)
    return hand_drawn(rng, SHAPES[names[rng.integers(len(names))]], turn=180, aspect=(0.7, 1.3))


def hatching(rng) -> Image.Image:
    """A patch shaded with 4-7 parallel pen strokes at any angle, a third of them crossed by as many.
    At 28x28, where every pen is as broad as MNIST's, the denser ones are a block, as a blot is: over
    a quarter light more of it than any MNIST training digit (a lead for the thick-pen digits it costs)."""
    side, page, draw, width, fill = pen_on_paper(rng, widths=(0.02, 0.05))
    reach, count = side * rng.uniform(0.2, 0.4), int(rng.integers(4, 8))
    centre = side / 2 + rng.normal(0, side * 0.05, 2)
    first = rng.uniform(0, np.pi)
    for angle in (first, first + rng.uniform(np.pi / 4, 3 * np.pi / 4)) if rng.random() < 0.33 else (first,):
        along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        for offset in np.linspace(-reach, reach, count):
            ends = reach * rng.uniform(0.6, 1.0, 2) * np.array([-1, 1])
            draw.line([tuple(centre + offset * across + end * along) for end in ends], fill=fill, width=width)
    return page


def crossed_out(rng, images: np.ndarray) -> Image.Image:
    """An MNIST digit the writer cancelled: a scratch-out or a cross over its ink."""
    page = on_paper(images[rng.integers(len(images))], rng)
    side = page.size[0]
    draw = ImageDraw.Draw(page)
    width, fill = max(2, int(side * rng.uniform(0.04, 0.08))), ink_level(rng)
    inner = (side * 0.2, side * 0.2, side * 0.8, side * 0.8)
    if rng.random() < 0.6:
        draw.line(zigzag(rng, inner), fill=fill, width=width, joint="curve")
    else:  # a cross over it: one stroke alone would be a 7's or a 4's bar
        draw.line([(inner[0], inner[1]), (inner[2], inner[3])], fill=fill, width=width)
        draw.line([(inner[2], inner[1]), (inner[0], inner[3])], fill=fill, width=width)
    return page


def stamp(rng, fonts: tuple[str, ...]) -> Image.Image:
    """An office stamp in a field: a ring, a double ring or a frame printed in thin even lines, with
    letters in it, often fainter than a pen and turned."""
    side = int(rng.integers(56, 130))
    page = paper((side, side), rng)
    draw = ImageDraw.Draw(page)
    fill, width = int(rng.uniform(20, 140)), int(rng.integers(1, 4))
    inset = side * rng.uniform(0.05, 0.15)
    box = [inset, inset * rng.uniform(0.8, 2.5), side - inset, side - inset * rng.uniform(0.8, 2.5)]
    outline = draw.ellipse if rng.random() < 0.6 else draw.rectangle
    outline(box, outline=fill, width=width)
    if rng.random() < 0.4:
        gap = width + side * 0.05
        outline([box[0] + gap, box[1] + gap, box[2] - gap, box[3] - gap], outline=fill, width=width)
    font = ImageFont.truetype(font_path(fonts[rng.integers(len(fonts))]), int(side * rng.uniform(0.12, 0.22)))
    text = "".join(rng.choice(list(LETTERS.upper()), size=int(rng.integers(2, 6))))
    draw.text((side / 2, side / 2), text, fill=fill, font=font, anchor="mm")
    return page.rotate(float(rng.uniform(-30, 30)), Image.BICUBIC, fillcolor=int(np.median(page)))


def empty_field(rng) -> Image.Image:
    """A printed form field with nothing written in it."""
    return form_field(None, rng, float(rng.uniform(-5, 5)), int(rng.integers(0, 40)), int(rng.integers(1, 5)),
                      FRAMES[rng.integers(len(FRAMES))])


def non_digit(rng, kind: str, images: np.ndarray, labels: np.ndarray,
              fonts: tuple[str, ...] = TRAIN_FONTS) -> Image.Image:
    """One of KINDS, drawn from `fonts` and the MNIST `images` (with their `labels`) where it needs them."""
    if kind == "letter":
        return glyph(rng, fonts, LETTERS)
    if kind == "symbol":
        return glyph(rng, tuple(font for font in fonts if font not in TEX_TEXT_FONTS), SYMBOLS)
    if kind == "pair":
        return digits_side_by_side(rng, images)
    if kind == "half":
        return half_digit(rng, images, labels)
    if kind == "empty_box":
        return empty_field(rng)
    if kind == "noise":
        return noise(rng)
    if kind == "crossed_out":
        return crossed_out(rng, images)
    if kind == "stamp":
        return stamp(rng, fonts)
    if kind == "hand_letter":
        return handwritten_letter(rng)
    if kind == "shape":
        return shape(rng)
    if kind == "hatching":
        return hatching(rng)
    return strokes(rng, kind)


def non_digit_bank(count: int, images: np.ndarray, labels: np.ndarray, seed: int,
                   fonts: tuple[str, ...] = TRAIN_FONTS) -> np.ndarray:
    """(n <= count, 28, 28) uint8 non-digits in the network's input form, drawn and preprocessed
    as classify would: those that preprocessing already finds empty (lines only) are left out."""
    rng = np.random.default_rng(seed)
    bank = []
    for i in range(count):
        decoded = records.digit_of(non_digit(rng, KINDS[i % len(KINDS)], images, labels, fonts))
        if decoded.status == records.OK:
            bank.append(decoded.digit)
    return records.stack_digits(bank)


SIDES = ("top", "bottom", "left", "right")


def frame_sides(frame: str, rng, empty: bool = False) -> set[str]:
    """The sides a field's frame draws: a box all four; an open frame one to three of them, any; a
    comb and an underline the base line (a comb adds its ticks). An `empty` open frame is none that
    is a digit to the eye: one side alone is a 1, a top line with one side hanging from it a 7."""
    if frame == "box":
        return set(SIDES)
    if frame != "open":
        return {"bottom"}
    while True:
        sides = set(rng.choice(SIDES, size=int(rng.integers(1, 4)), replace=False).tolist())
        if not empty or (len(sides) > 1 and sides not in ({"top", "left"}, {"top", "right"})):
            return sides


def field_geometry(rng, frame: str) -> tuple[float, int, int, str, bool]:
    """A form field's geometry as the benches and tests draw digits into fields (form_field's
    arguments after the digit and rng): turned -5 to +5 degrees, 0-60 px from the page's edge, lines
    1-4 px wide, `frame`, and a fifth of the digits touching the frame."""
    return float(rng.uniform(-5, 5)), int(rng.integers(0, 61)), int(rng.integers(1, 5)), frame, bool(rng.random() < 0.2)


def form_field(digit: np.ndarray | None, rng, tilt: float, margin: int, line_width: int, frame: str,
               touching: bool = False, lines: bool = True) -> Image.Image:
    """A 28x28 MNIST digit (or None: an empty field) written into a printed form field on a page:
    `frame` is box, open (one to three sides of a box), comb (a base line with ticks) or underline;
    the page is turned by `tilt` degrees; `margin` px of paper lie between the frame and the page's
    edge (at 0 the turned frame is cut by it). `touching`: the digit is written large enough to run
    into the frame. `lines=False` draws the same field, digit and page without its printed lines."""
    box = int(rng.integers(60, 140))
    side = box + 2 * margin
    page = paper((side, side), rng)
    draw = ImageDraw.Draw(page)
    fill = int(rng.uniform(0, 80))
    a, b = margin, margin + box - 1
    ends = {"top": [(a, a), (b, a)], "bottom": [(a, b), (b, b)], "left": [(a, a), (a, b)], "right": [(b, a), (b, b)]}
    strokes = [ends[drawn] for drawn in sorted(frame_sides(frame, rng, empty=digit is None))]
    tick = int(box * rng.uniform(0.15, 0.3))  # drawn either way, so that a field and its twin without lines match
    if frame == "comb":
        strokes += [[(a, b - tick), (a, b)], [(b, b - tick), (b, b)]]
    for stroke in strokes if lines else []:
        draw.line(stroke, fill=fill, width=line_width)
    if digit is not None:
        share = rng.uniform(1.0, 1.15) if touching else rng.uniform(0.55, 0.85)
        size = int(box * share)
        ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.BICUBIC), np.float32) / 255
        offset = margin + (box - size) // 2 + rng.integers(-box // 12, box // 12 + 1, 2)
        pixels = np.asarray(page, np.float32)
        y, x = (int(v) for v in offset)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + size, side), min(x + size, side)
        region = ink[y0 - y : y1 - y, x0 - x : x1 - x]
        pixels[y0:y1, x0:x1] = np.minimum(pixels[y0:y1, x0:x1], 255 - region * (255 - rng.uniform(10, 60)))
        page = Image.fromarray(pixels.astype(np.uint8))
    background = int(np.median(np.asarray(page)))
    return page.rotate(tilt, resample=Image.BICUBIC, fillcolor=background)


def box_cut_at_its_frame(digit: np.ndarray | None, rng) -> Image.Image:
    """A box with lines 4-7 px wide on a 50-120 px page cropped at its frame (half of each line off
    the page), turned by up to 1.5 degrees, with a 28x28 MNIST `digit` (or nothing) written in its
    middle, dark on light: the frame holds every corner and a third of the page."""
    side, width = int(rng.integers(50, 120)), int(rng.integers(4, 8))
    page = Image.fromarray((rng.uniform(200, 245) + rng.normal(0, 3, (side, side))).clip(0, 255).astype(np.uint8))
    ImageDraw.Draw(page).rectangle([-(width // 2), -(width // 2), side - 1 + width // 2, side - 1 + width // 2],
                                   outline=30, width=width)
    if digit is not None:
        ink = np.asarray(Image.fromarray(digit).resize((side // 2, side // 2)), np.float32)
        pixels = np.asarray(page, np.float32)
        pixels[side // 4 : side // 4 + side // 2, side // 4 : side // 4 + side // 2] -= ink * 0.7
        page = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    return page.rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.BICUBIC, fillcolor=int(np.median(page)))


def ruled_page(digit: np.ndarray | None, rng, squared: bool, lines: bool = True) -> Image.Image:
    """A 28x28 MNIST digit (or None: nothing written) on a crop of a notebook's ruled paper or,
    `squared`, of squared paper (exam sheets): lines 1-3 px wide every 20-40% of the crop, fainter
    than the pen or as dark as it, crossing the digit wherever they fall; the page turned by up to
    4 degrees. `lines=False` draws the same page and digit without its ruling."""
    ink = np.pad(digit if digit is not None else np.zeros((28, 28), np.uint8), 8)
    side = int(ink.shape[0] * rng.uniform(2, 5))
    big = np.asarray(Image.fromarray(ink).resize((side, side), Image.BICUBIC), np.float32) / 255
    paper_level = rng.uniform(200, 245)
    page = paper_level + rng.normal(0, 3, (side, side))
    spacing, start = rng.uniform(0.18, 0.35) * side, rng.uniform(0, 1, 2)
    level, width = rng.uniform(60, 200), int(rng.integers(1, 4))
    for offset in np.arange(start[0] * spacing, side, spacing).astype(int) if lines else []:
        page[offset : offset + width, :] = level
    for offset in np.arange(start[1] * spacing, side, spacing).astype(int) if lines and squared else []:
        page[:, offset : offset + width] = level
    page = page * (1 - big) + rng.uniform(20, 80) * big
    turned = Image.fromarray(page.clip(0, 255).astype(np.uint8)).rotate(
        float(rng.uniform(-4, 4)), Image.BICUBIC, fillcolor=int(paper_level))
    cut = int(side * 0.06)  # the corners the turn brought in are cut away
    return turned.crop((cut, cut, side - cut, side - cut))


def light_grey_field(digit: np.ndarray, rng, lines: bool = True) -> Image.Image:
    """A 28x28 MNIST digit written small and dark, anywhere in a box, comb or underline printed in
    light grey lines 1-2 px wide whose toner is uneven: along each line it stands out from the paper
    by 20-40% of what the ink does, so that at the ink threshold (30%) the line is inked in pieces
    10-20 px long. `lines=False`: the same page without them."""
    height = int(rng.integers(70, 130))
    width = int(height * rng.uniform(0.9, 1.2))
    paper, ink = rng.uniform(215, 240), rng.uniform(20, 60)
    page = np.full((height, width), paper, np.float32)
    margin, thickness = int(rng.integers(4, 12)), int(rng.integers(1, 3))
    frame = ("box", "comb", "underline")[rng.integers(3)]
    top, bottom, left, right = margin, height - margin - thickness, margin, width - margin - thickness
    toner = paper - (0.3 + 0.1 * np.sin(np.arange(max(height, width)) * 2 * np.pi / rng.uniform(20, 40)
                                        + rng.uniform(0, 2 * np.pi))) * (paper - ink)
    if lines:
        page[bottom : bottom + thickness, left:right] = toner[left:right]
        if frame == "box":
            page[top : top + thickness, left:right] = toner[left:right]
        if frame != "underline":
            start = top if frame == "box" else bottom - height // 4
            for x in (left, right):
                page[start:bottom, x : x + thickness] = toner[start:bottom, None]
    side = int(height * rng.uniform(0.25, 0.4))  # written small, anywhere in the field
    written = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), np.float32) / 255
    y, x = (int(rng.integers(margin + 3, limit - side - 2)) for limit in (bottom, right))
    page[y : y + side, x : x + side] = page[y : y + side, x : x + side] * (1 - written) + ink * written
    return Image.fromarray(page.astype(np.uint8))


def in_shadow(page: Image.Image, rng) -> Image.Image:
    """`page` with a shadow across it, as a hand or a phone casts one over a form: the paper beyond
    a straight edge at any angle, 0-40% of the way from the middle, darkened by 15-45%; the edge
    hard or soft (blurred by 0.5-6 px)."""
    pixels = np.asarray(page, np.float32)
    down, across = (np.mgrid[: pixels.shape[0], : pixels.shape[1]] / np.array(pixels.shape)[:, None, None]) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    beyond = np.cos(angle) * across + np.sin(angle) * down > rng.uniform(0.0, 0.4)
    edge = Image.fromarray(beyond.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 6)))
    shade = rng.uniform(0.15, 0.45) * np.asarray(edge, np.float32) / 255
    return Image.fromarray((pixels * (1 - shade)).clip(0, 255).astype(np.uint8))


def scanned_digit(digit: np.ndarray, rng) -> Image.Image:
    """A 28x28 MNIST digit as a scanner or a phone gives a written one: captured at a low resolution
    and enlarged again (blocky or smooth), the stroke thickened or thinned, turned up to 12 degrees,
    blurred, pressed with uneven darkness onto a lit, grainy page at any offset (a fifth of them cut
    to the ink's box), saved as a JPEG of low to middling quality. Grey, dark ink on light paper."""
    capture = int(rng.integers(8, 29))
    side = int(rng.integers(24, 72))
    resample = (Image.NEAREST, Image.BILINEAR, Image.BICUBIC)[rng.integers(3)]
    captured = np.asarray(Image.fromarray(digit).resize((capture, capture), Image.BOX), np.float32)
    # A coarse capture averages thin strokes with the paper; the ink itself stays as dark.
    captured = (captured * 255 / max(captured.max(), 1)).astype(np.uint8)
    ink = Image.fromarray(captured).resize((side, side), resample)
    stroke = int(rng.integers(-1 if side >= 48 else 0, 2))  # thinned only where a stroke is wide enough to keep
    if stroke:
        kernel = 3 if side < 48 else 5
        ink = ink.filter(ImageFilter.MaxFilter(kernel) if stroke > 0 else ImageFilter.MinFilter(3))
    ink = ink.rotate(float(rng.uniform(-12, 12)), Image.BICUBIC, expand=True)
    ink = np.asarray(ink.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5)))), np.float32) / 255
    height, width = ink.shape
    size = int(rng.integers(max(height, width) + 2, max(height, width) * 5 // 2))
    page = rng.uniform(165, 245) + rng.normal(0, rng.uniform(2, 14), (size, size))
    page += np.linspace(0, rng.uniform(-40, 40), size)[:, None] + np.linspace(0, rng.uniform(-40, 40), size)[None, :]
    top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
    page[top : top + height, left : left + width] *= 1 - ink * rng.uniform(0.45, 0.95)
    if rng.random() < TIGHT_CROPS:  # cut to the ink's box, as box-normalised sets and form tools deliver digits
        rows, cols = np.flatnonzero(ink.max(axis=1) > 0.2) + top, np.flatnonzero(ink.max(axis=0) > 0.2) + left
        if len(rows):
            pad = int(rng.integers(0, 3))
            page = page[max(rows[0] - pad, 0) : rows[-1] + pad + 1, max(cols[0] - pad, 0) : cols[-1] + pad + 1]
    buffer = io.BytesIO()
    Image.fromarray(page.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(25, 90)))
    return Image.open(buffer).convert("L")


def scanned_digit_bank(count: int, images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(digits, labels): `count` of the given MNIST digits drawn at random, rendered as scans
    (scanned_digit) and preprocessed as classify would. Left out: those it finds no digit in, and
    those where it took the page for the ink (uneven light on a faint digit): more lit than any
    MNIST digit, they would teach a digit's label for a lit square."""
    rng = np.random.default_rng(seed)
    bank, kept = [], []
    for index in rng.integers(len(images), size=count):
        decoded = records.digit_of(scanned_digit(images[index], rng))
        if decoded.status == records.OK and np.count_nonzero(decoded.digit > 64) <= MAX_LIT_SHARE * 28 * 28:
            bank.append(decoded.digit)
            kept.append(labels[index])
    return records.stack_digits(bank), np.asarray(kept, np.int64)
