"""The digit algorithm: a grey image -> a 28x28 MNIST-style digit.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept, anti-aliased)
and centred by centre of mass in 28x28. Scans are dark ink on light paper, any size,
off-centre, RGB, with alpha, EXIF rotation or JPEG noise. preprocess() maps both to the
same form; an image already in MNIST form (28x28, dark background) passes through unchanged.
On the way it finds the paper and the ink (polarity), drops specks and printed form lines,
and widens hair-thin strokes.

Everything here works on plain arrays so that worker processes and distributed batch maps
can call it; nothing imports torch.
"""

import numpy as np
from PIL import Image

from mnist_batch.reading import WORK_SIDE

MIN_CONTRAST = 40  # ink must stand this far (0-255) above the paper, or the image is blank
INK_THRESHOLD = 0.3  # of the peak ink level: below it is paper noise or shading
BLANK_PEAK = 32  # an MNIST-form image whose brightest pixel is below this has no digit
# Stroke widths in pixels of the 20x20 box a digit is fitted into. MNIST's run from 2.2 (5th
# percentile) to 3.5 (75th); thinner strokes are widened to MNIST's 25th percentile.
THIN_STROKE, MNIST_STROKE = 2.0, 2.6
# Pieces of ink smaller than this share of the largest, beyond this share of the digit's size
# from it, are dust or dirt, not digit.
SPECK_SHARE, SPECK_MARGIN = 0.1, 0.2
# Uneven light: the paper's level at the corners and edge midpoints may differ by this much (a
# gradient) and be levelled, if the edges lie on the one smooth surface; a larger step is ink, not light.
LIGHT_STEP, MAX_LIGHT_STEP, LIGHT_FIT = 12, 130, 8
PAPER_SHARE = 0.75  # a class holding this share of the pixels is the paper (or the dark background)
# A page's grain: the paper is the pixels within PAPER_SPREAD robust standard deviations of the
# median; ink lies beyond INK_SPREAD of them (and MIN_CONTRAST / 2), on one side INK_SIDEDNESS times
# as often as on the other.
PAPER_SPREAD, INK_SPREAD, INK_SIDEDNESS = 3.0, 4.0, 4.0
LEAST_INK = 16  # pixels: fewer beyond INK_SPREAD are the grain's tail (or a speck), not a digit's ink
GRAIN_SIDE = 32  # px: an image this large each way or larger may be a blank page of grain

# Printed lines of a form (box sides, comb fields, underlines): straight runs of ink at most
# LINE_TILT degrees off the axes, at least LINE_SPAN of the ink's width (height) long, and longer by
# LINE_OVER_DIGIT than the ink left once they are gone is tall (a 7's bar is not).
LINE_TILT, LINE_STEP, LINE_SPAN, LINE_OVER_DIGIT, MAX_LINES = 6.0, 1.5, 0.45, 1.1, 4
LINE_PASSES = 3  # searches for lines, each on what the last one left
LINE_SIDE = 64  # px: lines are searched for on the ink's box reduced to at most this
LINE_MEET = 2  # px (of that reduced box): a frame's side ends this close to its base line
LINE_WOBBLE = 1.5  # px: most of a printed line's middle lies this close to a straight line
# A printed line is at most this many px (of that reduced box), or this share of its height, thick.
LINE_THICKNESS, LINE_THICK_SHARE = 3, 0.1
LINE_STEP_SHARE = 0.25  # a row beside a line's band, this much inked along it, holds the line's steps
LINE_FIT_SHARE = 0.4  # of a line's run: the columns where it is thin, that its tilt is fitted to
FIT_REACH = 3.5  # px: a run's line lies this close to the row pair it was found in
SIDE_SPAN = 0.7  # a frame's side spans at least this share of the ink's height
SIDE_GAP = 3  # px (of that reduced box): a frame's lone side keeps at least this far from the digit
LONE_SIDE_DIGIT = 0.2  # the digit beside a frame's lone side is at least this share of the side tall
FRAME_WIDTH = 0.4  # a field is at least this share of its height wide
OUTER_SHARE = 0.12  # a printed line lies within this share of the ink's extent from its edge
LINE_END_SHARE = 0.2  # pieces of ink this much smaller than the largest, where a line was, are its remains
# px: in ink smaller than this (a 16x16 crop), a digit's strokes run from edge to edge as a
# frame's lines would; a field this small holds no readable digit inside its lines.
SMALLEST_FIELD = 24
TICK_SHARE = 0.5  # ... or holds under this share of the digit's ink
TICK_SHAPE = 0.4  # a comb field's tick is at most this wide for its length
EMPTY_FIELD = 0.15  # once the lines are gone, ink spanning less than this share of the field is no digit
SMALLEST_DIGIT = 10  # px: a digit on a long underline spans at least this
# Height over width of the flattest ink that is a digit: MNIST's flattest (a wide 2 or 5) are 0.4;
# a dash, a lone underline or the floor of a comb field is flatter.
FLATTEST_DIGIT = 0.25
LINE_SHEARS = np.tan(np.deg2rad(np.arange(-LINE_TILT, LINE_TILT + 0.01, LINE_STEP)))

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


