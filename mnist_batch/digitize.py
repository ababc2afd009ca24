"""The digit algorithm: a grey image -> a 28x28 MNIST-style digit.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept, anti-aliased)
and centred by centre of mass in 28x28. Scans are dark ink on light paper, any size,
off-centre, RGB, with alpha, EXIF rotation or JPEG noise. preprocess() maps both to the
same form; an image already in MNIST form (28x28, dark background) passes through unchanged.
On the way it finds the paper and the ink (polarity), drops specks and printed form lines
(form_lines.py), widens hair-thin strokes and narrows a marker's. Where which side is the paper
was a close call, readings() also gives the image read the other way round.

Everything here works on plain arrays so that worker processes and distributed batch maps
can call it; nothing imports torch.
"""

import numpy as np
from PIL import Image, ImageFilter

from mnist_batch.form_lines import (
    a_divider,
    a_neighbours_side,
    an_empty_box,
    an_empty_ring,
    nothing_but_lines,
    remove_form_lines,
    remove_pieces_apart,
    remove_ruling,
    zero_padded,
)
from mnist_batch.reading import WORK_SIDE

MIN_CONTRAST = 40  # ink must stand this far (0-255) above the paper, or the image is blank
INK_THRESHOLD = 0.3  # of the peak ink level: below it is paper noise or shading
FAINT_LINE = 0.2  # of the peak ink level: a printed line this faint is still looked for
FAINTER_LINES = 0.8  # the ink removed as such lines averages at most this share of the remaining ink's mean
BLANK_PEAK = 32  # an MNIST-form image whose brightest pixel is below this has no digit
# Stroke widths in pixels of the 20x20 box a digit is fitted into. MNIST's run from 2.2 (5th
# percentile) to 3.5 (75th); thinner strokes are widened to MNIST's 25th percentile. Strokes wider
# than any of the bench's scans of MNIST digits (at most 6.0) are narrowed to the width of a thick pen
# that training drew (its augmentation widens strokes by up to 2 px).
THIN_STROKE, MNIST_STROKE = 2.0, 2.6
THICK_STROKE, THINNED_STROKE = 6.5, 4.5
THICK_CROP = 28  # px: in a smaller crop a stroke is a few pixels, and one pixel less is too much
NARROWED_COVERS = 0.98  # of thick ink: what a narrowed digit, widened back, covers (a pen of one width: 0.99+)
# Pieces of ink smaller than this share of the largest, beyond this share of the digit's size
# from it, are dust or dirt, not digit.
SPECK_SHARE, SPECK_MARGIN = 0.1, 0.2
# Once a form field's lines are gone, so are pieces under this share of the largest one's longer
# side: the letters of a caption printed in the field's corner hold as much ink as a thin 1, but are
# far shorter. (Not before: the largest piece may then be a long line, far longer than the digit.)
CAPTION_SIDE = 0.3
# Uneven light: the paper's level at the corners and edge midpoints may differ by this much (a
# gradient, a pool of light) and be levelled, if the edges lie within LIGHT_FIT of one smooth surface
# (lamp_pool's patches must also be even, within twice that); a larger step is ink, not light.
LIGHT_STEP, MAX_LIGHT_STEP, LIGHT_FIT = 12, 130, 8
GRAIN_PIECE = 0.002  # of the image: pieces along its edge smaller than this are grain, not counted (edge_pieces)
PAPER_SHARE = 0.75  # a class holding this share of the pixels is the paper (or the dark background)
# A page's grain: the paper is the pixels within PAPER_SPREAD robust standard deviations of the
# median; ink lies beyond INK_SPREAD of them (and MIN_CONTRAST / 2), on one side INK_SIDEDNESS times
# as often as on the other.
PAPER_SPREAD, INK_SPREAD, INK_SIDEDNESS = 3.0, 4.0, 4.0
SD_PER_MAD = 1.4826  # a normal spread's standard deviation per median absolute deviation: robust to the ink
# A halftone: this share of one of a 1-bit page's two levels is dots alone; it is blurred by this
# radius (px of the image as it came).
DITHERED, DITHER_BLUR = 0.2, 1.5
LEAST_INK = 16  # pixels: fewer beyond INK_SPREAD are the grain's tail (or a speck), not a digit's ink
GRAIN_SIDE = 32  # px: an image this large each way or larger may be a blank page of grain
RING_INSIDE, RING_CLEAR = 8, 3  # px: what a ring around the edge holds, and the band of it left out
RING_CONVEX = 0.96  # what a ring holds filling this share of its convex hull is a shape, not strokes

# A tight crop's ink is as tall and as wide as the image but for the larger of these: a share of the
# side, or px (a reading whose ink is a sliver or a hole in the image is no tight crop's).
SPAN_MARGIN = (0.1, 4)

# Ink filling SOLID_BLOCK of its box, whose shorter side is at least SOLID_SHAPE of its longer (a bar
# is a 1), is a solid block: the paper inside a frame, taken for ink, fills it all; the thickest
# marker's digits in the benches fill under 0.975.
SOLID_BLOCK, SOLID_SHAPE = 0.98, 0.5

# Height over width of the flattest ink that is a digit: MNIST's flattest (a wide 2 or 5) are 0.4;
# a dash, a lone underline or the floor of a comb field is flatter.
FLATTEST_DIGIT = 0.25