def polarity(pixels: np.ndarray, counts: np.ndarray) -> tuple[bool, int]:
    """(light background?, threshold). Otsu splits the pixels into a dark and a light class.
    A digit cropped to its ink (form fields, box-normalised sets) touches every side of the crop
    but seldom its corners, and a thick pen's ink may hold most of the image and of its edge:
    so the corners speak first, then the pieces each class breaks into along the edge, then the
    share of the image and of its edge. Unlike a fixed mid-grey cut this survives dim scans and
    light ink on a grey board."""
    beside_the_paper = ink_beside_the_paper(pixels, counts)
    if beside_the_paper is not None:
        return beside_the_paper
    threshold = otsu_threshold(counts)
    light_share = counts[threshold + 1 :].sum() / pixels.size
    light_corners = np.count_nonzero(pixels[[0, 0, -1, -1], [0, -1, 0, -1]] > threshold)
    # Dark corners around a light majority are left to the share: that is also a form field's
    # frame drawn along the edge, and dark ink on light paper is the likelier reading.
    if light_corners >= 3 or (light_corners <= 1 and light_share < PAPER_SHARE):
        return light_corners >= 3, threshold
    # A digit's ink is one piece; the paper it crosses at the edge falls into more (a slanted 1
    # leaves two opposite corners, a 2 the paper either side of its top). Where one class does
    # not reach the edge, the other surrounds it: a margin, or a frame on the edge, as above.
    light_pieces, dark_pieces = edge_pieces(pixels > threshold), edge_pieces(pixels <= threshold)
    if light_pieces and dark_pieces and light_pieces != dark_pieces:
        return light_pieces > dark_pieces, threshold
    if not PAPER_SHARE > light_share > 1 - PAPER_SHARE:
        # One class is nearly all of the image: it is the paper, whatever lies on the edge (a form
        # field's frame drawn along it, turned a little, makes the edge half frame, half paper).
        return light_share >= PAPER_SHARE, threshold
    border = pixels[MNIST_BORDER] if pixels.shape == (28, 28) else np.concatenate(
        [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.count_nonzero(border > threshold) * 2 > border.size, threshold


def ink_beside_the_paper(pixels: np.ndarray, counts: np.ndarray) -> tuple[bool, int] | None:
    """(light background?, the split between paper and ink) where most of the image, corners
    included, is evidently paper (a small or faint digit on a grainy page): the ink lies on the side
    of the paper's grey level where the far pixels are, the split where they begin; None otherwise.
    Otsu's split then falls inside the paper's own grain, or between the paper and a shadow, and
    the corners and edges it gives are chance. (In a tight crop of a thick digit the majority is
    ink, and the corners are not.)"""
    median, spread = paper_grain(counts)
    low, high = median - PAPER_SPREAD * spread, median + PAPER_SPREAD * spread
    corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
    if counts[max(0, int(low)) : int(high) + 1].sum() < PAPER_SHARE * counts.sum() or \
            np.count_nonzero((corners >= low) & (corners <= high)) < 3:
        return None
    (dark_cut, dark), (light_cut, light) = beyond_the_grain(counts, median, spread)
    if (corners < dark_cut).any() or (corners >= light_cut).any():
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
    a robust standard deviation (1.4826 median absolute deviations), at least 1."""
    median = histogram_median(counts)
    spread = 1.4826 * histogram_median(np.bincount(np.abs(LEVELS - median).astype(np.int64), weights=counts))
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
    steps = np.abs(np.diff(pixels.astype(np.int16), axis=1)).ravel()
    grain = max(1.4826 * float(np.median(steps)) / np.sqrt(2), 1.0)
    (_, dark), (_, light) = beyond_the_grain(counts, histogram_median(counts), grain)
    return max(dark, light) < min(LEAST_INK, 0.01 * pixels.size)


def away_from_the_corners(mask: np.ndarray) -> int:
    """How many of the mask's pixels lie in pieces that touch none of the image's corners."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    at_corners = np.unique(labels[[0, 0, -1, -1], [0, -1, 0, -1]])
    return int(np.count_nonzero(mask & ~np.isin(labels, at_corners[at_corners > 0])))


def even_light(pixels: np.ndarray) -> np.ndarray:
    """A page lit unevenly (a phone photo, a scan's shaded edge) levelled: the smooth surface through
    the paper's level at its corners taken away, so that its dark side is not taken for ink, nor its
    light side for the paper of a light-on-dark image. Left as it is unless the four corners differ
    by a gradient's amount and the edges' midpoints lie on the surface the corners span (ink at a
    corner, a tight crop of a thick digit, does not)."""
    height, width = pixels.shape
    patch = min(height, width) // 8
    if patch < 4:
        return pixels
    ends = (slice(0, patch), slice(-patch, None))
    corners = np.array([[np.median(pixels[r, c]) for c in ends] for r in ends])
    if not LIGHT_STEP <= np.ptp(corners) <= MAX_LIGHT_STEP:  # most pages: flat, left at once
        return pixels
    middle_row = slice(height // 2 - patch // 2, height // 2 - patch // 2 + patch)
    middle_col = slice(width // 2 - patch // 2, width // 2 - patch // 2 + patch)
    top_bottom = np.array([np.median(pixels[r, middle_col]) for r in ends])
    left_right = np.array([np.median(pixels[middle_row, c]) for c in ends])
    off = max(np.abs(top_bottom - corners.mean(axis=1)).max(), np.abs(left_right - corners.mean(axis=0)).max())
    if off > LIGHT_FIT:
        return pixels
    down, across = np.linspace(0, 1, height)[:, None], np.linspace(0, 1, width)[None, :]
    surface = ((corners[0, 0] * (1 - across) + corners[0, 1] * across) * (1 - down)
               + (corners[1, 0] * (1 - across) + corners[1, 1] * across) * down)
    return (pixels + (corners.mean() - surface)).round().clip(0, 255).astype(np.uint8)


def edge_pieces(mask: np.ndarray) -> int:
    """How many separate pieces of `mask` (4-connected) reach the image's edge."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return len(np.unique(edge[edge > 0]))


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


def shear_index(height: int, width: int) -> tuple[np.ndarray, int]:
    """Rows to gather from a mask padded by 2 * pad so that, for each tilt of LINE_SHEARS, a line
    y = c + (x - width/2) * shear becomes the straight row c + pad."""
    shifts = np.round((np.arange(width) - width / 2)[None, :] * LINE_SHEARS[:, None]).astype(np.int64)
    pad = int(np.abs(shifts).max())
    return np.arange(height + 2 * pad)[None, :, None] + (shifts + pad)[:, None, :], pad


def sheared(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(tilts, height + 2 * pad, width): `mask` sheared by each of LINE_SHEARS; and pad."""
    rows, pad = shear_index(*mask.shape)
    return np.pad(mask, ((2 * pad, 2 * pad), (0, 0)))[rows, np.arange(mask.shape[1])], pad


def longest_runs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Length and end (exclusive) of the longest run of True in each row."""
    count = np.cumsum(rows, axis=1, dtype=np.int32)
    since_gap = count - np.maximum.accumulate(np.where(rows, 0, count), axis=1)
    return since_gap.max(axis=1), since_gap.argmax(axis=1) + 1


def line_candidates(mask: np.ndarray, extent: int, across: int) -> list[tuple[np.ndarray, int]]:
    """Long straight horizontal runs of ink at small tilts near the top or bottom of the field,
    longest first: each as the (row, column) pixels of its band (the rows around the run's centre
    that are mostly ink along it), and its length. `extent`, `across`: the field's width and height
    (the ink's, not the image's: a field may sit anywhere on a page)."""
    if not mask.any():
        return []
    shortest = max(LINE_SPAN * extent, 8)
    # Runs through the middle of the field are the digit's: only those near an edge are tried.
    near = OUTER_SHARE * across + np.abs(LINE_SHEARS).max() * mask.shape[1] / 2 + 2
    every, pad = sheared(mask)
    pairs = every[:, :-1] | every[:, 1:]  # a thin line that drifts by a pixel stays in a pair of rows
    pairs[:, :, 1:-1] |= pairs[:, :, :-2] & pairs[:, :, 2:]  # and one-pixel gaps (anti-aliasing) are bridged
    lengths, ends = (found.reshape(pairs.shape[:2]) for found in longest_runs(pairs.reshape(-1, pairs.shape[2])))
    tilts, rows = np.nonzero(lengths >= shortest)
    order = np.argsort(-lengths[tilts, rows], kind="stable")
    found, taken = [], []
    for tilt, row in zip(tilts[order], rows[order], strict=True):
        if len(found) == MAX_LINES:
            break
        if near < row - pad < across - 1 - near or any(abs(row - other) <= 3 for other in taken):
            continue  # inside the field, or the same line at a neighbouring tilt
        taken.append(row)  # tried: a neighbouring row or tilt would find the same run again
        length, end = int(lengths[tilt, row]), int(ends[tilt, row])
        band = line_band(mask, LINE_SHEARS[tilt], row - pad, end - length, end)
        if band is not None:
            found.append((band, length))
    return found


def line_band(mask: np.ndarray, shear: float, row: int, start: int, end: int) -> tuple | None:
    """The pixels of a line y = row + (x - width/2) * shear, found as a run over columns start:end: its own
    tilt fitted to the ink, the rows around it where at least half the run is ink, along the whole
    width (a line broken by a gap is still one line), less the columns where a stroke crosses it
    (ink just beyond both edges). None when the band is too thick for a printed line."""
    height, width = mask.shape
    run = np.arange(start, end)
    offsets = np.arange(-6, 8)
    thickest = max(LINE_THICKNESS, LINE_THICK_SHARE * height)

    def around(centre, columns):
        ys = centre[None, :] + offsets[:, None]
        valid = (ys >= 0) & (ys < height)
        return ys, valid, np.where(valid, mask[ys.clip(0, height - 1), columns[None, :]], False)

    # The tilt steps are coarse: fit the line's own tilt to the ink's middle in each column, close
    # to the run and where the column holds no more ink than a line (a digit's stroke running
    # along or across it would pull the fit).
    centre = row + np.round((run - width / 2) * shear).astype(np.int64)
    _, _, inked = around(centre, run)
    inked[np.abs(offsets - 0.5) > FIT_REACH] = False
    weight = inked.sum(axis=0)
    thin = (weight > 0) & (weight <= thickest)
    if thin.sum() < max(2, LINE_FIT_SHARE * len(run)):
        return None
    middle = centre[thin] + (inked * offsets[:, None]).sum(axis=0)[thin] / weight[thin]
    slope, intercept = np.polyfit(run[thin], middle, 1)
    if np.mean(np.abs(middle - (slope * run[thin] + intercept)) > LINE_WOBBLE) > 0.25:
        return None  # a curved stroke (the top of a 5), not a printed line: crossings aside, it bends
    _, _, inked = around(np.round(slope * run + intercept).astype(np.int64), run)
    mostly = inked.mean(axis=1) >= 0.5
    if not mostly[6] and not mostly[7]:
        return None
    first = last = 6 if mostly[6] else 7
    while first > 0 and mostly[first - 1]:
        first -= 1
    while last < len(offsets) - 1 and mostly[last + 1]:
        last += 1
    if first == 0 or last == len(offsets) - 1 or last - first + 1 > thickest:
        return None  # a thick bar, or a band that does not end: not a printed line
    if first == last:  # a one-row line that steps by a row (turned, then reduced) half fills the next row
        partly = inked.mean(axis=1) >= LINE_STEP_SHARE
        first -= int(first > 1 and partly[first - 1])
        last += int(last < len(offsets) - 2 and partly[last + 1])
    columns = np.arange(width)
    ys, valid, inked = around(np.round(slope * columns + intercept).astype(np.int64), columns)
    crossed = inked[max(first - 2, 0)] & inked[min(last + 2, len(offsets) - 1)]
    keep = valid[first : last + 1] & inked[first : last + 1] & ~crossed[None, :]
    return ys[first : last + 1][keep], np.broadcast_to(columns, keep.shape)[keep]


def only_lines_left(rows: np.ndarray, cols: np.ndarray, field: np.ndarray) -> bool:
    """Whether the ink left in `rows` x `cols` once the lines are gone is no digit: nothing, or bits
    spanning under EMPTY_FIELD of the field's longer side (a line's ends, a tick), unless they
    are half as tall or wide as the field's shorter side and SMALLEST_DIGIT px or more (a digit on
    an underline many times its width: the field is then as tall as the digit)."""
    if not len(rows):
        return True
    span = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    field_rows, field_cols = np.flatnonzero(field.any(axis=1)), np.flatnonzero(field.any(axis=0))
    shorter = min(np.ptp(field_rows), np.ptp(field_cols)) + 1
    return span < EMPTY_FIELD * extent(field) and not (span >= max(shorter / 2, SMALLEST_DIGIT))


def extent(ink: np.ndarray) -> int:
    """The longer side of the ink's bounding box."""
    return max(np.ptp(np.flatnonzero(ink.any(axis=1))), np.ptp(np.flatnonzero(ink.any(axis=0)))) + 1


def remove_form_lines(ink: np.ndarray) -> tuple[np.ndarray, bool]:
    """Printed lines (box sides, partial frames, comb fields, underlines) removed from `ink`, at
    any tilt up to LINE_TILT and any distance from the image's edge; and whether any were.
    They are found on the ink's bounding box reduced to at most LINE_SIDE pixels (a block
    maximum keeps thin lines whole): the search is then cheap whatever the scan's size."""
    mask = ink > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return ink, False
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if max(box.shape) < SMALLEST_FIELD or box.shape[1] < FRAME_WIDTH * box.shape[0]:
        return ink, False  # too small, or too narrow (a 1 with a foot) for a field around a digit
    factor = -(-max(box.shape) // LINE_SIDE)
    height, width = -(-box.shape[0] // factor), -(-box.shape[1] // factor)
    small = np.pad(box, ((0, height * factor - box.shape[0]), (0, width * factor - box.shape[1])))
    small = small.reshape(height, factor, width, factor).any(axis=(1, 3))
    if not thin_enough_for_lines(small):
        return ink, False
    # Which sides of the ink's box lie on the image's edge (top, bottom, left, right): a frame's
    # line there may have been cut by it.
    page_edges = (rows[0] == 0, rows[-1] == ink.shape[0] - 1, cols[0] == 0, cols[-1] == ink.shape[1] - 1)
    lines = np.zeros_like(small)
    for _ in range(LINE_PASSES):  # a line hidden by a longer one, or by the digit, shows once they are gone
        bands = printed_lines(small & ~lines, small.shape, page_edges)
        for band in bands:
            lines[band] = True
        if not bands:
            break
    if not lines.any():
        return ink, False
    lines = lines.repeat(factor, axis=0).repeat(factor, axis=1)[: box.shape[0], : box.shape[1]]
    cleaned = ink.copy()
    cleaned[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1][lines] = 0
    return drop_line_ends(cleaned, mask), True


def thin_enough_for_lines(mask: np.ndarray) -> bool:
    """A cheap test before the search (most images hold no form): a printed line near the top or the
    bottom of the ink crosses the columns it runs along as a run of ink no thicker than a line, in
    LINE_FIT_SHARE of the shortest line's length at least (line_band fits a line to such columns); a
    digit's broad strokes cross them as longer runs. For horizontal lines, then vertical ones."""
    height, width = mask.shape
    thickest = max(LINE_THICKNESS, LINE_THICK_SHARE * max(height, width))
    for crossed in (mask, mask.T):
        across, along = crossed.shape
        # line_candidates' reach from the edge, plus the rows a line at the steepest tilt spans
        reach = OUTER_SHARE * across + np.abs(LINE_SHEARS).max() * along + 2
        starts, ends = ink_runs(crossed.T)  # the runs of ink down each column
        thin = ends[1] - starts[1] <= thickest
        needed = LINE_FIT_SHARE * max(LINE_SPAN * along, 8)
        for near_edge in (starts[1] <= reach, ends[1] >= across - reach):
            if len(np.unique(starts[0][thin & near_edge])) >= needed:
                return True
    return False


def ink_runs(rows: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(row, start) and (row, end, exclusive) of every run of True in each row, in the same order."""
    edges = np.diff(np.pad(rows, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    return np.nonzero(edges == 1), np.nonzero(edges == -1)


def printed_lines(mask: np.ndarray, field: tuple[int, int],
                  page_edges: tuple[bool, bool, bool, bool]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (rows, cols) pixels of each printed line in `mask`, whose ink first filled `field`
    (height, width): lengths and edges are measured against the whole field, so that once its
    frame is gone, a digit's own bar and stem are not taken for a smaller frame.

    Only a line on the outside of the ink can be printed: a digit's own strokes lie within the
    frame. `page_edges`: which sides of the field (top, bottom, left, right) lie on the image's edge.
    A line counts when it frames the ink left once all are gone (see frames_the_digit). A
    vertical one must also be a frame's side: as tall as most of the ink and meeting a printed
    horizontal line at either end; without one, the two sides of an open frame, or one side
    standing apart from a digit beside it (a lone stroke is a 1)."""
    height, width = field
    horizontal = [(band, cut_by_the_page(band, length, field, page_edges[:2]))
                  for band, length in line_candidates(mask, width, height)
                  if on_the_outside(band[0], height)]
    vertical = [((cols, rows), cut_by_the_page((rows, cols), length, (width, height), page_edges[2:]))
                for (rows, cols), length in line_candidates(mask.T, height, width)]
    vertical = [(band, length) for band, length in vertical if on_the_outside(band[1], width)
                and length >= SIDE_SPAN * height]
    if not horizontal and not vertical:
        return []
    bases = [band for band, _ in horizontal]
    inside = ink_inside(mask, bases + [band for band, _ in vertical])
    # A lone stroke hanging from a bar, with nothing else left, is a 7's stem, not a frame's side.
    vertical = [(band, length) for band, length in vertical if meets(band, bases, mask.shape, upper=False)
                or both_edges([band for band, _ in vertical], field) or lone_side(band, inside, mask)
                or hangs_beside_the_digit(band, bases, inside, mask)]
    inside = ink_inside(mask, bases + [band for band, _ in vertical])
    digit_rows, digit_cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    digit_height = np.ptp(digit_rows) + 1 if len(digit_rows) else 0
    printed = [band for band, length in horizontal
               if frames_the_digit(length, digit_cols, digit_height) and not ends_on_the_digit(band, inside)]
    sides = [band for band, length in vertical if frames_the_digit(length, digit_rows, digit_height)]
    if both_edges(sides, field):  # they frame the field even where the page's edge cut their corners off
        return printed + sides
    if printed:
        return printed + [band for band in sides if meets(band, printed, mask.shape)]
    return [band for band in sides if lone_side(band, inside, mask)]


def cut_by_the_page(band: tuple[np.ndarray, np.ndarray], length: int, field: tuple[int, int],
                    page_edges: tuple[bool, bool]) -> int:
    """A horizontal line's length, or the field's width where the page's edge has cut the line: a
    frame drawn on the edge, once turned, lies half off the page, so that what is left of the line
    runs along the ink's first (last) row, on the image's edge (`page_edges`: first, last), to a
    corner of the ink's box. A digit's strokes on a page keep clear of its edges."""
    rows, cols = band
    height, width = field
    on_the_edge = ((page_edges[0] and rows.min() <= LINE_MEET)
                   or (page_edges[1] and rows.max() >= height - 1 - LINE_MEET))
    to_a_corner = cols.min() <= LINE_MEET or cols.max() >= width - 1 - LINE_MEET
    return width if on_the_edge and to_a_corner else length


def ink_inside(mask: np.ndarray, lines: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The ink once `lines` are gone, less their corners and ends (no part of the digit)."""
    inside = mask.copy()
    for rows, cols in lines:
        inside[rows, cols] = False
    return drop_line_ends(inside, mask) > 0


def frames_the_digit(length: int, digit_along: np.ndarray, digit_height: int) -> bool:
    """A line `length` long frames the digit (the ink left once the lines are gone, its
    coordinates on the same axis): longer by LINE_OVER_DIGIT than the digit is tall (a digit is taller
    than wide, so a 5's top stays) and than it extends along the line, as a field's lines are; a
    digit's own stroke (a wide 7's bar) is no longer than the rest of the digit is wide."""
    digit_along = np.ptp(digit_along) + 1 if len(digit_along) else 0
    return length >= LINE_OVER_DIGIT * max(digit_height, digit_along)


def ends_on_the_digit(band: tuple[np.ndarray, np.ndarray], inside: np.ndarray) -> bool:
    """Whether the digit (the largest piece of ink left) goes on from an end of a horizontal line: a
    7's bar turns into its stem, a 2's top into its curve; a field's line ends free, at a side (itself
    a line) or at a comb's tick."""
    digit = largest_piece(inside)
    if digit is None:
        return False
    rows, cols = band
    ends = (cols <= cols.min() + LINE_MEET) | (cols >= cols.max() - LINE_MEET)
    near = np.zeros(inside.shape, bool)
    near[rows[ends], cols[ends]] = True
    return bool((grown(near, LINE_MEET) & digit).any())


def both_edges(sides: list[tuple[np.ndarray, np.ndarray]], field: tuple[int, int]) -> bool:
    """Sides near the left and the right edge of a field at least FRAME_WIDTH as wide as tall: an open
    frame's, or a box's (a narrow field is a 1, whose stroke's two edges are no frame)."""
    height, width = field
    near = OUTER_SHARE * width
    return (width >= FRAME_WIDTH * height and any(cols.max() <= near for _, cols in sides)
            and any(cols.min() >= width - 1 - near for _, cols in sides))


def grown(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` grown by `steps` pixels in the four directions."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return mask


def lone_side(band: tuple[np.ndarray, np.ndarray], inside: np.ndarray, mask: np.ndarray) -> bool:
    """Whether a vertical line is one side of a frame beside a digit (the largest piece of ink left
    once the lines are gone): apart from it in the ink, by SIDE_GAP at least (a fine pen's stroke may
    be broken where a 4's bar meets its stem), and reaching past it at both ends, as a field's side
    does; not a digit's own stem (a 1's, a 4's, a 9's)."""
    digit = largest_piece(inside)
    if digit is None:
        return False
    digit_rows = np.flatnonzero(digit.any(axis=1))
    rows = band[0]
    if not rows.min() < digit_rows[0] <= digit_rows[-1] < rows.max():
        return False
    if np.ptp(digit_rows) + 1 < LONE_SIDE_DIGIT * (np.ptp(rows) + 1):
        return False
    line = np.zeros(mask.shape, bool)
    line[band] = True
    return apart(band, digit, mask) and not (grown(line, SIDE_GAP) & digit).any()


def hangs_beside_the_digit(band: tuple[np.ndarray, np.ndarray], bases: list[tuple], inside: np.ndarray,
                           mask: np.ndarray) -> bool:
    """Whether a vertical line hangs from a horizontal one with a digit beside it, apart from it once
    that line is gone (a digit may touch a frame's top line); a 7's stem hangs from its bar alone."""
    digit = largest_piece(inside)
    if digit is None or not meets(band, bases, mask.shape):
        return False
    without_bases = mask.copy()
    for rows, cols in bases:
        without_bases[rows, cols] = False
    return apart(band, digit, without_bases)


def largest_piece(ink: np.ndarray) -> np.ndarray | None:
    """The largest connected piece of `ink` (the digit, once the lines are gone), or None."""
    from scipy import ndimage

    pieces, count = ndimage.label(ink, structure=np.ones((3, 3)))
    return None if count == 0 else pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1


def apart(band: tuple[np.ndarray, np.ndarray], digit: np.ndarray, ink: np.ndarray) -> bool:
    """Whether the line and the digit are separate pieces of `ink`."""
    from scipy import ndimage

    labels, _ = ndimage.label(ink, structure=np.ones((3, 3)))
    return not np.isin(labels[digit], labels[band]).any()


def on_the_outside(coordinates: np.ndarray, extent: int) -> bool:
    """A line reaches near the first or last row (column) of the field."""
    near = OUTER_SHARE * extent
    return coordinates.min() <= near or coordinates.max() >= extent - 1 - near


def meets(band: tuple, others: list[tuple], shape: tuple[int, int], upper: bool = True) -> bool:
    """Whether a side's upper or lower end lies on one of `others`: a frame's side (or a comb's tick)
    stands on its base line or (`upper`) hangs from its top line."""
    from scipy import ndimage

    near = np.zeros(shape, bool)
    for rows, cols in others:
        near[rows, cols] = True
    near = ndimage.binary_dilation(near, structure=np.ones((3, 3)), iterations=LINE_MEET)
    rows, cols = band
    ends = (rows >= rows.max() - LINE_MEET) | (upper & (rows <= rows.min() + LINE_MEET))
    return bool(near[rows[ends], cols[ends]].any())


def drop_line_ends(cleaned: np.ndarray, before: np.ndarray) -> np.ndarray:
    """What a removed line leaves: its blurred ends, corners and the ticks of a comb field. They
    touch where the line was and are small beside the largest piece of ink (the digit)."""
    from scipy import ndimage

    labels, count = ndimage.label(cleaned > 0, structure=np.ones((3, 3)))
    if count == 0:
        return cleaned
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    removed = ndimage.binary_dilation(before & (cleaned == 0), structure=np.ones((3, 3)))
    touching = np.zeros(count + 1, bool)
    touching[np.unique(labels[removed])] = True
    # A piece that lies wholly along where a line was is its edge: in an empty box there is no
    # digit beside which it would look small.
    along = ndimage.binary_dilation(removed, structure=np.ones((3, 3)), iterations=LINE_MEET)
    hugging = np.bincount(labels[~along], minlength=count + 1) == 0
    drop = touching & ((areas < LINE_END_SHARE * areas[1:].max()) | hugging | comb_ticks(labels, areas))
    drop[0] = False
    return np.where(drop[labels], 0, cleaned)


def comb_ticks(labels: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Which pieces (by label) lie wholly beside the largest piece (the digit), as a comb field's
    end ticks do (with a stub of the base line at their foot, an L): thin ones, or ones under half
    the digit's size. The digit's own strokes overlap its columns."""
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)
    largest = int(np.argmax(areas[1:]))
    digit = boxes[largest][1]
    ticks = [(cols.stop <= digit.start or cols.start >= digit.stop)
             and (min(rows.stop - rows.start, cols.stop - cols.start)
                  <= TICK_SHAPE * max(rows.stop - rows.start, cols.stop - cols.start)
                  or areas[label] < TICK_SHARE * areas[largest + 1])
             for label, (rows, cols) in enumerate(boxes, start=1)]
    return np.array([False, *ticks])


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


def mnist_form(pixels: np.ndarray) -> np.ndarray | None:
    """A 28x28 light-on-dark digit as it is, its place and size kept (MNIST's own pass unchanged:
    their background is 0); a grey or grainy background (another pipeline's export, a JPEG) taken
    away first: the network reads a background of 40 as ink (43% right, 99% once it is gone).
    None when nothing stands out."""
    level = histogram_median(np.bincount(pixels.ravel(), minlength=256))
    if level > 0:
        grain = 1.4826 * float(np.median(np.abs(pixels - np.float32(level))))
        ink = pixels.astype(np.float32) - level
        ink[ink <= INK_SPREAD * grain] = 0
        peak = ink.max()
        if peak < MIN_CONTRAST:
            return None
        pixels = (ink * (255.0 / peak)).round().astype(np.uint8)
    return pixels if pixels.max() >= BLANK_PEAK else None


def preprocess(gray: np.ndarray | Image.Image) -> np.ndarray | None:
    """A grey image (2-D uint8 array, or Pillow mode L) -> 28x28 uint8 MNIST-style digit (white
    on black), or None when the image is blank; NotADigit when it holds only printed lines."""
    pixels = np.asarray(gray)
    height, width = pixels.shape
    if (height, width) == (28, 28) and pixels[MNIST_BORDER].max() < BLANK_PEAK and pixels.mean() < 128:
        # MNIST form: a clean dark edge around a mostly dark field (not a dark box on paper)
        return mnist_form(pixels)
    if max(height, width) > 2 * WORK_SIDE:
        factor = max(height, width) // WORK_SIDE
        # Before the polarity test: less noise, a cheaper histogram.
        pixels = np.asarray(Image.fromarray(pixels).reduce(factor))
    pixels = even_light(pixels)
    counts = np.bincount(pixels.ravel(), minlength=256)  # one histogram: polarity and paper level
    if only_grain(pixels, counts):
        return None
    light_background, threshold = polarity(pixels, counts)
    if (height, width) == (28, 28) and not light_background:
        return mnist_form(pixels)

    level = background_level(counts, threshold, light_background)
    ink = (255 - pixels if light_background else pixels).astype(np.float32)
    ink -= 255 - level if light_background else level
    peak = ink.max()
    if peak < MIN_CONTRAST:
        return None
    ink *= 255.0 / peak
    ink[ink < INK_THRESHOLD * 255] = 0  # background removal: paper grain, shading, JPEG ringing
    field = drop_specks(ink)
    ink, had_lines = remove_form_lines(field)
    if had_lines:  # without the lines, the digit is the largest piece: drop what lies far from it
        ink = drop_specks(ink)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if had_lines and only_lines_left(rows, cols, field):
        raise NotADigit("only printed lines (an empty form field or an underline): no digit")
    if rows[-1] - rows[0] + 1 < FLATTEST_DIGIT * (cols[-1] - cols[0] + 1):
        raise NotADigit("only a flat stroke (a dash or a line), flatter than any digit: no digit")
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