# The 108 edge pixels of a 28x28 image, as one index: the MNIST-form check runs per image.
MNIST_BORDER = np.zeros((28, 28), bool)
MNIST_BORDER[[0, -1], :] = MNIST_BORDER[:, [0, -1]] = True
LEVELS = np.arange(256, dtype=np.float64)  # the grey levels, for histogram sums


class NotADigit(Exception):
    """An image that holds only printed lines (an empty form field, an underline): no digit."""


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


def polarity(pixels: np.ndarray, counts: np.ndarray) -> tuple[bool, int, bool]:
    """(light background?, threshold, clear?). Otsu splits the pixels into a dark and a light class.
    A digit cropped to its ink (form fields, box-normalised sets) touches every side of the crop
    but seldom its corners, and a thick pen's ink may hold most of the image and of its edge:
    so the corners speak first, then the pieces each class breaks into along the edge, then the
    share of the image and of its edge; where one class is nearly all of the image and the other
    rings the whole edge (a thin margin around a thick digit, or a frame), what the ring holds.
    Unlike a fixed mid-grey cut this survives dim scans and light ink on a grey board.
    Clear: the paper stands out around the ink, or the corners decided, all four of one class; else
    the call was close (a thick pen's tight crop), and readings() reads the image the other way round
    too."""
    beside_the_paper = ink_beside_the_paper(pixels, counts)
    if beside_the_paper is not None:
        return *beside_the_paper, True
    threshold = otsu_threshold(counts)
    light_share = counts[threshold + 1 :].sum() / pixels.size
    light_corners = np.count_nonzero(corners(pixels) > threshold)
    # Dark corners around a light majority are left to the share: that is also a form field's
    # frame drawn along the edge, and dark ink on light paper is the likelier reading.
    if light_corners >= 3 or (light_corners <= 1 and light_share < PAPER_SHARE):
        return light_corners >= 3, threshold, light_corners in (0, 4)
    # A digit's ink is one piece; the paper it crosses at the edge falls into more (a slanted 1
    # leaves two opposite corners, a 2 the paper either side of its top). Where one class does
    # not reach the edge, the other surrounds it: a margin, or a frame on the edge, as above.
    light_pieces, dark_pieces = edge_pieces(pixels > threshold), edge_pieces(pixels <= threshold)
    if light_pieces and dark_pieces and light_pieces != dark_pieces:
        return light_pieces > dark_pieces, threshold, False
    if not PAPER_SHARE > light_share > 1 - PAPER_SHARE:
        # One class is nearly all of the image: it is the paper, whatever lies on the edge (a form
        # field's frame drawn along it, turned a little, makes the edge half frame, half paper).
        # Unless the other rings the whole edge: a frame around paper, or the margin of a crop around
        # a thick digit, which may hold most of it. What the ring holds decides.
        majority_light = light_share >= PAPER_SHARE
        if (light_pieces if majority_light else dark_pieces) == 0:
            held = inside_the_ring(off_the_edge(pixels > threshold if majority_light else pixels <= threshold))
            if held is not None:
                inside = pixels[held]
                return polarity(inside, np.bincount(inside.ravel(), minlength=256))[0], threshold, False
        return majority_light, threshold, False
    border = pixels[MNIST_BORDER] if pixels.shape == (28, 28) else np.concatenate(
        [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.count_nonzero(border > threshold) * 2 > border.size, threshold, False


def inside_the_ring(held: np.ndarray) -> tuple[slice, slice] | None:
    """The part of the image inside the rows and columns that lie wholly outside `held`, from each
    edge inwards (the ring around what it holds), where the ring reaches on into it: LEAST_INK pixels
    or more of the ring's own piece lie beyond RING_CLEAR px of that part's edge, and what it holds
    fills under RING_CONVEX of its convex hull (a margin's paper between a thick digit's strokes).
    Else None: an empty frame holds only the ends of its lines, turned a little, along the edge; a
    digit written inside a frame is a piece of its own; a filled shape, turned, is convex."""
    from scipy import ndimage

    outside_rows, outside_cols = ~held.any(axis=1), ~held.any(axis=0)
    top, bottom = int(np.argmin(outside_rows)), len(outside_rows) - int(np.argmin(outside_rows[::-1]))
    left, right = int(np.argmin(outside_cols)), len(outside_cols) - int(np.argmin(outside_cols[::-1]))
    if min(bottom - top, right - left) < RING_INSIDE or not (top and left and bottom < held.shape[0]
                                                           and right < held.shape[1]):
        return None  # (held on an edge: no ring around it; polarity would ask about the same pixels again)
    pieces, _ = ndimage.label(~held)
    ring = pieces == pieces[0, 0]  # the ring covers every edge pixel: it is one piece
    deep = ring[top + RING_CLEAR : bottom - RING_CLEAR, left + RING_CLEAR : right - RING_CLEAR]
    if np.count_nonzero(deep) < LEAST_INK or convex_share(held) >= RING_CONVEX:
        return None
    return slice(top, bottom), slice(left, right)


def convex_share(mask: np.ndarray) -> float:
    """The share of its convex hull that `mask` fills (its pixels taken as squares)."""
    from scipy.spatial import ConvexHull

    ys, xs = np.nonzero(mask)
    corners = (np.column_stack([xs, ys])[:, None, :] + np.array([[0, 0], [1, 0], [0, 1], [1, 1]])).reshape(-1, 2)
    return len(xs) / ConvexHull(corners).volume  # a 2-D hull's volume is its area


def ink_beside_the_paper(pixels: np.ndarray, counts: np.ndarray) -> tuple[bool, int] | None:
    """(light background?, the split between paper and ink) where most of the image, corners
    included, is evidently paper (a small or faint digit on a grainy page): the ink lies on the side
    of the paper's grey level where the far pixels are, the split where they begin; None otherwise.
    Otsu's split then falls inside the paper's own grain, or between the paper and a shadow, and
    the corners and edges it gives are chance. (In a tight crop of a thick digit the majority is
    ink, and the corners are not.)"""
    median, spread = paper_grain(counts)
    low, high = median - PAPER_SPREAD * spread, median + PAPER_SPREAD * spread
    at_corners = corners(pixels)
    if counts[max(0, int(low)) : int(high) + 1].sum() < PAPER_SHARE * counts.sum() or \
            np.count_nonzero((at_corners >= low) & (at_corners <= high)) < 3:
        return None
    (dark_cut, dark), (light_cut, light) = beyond_the_grain(counts, median, spread)
    if (at_corners < dark_cut).any() or (at_corners >= light_cut).any():
        # A corner as far out as ink: a shadow or a glare spilling in from the edge, which may
        # outnumber a small digit's ink; what joins a corner is no count. Unless nothing is left but
        # the grain's tail: then the digit itself ran into the corner.
        away = away_from_the_corners(pixels < dark_cut), away_from_the_corners(pixels >= light_cut)
        if max(away) >= LEAST_INK:
            dark, light = away
    if dark >= INK_SIDEDNESS * max(light, 1):
        return True, dark_cut - 1
    if light >= INK_SIDEDNESS * max(dark, 1):
        return False, light_cut - 1
    return None


def paper_grain(counts: np.ndarray) -> tuple[float, float]:
    """The paper's grey level (the image's median: most of a digit image is paper) and its grain,
    a robust standard deviation (SD_PER_MAD median absolute deviations), at least 1."""
    median = histogram_median(counts)
    spread = SD_PER_MAD * histogram_median(np.bincount(np.abs(LEVELS - median).astype(np.int64), weights=counts))
    return median, max(spread, 1.0)


def beyond_the_grain(counts: np.ndarray, median: float, spread: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(first grey level, pixel count) of the pixels darker, then lighter, than the paper by
    INK_SPREAD of its grain and by MIN_CONTRAST / 2: where ink can be."""
    reach = max(INK_SPREAD * spread, MIN_CONTRAST / 2)
    dark_cut, light_cut = max(0, int(median - reach)), int(median + reach) + 1
    return (dark_cut, int(counts[:dark_cut].sum())), (light_cut, int(counts[light_cut:].sum()))


def only_grain(pixels: np.ndarray, counts: np.ndarray) -> bool:
    """Whether a page (GRAIN_SIDE px or more each way) holds nothing but the paper's grain: fewer than
    LEAST_INK pixels, and under 1% of it, stand out from the paper's level on either side. A blank
    grainy page's own noise peaks passed the contrast test as ink. The grain is measured between
    neighbouring pixels (a robust standard deviation of their differences): a large, blurred,
    faint digit widens the image's spread, not that. (A smaller image, a tight crop of a 1, is
    more edge than grain.)"""
    if min(pixels.shape) < GRAIN_SIDE:
        return False
    steps = np.abs(np.diff(pixels.astype(np.int16), axis=1))
    grain = max(SD_PER_MAD * histogram_median(np.bincount(steps.ravel())) / np.sqrt(2), 1.0)
    (_, dark), (_, light) = beyond_the_grain(counts, histogram_median(counts), grain)
    return max(dark, light) < min(LEAST_INK, 0.01 * pixels.size)


def away_from_the_corners(mask: np.ndarray) -> int:
    """How many of the mask's pixels lie in pieces that touch none of the image's corners."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    pieces = np.unique(corners(labels))
    return int(np.count_nonzero(mask & ~np.isin(labels, pieces[pieces > 0])))


def dithered(pixels: np.ndarray) -> bool:
    """Whether a page is halftoned (a 1-bit scan that printed the paper's grey, a pencil's or a
    shadow's, as scattered dots): it holds two levels only, and DITHERED of one level's pixels are
    dots alone among the other's. A page thresholded to 1 bit keeps its solid strokes and its paper
    clean; a page under GRAIN_SIDE is more strokes than texture, and is taken for thresholded. (A
    sample of the pixels first: most pages have many levels.)"""
    if min(pixels.shape) < GRAIN_SIDE or two_levels(pixels[::7, ::7]) is None:
        return False
    levels = two_levels(pixels)
    for level in levels or ():
        dots = pixels == level
        alone = (dots[1:-1, 1:-1] & ~dots[:-2, 1:-1] & ~dots[2:, 1:-1] & ~dots[1:-1, :-2] & ~dots[1:-1, 2:])
        if np.count_nonzero(alone) >= DITHERED * np.count_nonzero(dots[1:-1, 1:-1]):
            return True
    return False


def two_levels(pixels: np.ndarray) -> tuple[int, int] | None:
    """(darkest, lightest) where every pixel is one or the other, and they differ; else None."""
    low, high = pixels.min(), pixels.max()
    return None if low == high or np.any((pixels != low) & (pixels != high)) else (int(low), int(high))


def corners(array: np.ndarray) -> np.ndarray:
    """The four corner values of a 2-D array: top left, top right, bottom left, bottom right."""
    return array[[0, 0, -1, -1], [0, -1, 0, -1]]


def even_light(pixels: np.ndarray) -> np.ndarray:
    """A page lit unevenly (a phone photo, a scan's shaded edge, a lamp's pool of light) levelled:
    the smooth surface through the paper's level at its edges taken away, so that its dark side is
    not taken for ink, nor its light side for the paper of a light-on-dark image. The surface is the
    one the four corners span, if the edges' midpoints lie on it (a gradient); else a pool of light
    (lamp_pool); else, where a shadow is cast across the page, the shade is lifted (shadow_lifted).
    Left as it is unless the corners and midpoints differ by a gradient's amount and one of the three
    holds (ink at a corner or an edge, a tight crop of a thick digit, does not)."""
    height, width = pixels.shape
    patch = min(height, width) // 8
    if patch < 4:
        return pixels
    ends = (slice(0, patch), slice(-patch, None))
    middle_row = slice(height // 2 - patch // 2, height // 2 - patch // 2 + patch)
    middle_col = slice(width // 2 - patch // 2, width // 2 - patch // 2 + patch)
    levels = patch_medians(patch_values(pixels, [(r, c) for r in ends for c in ends]
                                        + [(r, middle_col) for r in ends] + [(middle_row, c) for c in ends]))
    if not LIGHT_STEP <= np.ptp(levels) <= MAX_LIGHT_STEP:  # most pages: flat, left at once
        return pixels
    corners, (top_bottom, left_right) = levels[:4].reshape(2, 2), levels[4:].reshape(2, 2)
    down, across = np.linspace(-1, 1, height)[:, None], np.linspace(-1, 1, width)[None, :]
    off = max(np.abs(top_bottom - corners.mean(axis=1)).max(), np.abs(left_right - corners.mean(axis=0)).max())
    if LIGHT_STEP <= np.ptp(corners) <= MAX_LIGHT_STEP and off <= LIGHT_FIT:
        surface = ((corners[0, 0] * (1 - across) + corners[0, 1] * (1 + across)) * (1 - down)
                   + (corners[1, 0] * (1 - across) + corners[1, 1] * (1 + across)) * (1 + down)) / 4
    else:
        ring = edge_patches(pixels, patch)
        surface = lamp_pool(ring, patch, down, across)
        if surface is None:
            return shadow_lifted(pixels, ring, patch)
    return (pixels + (corners.mean() - surface)).round().clip(0, 255).astype(np.uint8)


POOL_STEPS = 5  # patches along each edge for lamp_pool, corners included: 16 around the page
# A shadow across a light page (LIGHT_PAPER or lighter where lit) leaves the paper at least
# SHADOW_DEPTH of its lit level; at least SHADOW_EVEN of the 16 edge patches are one even level
# (the shadow's edge may cross the rest), and the largest step between their levels, in order, is
# SHADOW_GAP of the whole span or more. The shade is lifted with a window wide enough to fill the
# widest stroke in, at most SHADOW_WINDOW of the image's shorter side.
LIGHT_PAPER, SHADOW_DEPTH, SHADOW_EVEN, SHADOW_GAP, SHADOW_WINDOW = 128, 0.5, 12, 0.5, 0.4


# Of 16 patches around the image's edges: their top-left corners, medians, which are one even
# level (even_patches), and the image's shape.
EdgePatches = tuple[list[tuple[int, int]], np.ndarray, np.ndarray, tuple[int, int]]


def edge_patches(pixels: np.ndarray, patch: int) -> EdgePatches:
    """The EdgePatches of 16 patches around the image's edges: its corners, the edges' midpoints
    and the quarter points between them."""
    height, width = pixels.shape
    along = [np.round(np.linspace(0, side - patch, POOL_STEPS)).astype(int) for side in (height, width)]
    starts = sorted({(row, col) for row in along[0] for col in along[1]
                     if row in (0, height - patch) or col in (0, width - patch)})
    values = patch_values(pixels, [(slice(row, row + patch), slice(col, col + patch)) for row, col in starts])
    levels = patch_medians(values)
    return starts, levels, even_patches(values, levels), pixels.shape


def even_patches(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Which patches are one even level: three quarters of their pixels within 2 * LIGHT_FIT of it
    (light's own slope across a patch and grain stay inside; a line over a quarter of it, or a
    stroke, does not)."""
    return np.percentile(np.abs(values - levels[:, None].astype(np.float32)), 75, axis=1) <= 2 * LIGHT_FIT


def lamp_pool(ring: EdgePatches, patch: int, down: np.ndarray, across: np.ndarray) -> np.ndarray | None:
    """The paper's level under a pool of light (a lamp, a phone's vignette), centred anywhere: the
    surface a + b*y + c*x + d*(x^2 + y^2), brightest inside (d < 0), over the image's `down` and
    `across` coordinates; fitted to the 16 edge_patches, each one even level, all within LIGHT_FIT
    of it. None otherwise. Eight points are not enough: four corners of one level and four
    midpoints of another fit it exactly, and so do a box printed along the edges (its lines fill the
    corners' patches), a thick 0 cropped to its ink (its strokes fill the midpoints'), or a round
    window; the quarter points between them fall off the surface, and light falls off smoothly."""
    starts, levels, even, (height, width) = ring
    if not even.all():
        return None  # a patch of ink and paper (a line, a stroke), not one level of light
    y, x = (np.array([start + (patch - 1) / 2 for start in column]) / (side - 1) * 2 - 1
            for column, side in zip(zip(*starts, strict=True), (height, width), strict=True))
    terms = np.stack([np.ones(len(starts)), y, x, x * x + y * y], axis=1)
    (a, b, c, d), *_ = np.linalg.lstsq(terms, levels, rcond=None)
    if d >= 0 or np.abs(terms @ (a, b, c, d) - levels).max() > LIGHT_FIT:
        return None
    return a + b * down + c * across + d * (across * across + down * down)


def shadow_lifted(pixels: np.ndarray, ring: EdgePatches, patch: int) -> np.ndarray:
    """A light page partly in shadow (a hand's, a phone's; its edge hard or soft) lifted to the lit
    paper's level: each pixel divided by the paper's level around it, a grey closing (the largest
    level within a window wider than the widest stroke, then the smallest), which keeps a shadow's
    straight or soft edge and fills the strokes in. Left as it is where shadow_levels finds no
    shadow, where the ink is lighter than the paper (a light-on-dark board with a lighter part), or
    where ink is too wide for a window (SHADOW_WINDOW of the image) to fill: a blot, a marker's
    filled loop, which would be lifted too and leave only its rim."""
    levels = shadow_levels(ring, patch)
    if levels is None:
        return pixels
    lit, shaded = levels
    ink = pixels < shaded - 2 * LIGHT_FIT  # darker than the shaded paper beyond its grain
    if np.count_nonzero(pixels > lit + 2 * LIGHT_FIT) >= max(np.count_nonzero(ink), 0.01 * pixels.size):
        return pixels
    from scipy import ndimage

    # Where the shadow's edge meets the image's at a slant, a wedge of shadow narrower than the
    # window is filled in too and stays dark: the window is no wider than the ink needs.
    window = 3 + 2 * int(np.ceil(ndimage.distance_transform_edt(ink).max()))
    if window > SHADOW_WINDOW * min(pixels.shape):
        return pixels
    paper = ndimage.grey_closing(pixels, size=(window, window)).astype(np.float32)
    return (pixels * (lit / np.maximum(paper, 1.0))).round().clip(0, 255).astype(np.uint8)


def shadow_levels(ring: EdgePatches, patch: int) -> tuple[float, float] | None:
    """(lit, shaded) paper levels of a light page with a shadow cast across it, from its
    edge_patches; None unless SHADOW_EVEN of them are one even level, LIGHT_PAPER or lighter where
    lit, and their levels split into two groups: lit and shaded, LIGHT_STEP or more apart but no
    deeper than SHADOW_DEPTH (dark ink filling a patch, a tight crop of a thick digit, is darker
    than a shadow), with little between them (light falling off smoothly is lamp_pool's or the
    corners' plane), and the shaded ones two or more in one stretch of the ring around the image: a
    shadow's edge crosses the image's edge twice (a frame printed along the edge darkens four
    corners apart, a thick stroke running into the edge one patch)."""
    starts, levels, even, (height, width) = ring
    if np.count_nonzero(even) < SHADOW_EVEN:
        return None
    even_levels = np.sort(levels[even])
    lit, shaded = even_levels[-1], even_levels[0]
    if lit < LIGHT_PAPER or lit - shaded < LIGHT_STEP or shaded < SHADOW_DEPTH * lit:
        return None
    if np.diff(even_levels).max() < SHADOW_GAP * (lit - shaded):
        return None
    around = np.argsort([np.arctan2(row + patch / 2 - height / 2, col + patch / 2 - width / 2) for row, col in starts])
    in_shade = (levels[around] < (lit + shaded) / 2)[even[around]]
    if np.count_nonzero(in_shade != np.roll(in_shade, 1)) != 2 or np.count_nonzero(in_shade) < 2:
        return None
    return float(lit), float(shaded)


def patch_values(pixels: np.ndarray, patches: list[tuple[slice, slice]]) -> np.ndarray:
    """The pixels of several same-sized patches, one row each."""
    return np.stack([pixels[rows, cols] for rows, cols in patches]).reshape(len(patches), -1)


def patch_medians(values: np.ndarray) -> np.ndarray:
    """The median of each row of patch_values, as np.median gives it, in one partition (a call
    per patch cost more than the medians: this runs on every image)."""
    count = values.shape[1]
    middle = np.partition(values, [(count - 1) // 2, count // 2], axis=1)
    return (middle[:, (count - 1) // 2].astype(np.float64) + middle[:, count // 2]) / 2


def pieces_on_the_edge(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of `mask` (4-connected) as labels, and the labels of those that reach the image's edge."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return labels, np.unique(edge[edge > 0])


def off_the_edge(mask: np.ndarray) -> np.ndarray:
    """`mask` without its pieces that reach the image's edge: where edge_pieces counts none, the
    specks of grain on the edge that it leaves out."""
    labels, on_the_edge = pieces_on_the_edge(mask)
    return mask & ~np.isin(labels, on_the_edge)


def edge_pieces(mask: np.ndarray) -> int:
    """How many separate pieces of `mask` (4-connected) reach the image's edge, not counting grain:
    pieces under GRAIN_PIECE of the image (a shaded edge's grain, split at the threshold; a large
    scan's working copy is reduced to about WORK_SIDE px first). A class left with none is taken to
    lie inside the other (polarity)."""
    labels, on_the_edge = pieces_on_the_edge(mask)
    return int(np.count_nonzero(np.bincount(labels.ravel())[on_the_edge] >= GRAIN_PIECE * mask.size))


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
    padded = zero_padded(mask)
    interior = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                & padded[1:-1, :-2] & padded[1:-1, 2:])
    return 2.0 * area / max(area - np.count_nonzero(interior), 1)


def drop_specks(ink: np.ndarray, shortest_side: float = 0.0) -> np.ndarray:
    """Dust and dirt away from the digit would stretch its box and shrink the digit. Keep the big
    pieces of ink (a tenth of the largest's area or more, and `shortest_side` of its longer side)
    and whatever lies near their box (within a fifth of its size, so a detached stroke stays);
    drop the specks beyond."""
    from scipy import ndimage  # loaded in the workers, and only for images off the MNIST form

    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))  # diagonal neighbours join
    if count <= 1:
        return ink
    areas = np.bincount(labels.ravel())[1:]
    boxes = ndimage.find_objects(labels)
    sides = np.array([max(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in boxes])
    largest = np.argmax(areas)
    big = [boxes[i] for i in np.flatnonzero((areas >= SPECK_SHARE * areas[largest])
                                             & (sides >= shortest_side * sides[largest]))]
    top, bottom = min(rows.start for rows, _ in big), max(rows.stop for rows, _ in big)
    left, right = min(cols.start for _, cols in big), max(cols.stop for _, cols in big)
    near_y, near_x = SPECK_MARGIN * (bottom - top), SPECK_MARGIN * (right - left)
    keep = [rows.start < bottom + near_y and rows.stop > top - near_y
            and cols.start < right + near_x and cols.stop > left - near_x for rows, cols in boxes]
    return ink if all(keep) else np.where(np.array([False, *keep])[labels], ink, 0)


def strokes_as_mnists(crop: np.ndarray) -> np.ndarray:
    """Strokes of a width MNIST's never have, once fitted into 20x20 (MNIST's are 2.2 to 3.5 px
    there): a fine pen's hair-thin ones widened, a marker's blot-wide ones narrowed."""
    width, scale = stroke_width(crop > 0), 20.0 / max(crop.shape)
    if width * scale < THIN_STROKE:
        crop = thicken_thin_strokes(crop, width)
        # Widened, dots and fine hatching may run together into a blot: measured again.
        width, scale = stroke_width(crop > 0), 20.0 / max(crop.shape)
    if width * scale > THICK_STROKE and max(crop.shape) >= THICK_CROP:
        return thin_thick_strokes(crop, width)
    return crop


def thicken_thin_strokes(crop: np.ndarray, width: float) -> np.ndarray:
    """A digit written with a fine pen has hair-thin strokes that the networks have never seen:
    widened to MNIST's width with a square maximum filter (`width`: the strokes' in the crop)."""
    scale = 20.0 / max(crop.shape)
    size = 2 * round((MNIST_STROKE / scale - width) / 2) + 1
    if size < 3:
        return crop
    # Padded first, so that strokes on the crop's edge widen outwards too.
    return square_filter(zero_padded(crop, (size // 2, size // 2), (size // 2, size // 2)), size, np.max)


def thin_thick_strokes(crop: np.ndarray, width: float) -> np.ndarray:
    """A marker's digit is a blot: its strokes (`width` in the crop) far wider than any MNIST
    digit's, its holes closed. Narrowed to THINNED_STROKE there with a square minimum filter (an
    erosion), unless that loses part of the digit (shape_kept): a pen whose width varies has thin
    strokes too. strokes_as_mnists calls it only for crops of THICK_CROP px or more."""
    scale = 20.0 / max(crop.shape)
    size = 2 * round((width - THINNED_STROKE / scale) / 2) + 1
    if size < 3:
        return crop
    narrowed = square_filter(crop, size, np.min)
    if not shape_kept(crop > 0, narrowed > 0, size):
        return crop
    # Cropped to its ink again: the digit is fitted by its ink's box, as MNIST's were. (Its strokes are
    # then a little over THINNED_STROKE wide; eroded to exactly that, the benches read worse.)
    rows, cols = np.flatnonzero(narrowed.any(axis=1)), np.flatnonzero(narrowed.any(axis=0))
    return narrowed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def square_filter(image: np.ndarray, size: int, reduce) -> np.ndarray:
    """`reduce` (np.min or np.max) over each size x size square around each pixel, the image padded
    with zeros (so that ink on the crop's edge narrows from there too); separable: rows, then columns."""
    padded = zero_padded(image, (size // 2, size // 2), (size // 2, size // 2))
    rows = reduce(np.lib.stride_tricks.sliding_window_view(padded, size, axis=0), axis=-1)
    return reduce(np.lib.stride_tricks.sliding_window_view(rows, size, axis=1), axis=-1)


def shape_kept(ink: np.ndarray, narrowed: np.ndarray, size: int) -> bool:
    """Whether narrowed ink is still the whole digit: widened back, it covers NARROWED_COVERS of the
    ink (a thin stroke erased is missing), and it has as many pieces and holes (no loop cut open, no
    stroke cut through)."""
    from scipy import ndimage

    if np.count_nonzero(square_filter(narrowed, size, np.max) & ink) < NARROWED_COVERS * np.count_nonzero(ink):
        return False
    eight = np.ones((3, 3))
    return (ndimage.label(narrowed, eight)[1] == ndimage.label(ink, eight)[1]
            and ndimage.label(~zero_padded(narrowed))[1] == ndimage.label(~zero_padded(ink))[1])


def mnist_form(pixels: np.ndarray) -> np.ndarray | None:
    """A 28x28 light-on-dark digit as it is, its place and size kept (MNIST's own pass unchanged:
    their background is 0); a grey or grainy background (another pipeline's export, a JPEG) taken
    away first: the network reads a background of 40 as ink (43% right, 99% once it is gone).
    None when nothing stands out."""
    # MNIST's own: most pixels are its 0 background, so the median is 0 (a shortcut: this runs on
    # every input of an MNIST-like run, and a histogram's median costs most of it).
    mostly_zero = np.count_nonzero(pixels) * 2 < pixels.size
    level = 0.0 if mostly_zero else histogram_median(np.bincount(pixels.ravel(), minlength=256))
    if level > 0:
        grain = SD_PER_MAD * float(np.median(np.abs(pixels - np.float32(level))))
        ink = pixels.astype(np.float32) - level
        ink[ink <= INK_SPREAD * grain] = 0
        peak = ink.max()
        if peak < MIN_CONTRAST:
            return None
        pixels = (ink * (255.0 / peak)).round().astype(np.uint8)
    return pixels if pixels.max() >= BLANK_PEAK else None


def working_copy(pixels: np.ndarray) -> np.ndarray:
    """A large image reduced to about WORK_SIDE (before the polarity test: less noise, a cheaper
    histogram); a halftone smoothed back to grey, by DITHER_BLUR of the image as it came. Reduced
    by 4 or more, a halftone's dots are averaged already, and a blur would smear a fine pen's
    strokes below MIN_CONTRAST."""
    halftone = dithered(pixels)  # on the image as it came: reduced, its dots are no longer alone
    factor = max(pixels.shape) // WORK_SIDE if max(pixels.shape) > 2 * WORK_SIDE else 1
    if factor > 1:
        pixels = np.asarray(Image.fromarray(pixels).reduce(factor))
    if halftone and factor < 4:
        pixels = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(DITHER_BLUR / factor)))
    return pixels


def preprocess(gray: np.ndarray | Image.Image) -> np.ndarray | None:
    """A grey image (2-D uint8 array, or Pillow mode L) -> 28x28 uint8 MNIST-style digit (white
    on black), or None when the image is blank; NotADigit when it holds only printed lines, or a
    solid block."""
    return readings(gray, other_way=False)[0]


def readings(gray: np.ndarray | Image.Image, other_way: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """preprocess's digit, and, where `other_way` and which side is the paper was a close call
    (polarity), the digit read with paper and ink swapped: None where there is none. A thick
    marker's tight crop is half ink; the corners and edges may say either, and the network tells
    which reading holds a digit (results.likelier_reading)."""
    pixels = np.asarray(gray)
    height, width = pixels.shape
    if (height, width) == (28, 28) and pixels[MNIST_BORDER].max() < BLANK_PEAK and pixels.sum() < 128 * 28 * 28:
        # MNIST form: a clean dark edge around a mostly dark field (not a dark box on paper)
        return mnist_form(pixels), None
    pixels = even_light(working_copy(pixels))
    counts = np.bincount(pixels.ravel(), minlength=256)  # one histogram: polarity and paper level
    if only_grain(pixels, counts):
        return None, None
    light_background, threshold, clear = polarity(pixels, counts)
    if (height, width) == (28, 28) and not light_background:
        return mnist_form(pixels), None
    crop, _ = ink_crop(pixels, counts, light_background, threshold)
    if crop is not None and solid_block(crop):
        # The paper taken for ink: a frame along the edges hid which side the paper is (an open frame or
        # a thick box cut at the page's edge). The other way round, the frame must be found as lines.
        crop, had_lines = ink_crop(pixels, counts, not light_background, threshold)
        if crop is None or solid_block(crop) or not had_lines:
            raise NotADigit("only a solid block of ink (a filled box): no digit")
        return fitted(crop), None  # read the other way round already
    digit = None if crop is None else fitted(crop)
    if clear or not other_way or digit is None:
        return digit, None
    return digit, swapped_reading(pixels, counts, not light_background, threshold)


def swapped_reading(pixels: np.ndarray, counts: np.ndarray, light_background: bool,
                    threshold: int) -> np.ndarray | None:
    """The digit with the paper on the given side, where its ink spans the image as a tight crop's
    does (spans); None where that reading holds none or does not span it. The paper between a
    letter's legs or inside its bowl, taken for ink, is a sliver or a hole: a 1 or a 0."""
    try:
        crop, _ = ink_crop(pixels, counts, light_background, threshold)
    except NotADigit:
        return None
    if crop is None or solid_block(crop) or not spans(crop.shape, pixels.shape):
        return None
    return fitted(crop)


def spans(crop: tuple[int, int], image: tuple[int, int]) -> bool:
    """Whether a crop of ink is as tall and as wide as the image, less SPAN_MARGIN at most."""
    return all(side - inked <= max(SPAN_MARGIN[0] * side, SPAN_MARGIN[1])
               for inked, side in zip(crop, image, strict=True))


def ink_crop(pixels: np.ndarray, counts: np.ndarray, light_background: bool,
             threshold: int) -> tuple[np.ndarray | None, bool]:
    """The digit's ink (0-255, the paper 0), cropped to its box, or None where nothing stands out
    from the paper; and whether printed lines were taken away. NotADigit where only lines, or a
    stroke flatter than any digit, are left."""
    level = background_level(counts, threshold, light_background)
    ink = (255 - pixels if light_background else pixels).astype(np.float32)
    ink -= 255 - level if light_background else level
    peak = ink.max()
    if peak < MIN_CONTRAST:
        return None, False
    ink *= 255.0 / peak
    faint = ink >= FAINT_LINE * 255
    ink[ink < INK_THRESHOLD * 255] = 0  # background removal: paper grain, shading, JPEG ringing
    unruled = ink
    ink, ruled = remove_ruling(ink)
    field = drop_specks(ink)
    ink, had_lines = remove_form_lines(field)
    if not had_lines and not ruled:  # (a ruled page's lines, taken away, are still in `faint`)
        ink, had_lines = faint_lines_removed(field, faint)
    if not had_lines and not ruled:
        ink, had_lines = remove_pieces_apart(ink)
    had_lines |= ruled
    if had_lines:  # without the lines, the digit is the largest piece: drop what lies far from it
        ink = drop_specks(ink, CAPTION_SIDE)
    inked = ink > 0
    if (had_lines and (nothing_but_lines(ink, field) or a_divider(ink, unruled)) or a_neighbours_side(inked)
            or an_empty_ring(inked) or an_empty_box(inked) or ruled and an_empty_frame(drop_specks(unruled))):
        raise NotADigit("only printed lines (an empty form field or an underline): no digit")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows[-1] - rows[0] + 1 < FLATTEST_DIGIT * (cols[-1] - cols[0] + 1):
        raise NotADigit("only a flat stroke (a dash or a line), flatter than any digit: no digit")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], had_lines


def an_empty_frame(field: np.ndarray) -> bool:
    """Whether ink whose lines were taken for ruled paper is an empty box instead: a box whose margins
    are narrow has its top and bottom (or sides) cross the image as a notebook's lines do; once they
    are gone, one of its other sides, away from the edge, was read as a 1. As a form's frame, its
    lines leave nothing; a digit written on a ruled page is not a frame's line and stays."""
    ink, had_lines = remove_form_lines(field)
    return had_lines and nothing_but_lines(drop_specks(ink, CAPTION_SIDE), field)


def faint_lines_removed(field: np.ndarray, faint: np.ndarray) -> tuple[np.ndarray, bool]:
    """Printed lines fainter than the digit, removed from the field's ink; and whether any were. At
    INK_THRESHOLD of the digit's ink a light grey frame is inked in broken pieces, runs too short
    for lines: they are looked for again with the ink under it that joins the field's (`faint`,
    FAINT_LINE or more). Only where the field's ink is in pieces (a plain digit is one: most scans
    are not searched twice). Lines that leave nothing but their own remains were the digit (a faint
    1 whose pieces join into one long stroke): something darker than them was there. So were lines
    whose ink is not fainter than what is left, by FAINTER_LINES."""
    from scipy import ndimage

    inked = field > 0
    if ndimage.label(inked, structure=np.ones((3, 3)))[1] < 2:
        return field, False
    pieces, count = ndimage.label(faint | inked, structure=np.ones((3, 3)))  # so no inked pixel is background
    joined = np.zeros(count + 1, bool)
    joined[pieces[inked]] = True
    cleaned, found = remove_form_lines(field, joined[pieces])
    if not found or nothing_but_lines(cleaned, field):
        return field, False
    removed = inked & (cleaned == 0)
    if not removed.any() or field[removed].mean() > FAINTER_LINES * cleaned[cleaned > 0].mean():
        return field, False  # nothing inked went; or as dark as the digit: its own stroke (a thin pen's bar)
    return cleaned, True


def solid_block(crop: np.ndarray) -> bool:
    """Whether cropped ink fills SOLID_BLOCK of its box, a box not narrower than SOLID_SHAPE."""
    return min(crop.shape) >= SOLID_SHAPE * max(crop.shape) and np.count_nonzero(crop) >= SOLID_BLOCK * crop.size


def fitted(crop: np.ndarray) -> np.ndarray | None:
    """Cropped ink as MNIST was made: fitted into 20x20 keeping its aspect ratio, anti-aliased, and
    pasted so that its centre of mass lands on the centre of the 28x28 field (None if nothing is left)."""
    crop = strokes_as_mnists(crop)
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), np.float32)
    top = digit.max()
    if top <= 0:
        return None
    digit *= 255.0 / top
    mass = digit.sum()
    com_y = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / mass
    com_x = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / mass
    top_y = int(np.clip(round(13.5 - com_y), 0, 28 - digit.shape[0]))
    left_x = int(np.clip(round(13.5 - com_x), 0, 28 - digit.shape[1]))
    out = np.zeros((28, 28), np.uint8)
    out[top_y : top_y + digit.shape[0], left_x : left_x + digit.shape[1]] = digit.round().clip(0, 255)
    return out
