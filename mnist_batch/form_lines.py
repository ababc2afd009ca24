"""Printed lines of a form, removed from a digit's ink: box sides, open frames, comb fields and
underlines, at any tilt up to LINE_TILT degrees, anywhere on the page, touching the digit or not.

Lines are searched for on the ink's box reduced to at most LINE_SIDE px: straight runs of ink
along rows (and, transposed, columns) of each shear in LINE_SHEARS. A run is a printed line if it
is long for the ink left beside it, thin, and straight; what a line leaves behind (its ends, a comb
field's ticks) goes with it. Ruled and squared paper, whose lines cross the digit too, goes first
(remove_ruling). digitize.preprocess calls remove_ruling, remove_form_lines, then, where lines were
found, only_lines_left and only_a_line_on_the_edge; where none were, remove_pieces_apart:
remove_printed_ring (a round field's circle), remove_underline (a writer's short line under the
digit) and remove_corner_marks (a field marked by an L at each corner), pieces apart from it.
Everything here works on plain arrays; nothing imports torch.
"""

import functools
import itertools

import numpy as np

# Printed lines of a form (box sides, comb fields, underlines): straight runs of ink at most
# LINE_TILT degrees off the axes, at least LINE_SPAN of the ink's width (height) long, and longer by
# LINE_OVER_DIGIT than the ink left once they are gone is tall (a 7's bar is not).
LINE_TILT, LINE_STEP, LINE_SPAN, LINE_OVER_DIGIT, MAX_LINES = 6.0, 1.5, 0.45, 1.1, 4
# ... or, standing between two uprights (a box's sides, a comb's ticks), this share of its height:
# a field narrower than the digit written in it is tall.
LINE_BETWEEN_UPRIGHTS = 0.8
LINE_PASSES = 3  # searches for lines, each on what the last one left
LINE_SIDE = 64  # px: lines are searched for on the ink's box reduced to at most this
LINE_MEET = 2  # px (of that reduced box): a frame's side ends this close to its base line
LINE_WOBBLE = 1.5  # px: most of a printed line's middle lies this close to a straight line (its width, to its median)
# A printed line is at most this many px (of that reduced box), or this share of its height, thick.
LINE_THICKNESS, LINE_THICK_SHARE = 3, 0.1
LINE_STEP_SHARE = 0.25  # a row beside a line's band, this much inked along it, holds the line's steps
LINE_FIT_SHARE = 0.4  # of a line's run: the columns where it is thin, that its tilt is fitted to
FIT_REACH = 3.5  # px: a run's line lies this close to the row pair it was found in
SIDE_SPAN = 0.7  # a frame's side spans at least this share of the ink's height
SIDE_REACH = 0.25  # ... and lies this share of its height from its edge (OUTER_SHARE of a wide field's width is far)
SIDE_GAP = 3  # px (of that reduced box): a frame's lone side keeps at least this far from the digit
LONE_SIDE_DIGIT = 0.2  # the digit beside a frame's lone side is at least this share of the side tall
FRAME_WIDTH = 0.4  # a field is at least this share of its height wide
OUTER_SHARE = 0.12  # a printed line lies within this share of the ink's extent from its edge
CRUMB_SHARE = 0.05  # pieces on the field's edge this much smaller than the largest, once the lines are gone: no digit
LINE_END_SHARE = 0.2  # pieces of ink this much smaller than the largest, where a line was, are its remains
# px: in ink smaller than this (a 16x16 crop), a digit's strokes run from edge to edge as a
# frame's lines would; a field this small holds no readable digit inside its lines.
SMALLEST_FIELD = 24
TICK_SHARE = 0.5  # ... or holds under this share of the digit's ink
TICK_SHAPE = 0.4  # a comb field's tick is at most this wide for its length
TICK_TWINS = 0.15  # a comb's two ticks differ in height and in ink by at most this share
EMPTY_FIELD = 0.15  # once the lines are gone, ink spanning less than this share of the field is no digit
SMALLEST_DIGIT = 10  # px: a digit on a long underline spans at least this
# An empty box: its hole at least BOX_HOLE of what it encloses (lines up to a seventh of its side
# thick), both as square-cornered as a rectangle, filling BOX_CORNERS of it (a written 0's hole: 0.84 at most).
BOX_HOLE, BOX_CORNERS = 0.35, 0.9
CAPTION_WIDTH = 1.5  # a caption's word is this many times as wide as tall, or wider
EDGE_BAND = 0.08  # of the image's shorter side: ink wholly this close to one edge is a printed line's end
NEIGHBOUR_BAND = 0.15  # of the image's breadth across a line: one wholly this close to a side may be the next field's
PRINTED_WIDTH, STRAIGHT_SHARE = 0.08, 0.9  # a printed line's width for its length; rows that keep to its line
# Ruled paper (a notebook's lines, squared paper): lines crossing RULE_SPAN of the image or more,
# through the digit too, at least RULED_LINES of them side by side (one such stroke is a 7's bar).
RULE_SPAN, RULED_LINES = 0.9, 2
# A turned page's line may run off an edge: RULE_SPAN of the part on the image, which is RULE_ON_IMAGE of it at least.
RULE_ON_IMAGE = 0.5
# The rows RULE_CLEAR px (of the reduced image) beside a ruled line are inked along under RULE_CLEAR_SHARE of
# it: lines closer than about a tenth of the image (fine squared paper) are not taken.
RULE_CLEAR, RULE_CLEAR_SHARE = 4, 0.7
RULE_SOLID = 0.75  # a ruled line is inked along this share of it, pixel by pixel (not grain seen as a line)
RULE_DARKER = 1.5  # ink this many times the ruling's own level, on a ruled line, is written on it
# A round field's printed ring around the digit: one piece of ink whose hole holds RING_HOLDS of the
# rest, covering at most RING_INK of the area it encloses (a thin line: a written 0's stroke covers
# 0.4-0.8 of it), the writing in it at least RING_CONTENT of the hole's height tall (not a speck).
RING_HOLDS, RING_INK, RING_CONTENT = 0.9, 0.25, 0.3
# An empty one is a closed loop as thin, its outer half within RING_SPREAD (standard deviation, of its
# size) of an ellipse: the benches' written 0s stray 0.025 or more, a smooth fine-pen loop wobbling by
# 3-5% 0.011 or more; printed circles of 60-160 px 0.003-0.029 (64% of them under this).
RING_SPREAD, RING_HOLE = 0.01, 0.3
# A writer's underline beneath the digit, apart from it: a piece wholly below the rest of the ink,
# flatter than UNDERLINE_FLAT (height over width), at least UNDERLINE_SPAN of the rest's width long,
# its middle within UNDERLINE_CENTRED of its length from the rest's (a thin pen's 2 whose base broke
# off starts under the curve's end and runs on to one side).
UNDERLINE_FLAT, UNDERLINE_SPAN, UNDERLINE_CENTRED = 0.25, 0.6, 0.2
# A field marked by its corners: at least CORNER_MARKS Ls in other corners of the ink's box, their bends
# within CORNER_REACH of its size from them, arms at most CORNER_ARM of its sides long, each spanning
# CORNER_SPAN of the L's box, the ink within CORNER_BAND of the L's size of its two outer sides; the
# smallest at least CORNER_TWINS of the largest. The field's box leaves out specks under CORNER_SPECK of
# the largest piece's size.
CORNER_SPECK = 0.1
CORNER_MARKS, CORNER_REACH, CORNER_ARM, CORNER_SPAN, CORNER_BAND, CORNER_TWINS = 3, 0.1, 0.45, 0.8, 0.35, 0.5
LINE_SHEARS = np.tan(np.deg2rad(np.arange(-LINE_TILT, LINE_TILT + 0.01, LINE_STEP)))


def zero_padded(array: np.ndarray, rows: tuple[int, int] = (1, 1), cols: tuple[int, int] = (1, 1)) -> np.ndarray:
    """A 2-D array with rows (above, below) and columns (left, right) of zeros around it: np.pad's
    result, without its 12 us of overhead a call (several calls an image, on every scan)."""
    out = np.zeros((array.shape[0] + sum(rows), array.shape[1] + sum(cols)), array.dtype)
    out[rows[0] : rows[0] + array.shape[0], cols[0] : cols[0] + array.shape[1]] = array
    return out


def shear_index(height: int, width: int) -> tuple[np.ndarray, int]:
    """Rows to gather from a mask padded by 2 * pad so that, for each tilt of LINE_SHEARS, a line
    y = c + (x - width/2) * shear becomes the straight row c + pad."""
    shifts = np.round((np.arange(width) - width / 2)[None, :] * LINE_SHEARS[:, None]).astype(np.int64)
    pad = int(np.abs(shifts).max())
    return np.arange(height + 2 * pad)[None, :, None] + (shifts + pad)[:, None, :], pad


def sheared(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(tilts, height + 2 * pad, width): `mask` sheared by each of LINE_SHEARS; and pad."""
    rows, pad = shear_index(*mask.shape)
    return zero_padded(mask, (2 * pad, 2 * pad), (0, 0))[rows, np.arange(mask.shape[1])], pad


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
    found, taken, failed = [], [], []
    for tilt, row in zip(tilts[order], rows[order], strict=True):
        if len(found) == MAX_LINES:
            break
        if near < row - pad < across - 1 - near or any(abs(row - other) <= 3 for other in taken):
            continue  # inside the field, or the same line at a neighbouring tilt
        if any(abs(row - other) <= 3 and abs(tilt - other_tilt) <= 1 for other, other_tilt in failed):
            continue  # found no band at a neighbouring tilt; a turned line may at its own tilt, further off
        length, end = int(lengths[tilt, row]), int(ends[tilt, row])
        band = line_band(mask, LINE_SHEARS[tilt], row - pad, end - length, end)
        if band is None:
            failed.append((row, tilt))
            continue
        taken.append(row)  # found: a neighbouring row or tilt would find the same run again
        found.append((band, length))
    return found


def line_band(mask: np.ndarray, shear: float, row: int, start: int, end: int,
              mostly_alone: bool = False) -> tuple | None:
    """The pixels of a line y = row + (x - width/2) * shear, found as a run over columns start:end: its own
    tilt fitted to the ink, the rows around it where at least half the run is ink, along the whole
    width (a line broken by a gap is still one line), less the columns where a stroke crosses it
    (ink just beyond both edges). None when the band is too thick for a printed line. `mostly_alone`:
    the line runs alone along most of its length (a ruling, which also crosses the digit's strokes):
    its tilt is fitted again to the columns that lie on the first fit, and its band is measured on the
    columns where it is thin."""
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
    if mostly_alone:  # fitted again to the columns on the first fit: those the digit's strokes pulled are left out
        near = np.abs(middle - (slope * run[thin] + intercept)) <= LINE_WOBBLE
        slope, intercept = np.polyfit(run[thin][near], middle[near], 1) if near.sum() >= 2 else (slope, intercept)
    if np.mean(np.abs(middle - (slope * run[thin] + intercept)) > LINE_WOBBLE) > 0.25:
        return None  # a curved stroke (the top of a 5), not a printed line: crossings aside, it bends
    _, _, inked = around(np.round(slope * run + intercept).astype(np.int64), run)
    # A ruling's band is measured where it runs alone (thin columns): a thick digit's strokes beside it
    # would widen it past a line's thickness.
    mostly = (inked[:, thin] if mostly_alone else inked).mean(axis=1) >= 0.5
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
    if not keep.any():
        return None  # crossed all along: strokes, not a line
    return ys[first : last + 1][keep], np.broadcast_to(columns, keep.shape)[keep]


def only_lines_left(rows: np.ndarray, cols: np.ndarray, field: np.ndarray) -> bool:
    """Whether the ink left in `rows` x `cols` once the lines are gone is no digit: nothing; bits
    spanning under EMPTY_FIELD of the field's longer side (a line's ends, a tick), unless they
    are half as tall or wide as the field's shorter side and SMALLEST_DIGIT px or more (a digit on
    an underline many times its width: the field is then as tall as the digit); or a line of small
    print, under EMPTY_FIELD of the field's height and CAPTION_WIDTH times as wide as that (a
    caption in an empty box's corner; a small digit written in a large box is taller than wide)."""
    if not len(rows):
        return True
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    field_height = np.ptp(np.flatnonzero(field.any(axis=1))) + 1
    field_width = np.ptp(np.flatnonzero(field.any(axis=0))) + 1
    if height < EMPTY_FIELD * field_height and width >= CAPTION_WIDTH * height:
        return True
    span = max(height, width)
    return span < EMPTY_FIELD * max(field_height, field_width) and not (
        span >= max(min(field_height, field_width) / 2, SMALLEST_DIGIT))


def only_a_line_on_the_edge(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether the ink left in `rows` x `cols` once a field's lines are gone is a stroke at most
    TICK_SHAPE as wide as it is long, lying wholly within EDGE_BAND of the image's shorter side from
    the edge it runs along: what is left of a form field whose page was cut at its frame (a comb's
    end tick, an open frame's side, turned a little), the rest of the lines off the page or gone. A
    digit written in a field keeps clear of the edges, and one cropped to its ink spans them. (Where
    no line was found, such a stroke is a 1 at the edge of the page: it is not asked.)"""
    reach = EDGE_BAND * min(shape)
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    on_a_side = (cols[-1] < reach or cols[0] >= shape[1] - reach) and width <= TICK_SHAPE * height
    on_top_or_bottom = (rows[-1] < reach or rows[0] >= shape[0] - reach) and height <= TICK_SHAPE * width
    return on_a_side or on_top_or_bottom


def nothing_but_lines(ink: np.ndarray, field: np.ndarray) -> bool:
    """Whether the ink left once a field's lines are gone is no digit: only_lines_left, or
    only_a_line_on_the_edge."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return only_lines_left(rows, cols, field) or only_a_line_on_the_edge(rows, cols, ink.shape)


def a_divider(ink: np.ndarray, field: np.ndarray) -> bool:
    """Whether the ink left once a field's lines are gone (`field`: the ink before) is the side shared
    with the next field, in a crop that reaches into it: a printed line (printed_stroke) as tall as a
    field's side, standing between two removed lines, its ends on them (a written 1 that touches both
    the top and the base of its box is rarely as straight and even). The side of the next field is not
    on the outside of the ink, so it is not searched for as a line."""
    from scipy import ndimage

    mask = ink > 0
    if ndimage.label(mask, structure=np.ones((3, 3)))[1] != 1:
        return False
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not printed_stroke(mask[rows[0] : rows[-1] + 1]):
        return False
    if len(rows) < SIDE_SPAN * (np.ptp(np.flatnonzero(field.any(axis=1))) + 1):
        return False  # not as tall as a field's side
    removed = (field > 0) & ~mask
    left, right = max(cols[0] - LINE_MEET, 0), cols[-1] + LINE_MEET + 1
    above = removed[max(rows[0] - LINE_MEET - 1, 0) : rows[0], left:right]
    below = removed[rows[-1] + 1 : rows[-1] + LINE_MEET + 2, left:right]
    return bool(above.any() and below.any())


def a_neighbours_side(mask: np.ndarray) -> bool:
    """Whether the ink (`mask`) is only a printed line along one side of the image, cut by the image
    at both ends: the side of the next field, cropped with this empty one, whose own lines may be
    too faint to be ink. It lies within NEIGHBOUR_BAND of the image's width from that side and runs
    from its top to its bottom (or, turned, from one of them off the side, over half the height);
    and it is a printed line, not a written stroke: one piece, thin for its length, of an even width
    along it, and straight (printed_stroke). The same along the top or bottom."""
    return beside_and_cut(mask) or beside_and_cut(mask.T)


def beside_and_cut(mask: np.ndarray) -> bool:
    """a_neighbours_side for a line down the image (along its rows). Its ends come within EDGE_BAND
    of the image's height of the top and bottom."""
    length, breadth = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return False
    long = rows[-1] - rows[0] + 1
    at_top, at_bottom = rows[0] < EDGE_BAND * length, length - 1 - rows[-1] < EDGE_BAND * length
    near_left, near_right = cols[-1] < NEIGHBOUR_BAND * breadth, breadth - 1 - cols[0] < NEIGHBOUR_BAND * breadth
    off_the_side = (near_left and cols[0] == 0) or (near_right and cols[-1] == breadth - 1)
    cut_by_the_image = (at_top and at_bottom) or (off_the_side and (at_top or at_bottom) and long >= length / 2)
    return cut_by_the_image and (near_left or near_right) and printed_stroke(mask[rows[0] : rows[-1] + 1])


def printed_stroke(band: np.ndarray) -> bool:
    """Whether the ink of `band`, rows each crossed by it, is a printed line down them: inked in
    every row by one run, of widths within LINE_WOBBLE of their median and that median under
    PRINTED_WIDTH of the length, the runs' middles within LINE_WOBBLE of a straight line (a written
    1 bends, thickens at its ends or carries a flag; a 3, a 6 or an 8 is several runs a row)."""
    starts, ends = ink_runs(band)
    if not np.array_equal(starts[0], np.arange(len(band))):  # one run in each row
        return False
    widths = ends[1] - starts[1]
    middles = (starts[1] + ends[1]) / 2
    along = np.arange(len(band))
    fitted = np.polyval(np.polyfit(along, middles, 1), along) if len(band) > 1 else middles
    return (np.abs(widths - np.median(widths)) <= LINE_WOBBLE).mean() >= STRAIGHT_SHARE \
        and np.median(widths) <= PRINTED_WIDTH * len(band) \
        and (np.abs(middles - fitted) <= LINE_WOBBLE).mean() >= STRAIGHT_SHARE


def extent(ink: np.ndarray) -> int:
    """The longer side of the ink's bounding box."""
    return max(np.ptp(np.flatnonzero(ink.any(axis=1))), np.ptp(np.flatnonzero(ink.any(axis=0)))) + 1


def reduced(mask: np.ndarray, factor: int) -> np.ndarray:
    """`mask` reduced `factor` times each way; a block holding any ink is ink (thin lines stay whole)."""
    height, width = -(-mask.shape[0] // factor), -(-mask.shape[1] // factor)
    small = zero_padded(mask, (0, height * factor - mask.shape[0]), (0, width * factor - mask.shape[1]))
    return small.reshape(height, factor, width, factor).any(axis=(1, 3))


def remove_ruling(ink: np.ndarray) -> tuple[np.ndarray, bool]:
    """The lines of ruled or squared paper removed from `ink` (a page of a notebook or an exam
    sheet), and whether any were. They cross the whole image, the digit too, so remove_form_lines,
    which only takes lines on the outside of the ink, leaves them. They are taken, along rows and
    along columns, when RULED_LINES or more thin straight lines cross RULE_SPAN of the image, longer by
    LINE_OVER_DIGIT than the largest piece of ink left is tall and wide (a tight crop's own strokes run edge to
    edge too: a 2's base, a Z-shaped 2's top), and one of them at least away from the image's edges
    (a 0 cropped to its ink, or a box, is four lines on its edges). Where a stroke crosses a line, the
    stroke stays."""
    mask = ink > 0
    if max(mask.shape) < SMALLEST_FIELD:
        return ink, False
    if not (mask.any(axis=0).mean() >= RULE_SPAN or mask.any(axis=1).mean() >= RULE_SPAN):
        return ink, False  # most images: the ink does not reach across
    factor = -(-max(mask.shape) // LINE_SIDE)
    small = reduced(mask, factor)
    found = ruled_lines(small), [(cols, rows) for rows, cols in ruled_lines(small.T)]
    found = [[band for band in bands if solid(band, axis, mask, factor)] for axis, bands in enumerate(found)]
    ruled = {axis: bands for axis, bands in enumerate(found) if len(bands) >= RULED_LINES
             and any(not on_the_outside(band[axis], small.shape[axis]) for band in bands)}
    length = {0: mask.shape[1], 1: mask.shape[0]}  # lines along rows run across the width
    while ruled:
        cleaned = without_lines(ink, [band for bands in ruled.values() for band in bands], factor)
        digit = largest_piece(cleaned > 0)  # a line not found, apart from it, is no part of the digit
        if digit is None:
            return cleaned, True  # a ruled page with nothing written on it
        short = [axis for axis in ruled if length[axis] < LINE_OVER_DIGIT * extent(digit)]
        if not short:
            return cleaned, True
        for axis in short:
            del ruled[axis]
    return ink, False


def full_size(bands: list[tuple[np.ndarray, np.ndarray]], factor: int, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of `bands`, found on an image of `shape` reduced `factor` times, at full size."""
    lines = np.zeros((-(-shape[0] // factor), -(-shape[1] // factor)), bool)
    for band in bands:
        lines[band] = True
    return lines.repeat(factor, axis=0).repeat(factor, axis=1)[: shape[0], : shape[1]]


def solid(band: tuple[np.ndarray, np.ndarray], axis: int, mask: np.ndarray, factor: int) -> bool:
    """Whether a line found on the reduced image (along rows for `axis` 0, columns for 1) is one in
    `mask`: inked in RULE_SOLID of the columns (rows) it runs along. A reduced block holds ink if
    any of its pixels does, so that grain or dots can make a line of blocks (noise)."""
    line = full_size([band], factor, mask.shape)
    return bool((line & mask).any(axis=axis)[line.any(axis=axis)].mean() >= RULE_SOLID)


def without_lines(ink: np.ndarray, bands: list[tuple[np.ndarray, np.ndarray]], factor: int) -> np.ndarray:
    """`ink` less the lines of ruled paper (`bands` found on it reduced `factor` times) and their ends."""
    mask = ink > 0
    lines = full_size(bands, factor, mask.shape)
    # A ruling is mostly printed fainter than a pen writes: ink much darker than the line's own level
    # (the 75th percentile of its pixels: their cores, not their blurred edges), where it runs along
    # the line (a 3's arm, a 7's bar), is the digit's.
    lines &= ink <= RULE_DARKER * np.percentile(ink[lines & mask], 75)
    return off_the_edges(drop_line_ends(np.where(lines, 0, ink), mask), 2 * factor + LINE_MEET)


def off_the_edges(ink: np.ndarray, reach: int) -> np.ndarray:
    """`ink` less the pieces that lie wholly within `reach` px of the image's edges: the rest of a
    turned page's ruled line, which runs off the image there (a digit reaches further in)."""
    from scipy import ndimage

    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    inner = np.zeros(ink.shape, bool)
    inner[reach:-reach, reach:-reach] = True
    reaching_in = np.zeros(count + 1, bool)
    reaching_in[np.unique(labels[inner])] = True
    reaching_in[0] = True
    return np.where(reaching_in[labels], ink, 0)


@functools.lru_cache(maxsize=64)
def columns_on_image(height: int, width: int) -> np.ndarray:
    """(tilts, rows) for sheared()'s pairs of rows: how many columns each lies on the image for. A
    turned page's line near an edge runs off it: its reach is measured where it is on the image.
    Cached: a batch's scans mostly share a size."""
    inside = sheared(np.ones((height, width), bool))[0]
    return (inside[:, :-1] | inside[:, 1:]).sum(axis=2)


def ruled_lines(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (row, column) pixels of each thin straight line that crosses RULE_SPAN of `mask`'s width
    (of the part of it on the image, RULE_ON_IMAGE of the width at least) at a tilt of LINE_SHEARS,
    as line_band finds it (less where strokes cross it)."""
    every, pad = sheared(mask)
    pairs = every[:, :-1] | every[:, 1:]  # as in line_candidates: drift by a row, one-pixel gaps
    pairs[:, :, 1:-1] |= pairs[:, :, :-2] & pairs[:, :, 2:]
    on_image = columns_on_image(*mask.shape)
    reach = pairs.sum(axis=2) / np.maximum(on_image, 1)
    # A ruled line is thin: RULE_CLEAR rows away on either side, little of the way along it is ink
    # (a thick pen's bar, a blot, a digit's body are not).
    clear = zero_padded(reach < RULE_CLEAR_SHARE, (0, 0), (RULE_CLEAR, RULE_CLEAR)).astype(bool)
    clear[:, :RULE_CLEAR] = clear[:, -RULE_CLEAR:] = True
    thin = clear[:, : -2 * RULE_CLEAR] & clear[:, 2 * RULE_CLEAR :]
    tilts, rows = np.nonzero((reach >= RULE_SPAN) & (on_image >= RULE_ON_IMAGE * mask.shape[1]) & thin)
    if len(rows) == 0 or np.ptp(rows) <= 3:
        return []  # not two lines: no ruling (the search below costs more)
    order = np.argsort(-reach[tilts, rows], kind="stable")
    found, taken, tried = [], [], set()
    for tilt, row in zip(tilts[order], rows[order], strict=True):
        if row in tried or any(abs(row - other) <= 3 for other in taken):
            continue  # tried at its likeliest tilt, or a line found already at a neighbouring row
        tried.add(row)
        band = line_band(mask, LINE_SHEARS[tilt], row - pad, 0, mask.shape[1], mostly_alone=True)
        if band is not None:  # else the next row of the pair may fit the line
            taken.append(row)
            found.append(band)
    return found


def remove_form_lines(ink: np.ndarray, search: np.ndarray | None = None,
                      nested: bool = True) -> tuple[np.ndarray, bool]:
    """Printed lines (box sides, partial frames, comb fields, underlines) removed from `ink`, at
    any tilt up to LINE_TILT and any distance from the image's edge; and whether any were.
    They are found on the ink's bounding box reduced to at most LINE_SIDE pixels (a block
    maximum keeps thin lines whole): the search is then cheap whatever the scan's size.
    `search`: where to look for them, if not the ink alone (digitize.faint_lines_removed adds the
    fainter ink that joins it); what they cover is removed from the ink. Where lines were found, what
    is left is searched again as a field of its own (`nested`): a double frame's inner lines, merged
    with the outer ones on the reduced box, then stand on the outside of what is left."""
    inked = ink > 0
    mask = inked if search is None else search | inked
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return ink, False
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if max(box.shape) < SMALLEST_FIELD or box.shape[1] < FRAME_WIDTH * box.shape[0]:
        return ink, False  # too small, or too narrow (a 1 with a foot) for a field around a digit
    factor = -(-max(box.shape) // LINE_SIDE)
    small = reduced(box, factor)
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
    cleaned = drop_line_ends(cleaned, inked, max(LINE_MEET, factor))
    if nested:
        cleaned, _ = remove_form_lines(cleaned, nested=False)
    return cleaned, True


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
    edges = np.diff(zero_padded(rows, (0, 0)).astype(np.int8), axis=1)
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
    uprights = [band for band, _ in vertical]
    vertical = [(band, length) for band, length in vertical if on_the_outside(band[1], width, SIDE_REACH * height)
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
    digit = without_crumbs(inside)
    digit_rows, digit_cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    digit_height = np.ptp(digit_rows) + 1 if len(digit_rows) else 0
    printed = [band for band, length in horizontal
               if frames_the_digit(length, digit_cols, digit_height, LINE_BETWEEN_UPRIGHTS
                                   if both_ends_on(band, uprights, mask.shape, 1) else LINE_OVER_DIGIT)
               and not ends_on_the_digit(band, inside)]
    # A side standing on a printed base and hanging from a printed top frames a digit as tall as the box.
    sides = [band for band, length in vertical if frames_the_digit(length, digit_rows, digit_height)
             or both_ends_on(band, printed, mask.shape, 0)]
    if (not both_edges(sides, field) and twin_sides(vertical, field)
            and any(both_ends_on(band, uprights, mask.shape, 1) for band in bases)):
        sides = [band for band, _ in vertical]
    if both_edges(sides, field):  # they frame the field even where the page's edge cut their corners off
        return printed + sides
    if printed:
        return printed + [band for band in sides if meets(band, printed, mask.shape)]
    return [band for band in sides if lone_side(band, inside, mask)]


def without_crumbs(inside: np.ndarray) -> np.ndarray:
    """The ink left once the lines are gone, less pieces under CRUMB_SHARE of the largest's area on the
    field's edge: what the page's edge left of a turned comb's tick, away from its base, would make the
    digit as wide as the field, and no line longer than it. (A thin pen's crumbs inside the digit
    stay: without them, a 3's arm may be as wide as the rest.)"""
    from scipy import ndimage

    labels, count = ndimage.label(inside, structure=np.ones((3, 3)))
    if count < 2:
        return inside
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    edge = np.zeros(count + 1, bool)
    edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    return ~((areas < CRUMB_SHARE * areas.max()) & edge)[labels] & inside


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


def frames_the_digit(length: int, digit_along: np.ndarray, digit_height: int,
                     height_share: float = LINE_OVER_DIGIT) -> bool:
    """A line `length` long frames the digit (the ink left once the lines are gone, its
    coordinates on the same axis): longer by LINE_OVER_DIGIT than it extends along the line, as a
    field's lines are, and `height_share` of its height (LINE_OVER_DIGIT: a digit is taller than
    wide, so a 5's top stays); a digit's own stroke (a wide 7's bar) is no longer than the rest of
    the digit is wide."""
    digit_along = np.ptp(digit_along) + 1 if len(digit_along) else 0
    return length >= LINE_OVER_DIGIT * digit_along and length >= height_share * digit_height


def both_ends_on(band: tuple[np.ndarray, np.ndarray], lines: list[tuple], shape: tuple[int, int], axis: int) -> bool:
    """Whether both ends of a line (along `axis`: 1, a horizontal one's, 0, a vertical one's) lie on
    `lines`: a field's base between two sides or a comb's ticks, a side between a top and a base. A
    digit's bar or base goes on into its curve or stem at one end at most."""
    if len(lines) < 2:
        return False
    near = near_lines(lines, shape)
    along = band[axis]
    first, last = along <= along.min() + LINE_MEET, along >= along.max() - LINE_MEET
    rows, cols = band
    return bool(near[rows[first], cols[first]].any() and near[rows[last], cols[last]].any())


def twin_sides(vertical: list[tuple], field: tuple[int, int]) -> bool:
    """Whether vertical lines near the left and the right edge of a field are as long as each other, by
    TICK_TWINS: a box's two sides, framing a digit that may be as tall as they are, or taller (printed_lines
    also asks for a horizontal line between them: an N's or an H's legs are twins too)."""
    height, width = field
    near = OUTER_SHARE * width
    left = [length for (_, cols), length in vertical if cols.max() <= near]
    right = [length for (_, cols), length in vertical if cols.min() >= width - 1 - near]
    return (width >= FRAME_WIDTH * height and bool(left) and bool(right)
            and abs(max(left) - max(right)) <= TICK_TWINS * max(max(left), max(right)))


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
        padded = zero_padded(mask)
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


def remove_pieces_apart(ink: np.ndarray) -> tuple[np.ndarray, bool]:
    """Where no line was found: a round field's ring, else a writer's underline, else a field's corner
    marks removed from the ink, each pieces of it apart from the digit; and whether any was. The ink's
    pieces are labelled once for the three."""
    from scipy import ndimage

    pieces, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    for remove in (remove_printed_ring, remove_underline, remove_corner_marks):
        cleaned, found = remove(ink, pieces, count)
        if found:
            return cleaned, True
    return ink, False


def remove_printed_ring(ink: np.ndarray, pieces: np.ndarray, count: int) -> tuple[np.ndarray, bool]:
    """The ink without the printed ring of a round field written in (a circle or an oval, RING_INK
    thin, holding the digit apart from it), and whether there was one; `pieces`: the ink's `count`
    pieces, labelled. A digit touching its ring is one piece with it and keeps it."""
    from scipy import ndimage

    if count < 2:
        return ink, False
    boxes = ndimage.find_objects(pieces)
    areas = [(rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in boxes]
    label = int(np.argmax(areas)) + 1  # the piece of the largest box
    box = boxes[label - 1]
    ring = pieces[box] == label  # what it encloses lies in its box: the holes are looked for there alone
    if np.count_nonzero(ring) > RING_INK * ring.size:
        return ink, False  # (a plain digit with a speck: no hole search on every scan)
    enclosed = ndimage.binary_fill_holes(ring)
    hole = enclosed & ~ring
    held = hole & (pieces[box] > 0)
    if (np.count_nonzero(held) < RING_HOLDS * (np.count_nonzero(pieces) - np.count_nonzero(ring))
            or np.count_nonzero(ring) > RING_INK * np.count_nonzero(enclosed)):
        return ink, False
    held_rows, hole_rows = np.flatnonzero(held.any(axis=1)), np.flatnonzero(hole.any(axis=1))
    if held_rows[-1] - held_rows[0] + 1 < RING_CONTENT * len(hole_rows):
        return ink, False
    return np.where(pieces == label, 0, ink), True


def remove_underline(ink: np.ndarray, pieces: np.ndarray, count: int) -> tuple[np.ndarray, bool]:
    """The ink without a short line drawn under the digit, apart from it and centred under it (too
    short for a printed line: no longer than the digit is tall), and whether there was one;
    `pieces`: the ink's `count` pieces, labelled."""
    from scipy import ndimage

    if count < 2:
        return ink, False
    boxes = ndimage.find_objects(pieces)
    lowest = max(range(count), key=lambda i: boxes[i][0].stop)
    rows, cols = boxes[lowest]
    rest = (pieces > 0) & (pieces != lowest + 1)
    rest_rows, rest_cols = np.flatnonzero(rest.any(axis=1)), np.flatnonzero(rest.any(axis=0))
    length, rest_width = cols.stop - cols.start, rest_cols[-1] - rest_cols[0] + 1
    off_centre = abs((cols.start + cols.stop - 1) / 2 - (rest_cols[0] + rest_cols[-1]) / 2)
    if (rows.start <= rest_rows[-1] or rows.stop - rows.start > UNDERLINE_FLAT * length
            or length < UNDERLINE_SPAN * rest_width or off_centre > UNDERLINE_CENTRED * length):
        return ink, False
    return np.where(pieces == lowest + 1, 0, ink), True


def remove_corner_marks(ink: np.ndarray, pieces: np.ndarray, count: int) -> tuple[np.ndarray, bool]:
    """The ink without a field's corner marks (an L printed at each of its corners instead of a
    frame, as on forms read by machine), and whether there were: CORNER_MARKS or more pieces, each in
    another corner of the ink's box, an L whose bend points out of it (corner_mark), of much the same
    size (within CORNER_TWINS). A digit's detached strokes are two at most (a faint 2's hook and base,
    at opposite corners). A digit touching a mark keeps it. `pieces`: the ink's `count` pieces, labelled."""
    from scipy import ndimage

    if count < CORNER_MARKS:
        return ink, False
    boxes = ndimage.find_objects(pieces)
    sides = np.array([max(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in boxes])
    kept = [box for box, side in zip(boxes, sides, strict=True) if side >= CORNER_SPECK * sides.max()]  # no dust
    field = (min(rows.start for rows, _ in kept), max(rows.stop for rows, _ in kept),
             min(cols.start for _, cols in kept), max(cols.stop for _, cols in kept))
    marks = {}
    for label, (box, side) in enumerate(zip(boxes, sides, strict=True), start=1):
        corner = corner_mark(pieces[box] == label, box, field)
        if corner is not None:
            marks.setdefault(corner, []).append((label, side))
    found = [max(candidates, key=lambda mark: mark[1]) for candidates in marks.values()]
    sizes = [size for _, size in found]
    if len(found) < CORNER_MARKS or min(sizes) < CORNER_TWINS * max(sizes):
        return ink, False
    return np.where(np.isin(pieces, [label for label, _ in found]), 0, ink), True


def corner_mark(piece: np.ndarray, box: tuple[slice, slice], field: tuple[int, int, int, int]) -> tuple | None:
    """Which corner of the `field` (top, bottom, left, right) a piece of ink (`piece`, its `box`) marks,
    or None: it reaches two sides of the field that meet there (within CORNER_REACH of the field's
    size: turned, a mark's ends are not level with the other marks'), its arms are each at most
    CORNER_ARM of the field's side, and its ink lies along the two sides of its box that meet at that
    corner, within CORNER_BAND of its size (an L: thin arms bent outwards, not a curve or a bar)."""
    top, bottom, left, right = field
    rows, cols = box
    tall, wide = rows.stop - rows.start, cols.stop - cols.start
    if tall > CORNER_ARM * (bottom - top) or wide > CORNER_ARM * (right - left) or min(tall, wide) < 3:
        return None
    reach_y, reach_x = CORNER_REACH * (bottom - top), CORNER_REACH * (right - left)
    upper, lower = rows.start - top <= reach_y, bottom - rows.stop <= reach_y
    first, last = cols.start - left <= reach_x, right - cols.stop <= reach_x
    if upper == lower or first == last:
        return None
    band = max(2, int(CORNER_BAND * max(tall, wide)))
    near_row = piece[:band] if upper else piece[-band:]
    near_col = piece[:, :band] if first else piece[:, -band:]
    along = np.count_nonzero(near_row) + np.count_nonzero(near_col)
    arms = (near_row.any(axis=0).mean() >= CORNER_SPAN) and (near_col.any(axis=1).mean() >= CORNER_SPAN)
    return (upper, first) if arms and along >= np.count_nonzero(piece) else None


def an_empty_ring(mask: np.ndarray) -> bool:
    """Whether the ink (`mask`) is only a printed ring: one closed loop whose hole is RING_HOLE or
    more of what it encloses, covering at most RING_INK of it, and an ellipse within RING_SPREAD
    (fitted to the enclosed area's second moments; the spread of its outer half's radii)."""
    from scipy import ndimage

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return False
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # what a loop encloses lies in its box
    if np.count_nonzero(mask) > RING_INK * mask.size:
        return False  # (most digits: no hole search)
    enclosed = ndimage.binary_fill_holes(mask)
    area = np.count_nonzero(enclosed)
    if np.count_nonzero(mask) > RING_INK * area or area - np.count_nonzero(mask) < RING_HOLE * area:
        return False
    if ndimage.label(mask, structure=np.ones((3, 3)))[1] != 1:
        return False
    ys, xs = np.nonzero(enclosed)
    centre = np.array([ys.mean(), xs.mean()])
    spreads, axes = np.linalg.eigh(np.cov(np.vstack([ys, xs])))
    along = (np.column_stack(np.nonzero(mask)) - centre) @ axes / (2 * np.sqrt(spreads))  # a filled ellipse's semi-axes
    radii = np.hypot(along[:, 0], along[:, 1])
    outer = radii[radii > np.median(radii)]
    return float(np.std(outer / np.quantile(radii, 0.9))) <= RING_SPREAD


def an_empty_box(mask: np.ndarray) -> bool:
    """Whether the ink (`mask`) is only an empty printed box, however thick its lines: one piece, one
    hole of BOX_HOLE or more of what it encloses, both the hole and what the box encloses as
    square-cornered as a rectangle at some tilt up to LINE_TILT (BOX_CORNERS of their bounding
    rectangle filled). A written 0's hole is an oval (0.79 of its rectangle), a 6's or a 9's tail
    stands out of its loop; a box whose lines are too thick for printed lines (remove_form_lines) is
    still a rectangle around nothing. Not ink along all four edges of the image: that is the paper
    around a marker's blot, read the wrong way round (digitize.readings reads it the other way too)."""
    from scipy import ndimage

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows) or min(len(rows), len(cols)) < SMALLEST_DIGIT:
        return False
    if rows[0] == 0 and cols[0] == 0 and rows[-1] == mask.shape[0] - 1 and cols[-1] == mask.shape[1] - 1:
        return False
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = mask.shape
    if mask[height // 3 : height - height // 3, width // 3 : width - width // 3].any():
        return False  # a box's hole holds its middle third; most digits cross it (this runs on every image)
    enclosed = ndimage.binary_fill_holes(mask)
    hole = enclosed & ~mask
    if np.count_nonzero(hole) < BOX_HOLE * np.count_nonzero(enclosed) or ndimage.label(hole)[1] != 1:
        return False  # (a marker's blot, its slits taken for the hole)
    if ndimage.label(mask, structure=np.ones((3, 3)))[1] != 1:
        return False
    return rectangular(hole) >= BOX_CORNERS and rectangular(enclosed) >= BOX_CORNERS


def rectangular(region: np.ndarray) -> float:
    """The largest share of its bounding rectangle a region fills, that rectangle turned by up to
    LINE_TILT degrees (steps of a degree)."""
    ys, xs = np.nonzero(region)
    turns = np.deg2rad(np.arange(-LINE_TILT, LINE_TILT + 0.5))
    along = xs[None, :] * np.cos(turns)[:, None] + ys[None, :] * np.sin(turns)[:, None]
    across = ys[None, :] * np.cos(turns)[:, None] - xs[None, :] * np.sin(turns)[:, None]
    boxes = (np.ptp(along, axis=1) + 1) * (np.ptp(across, axis=1) + 1)
    return float(len(ys) / boxes.min())


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


def on_the_outside(coordinates: np.ndarray, extent: int, most: float = np.inf) -> bool:
    """A line reaches near the first or last row (column) of the field: within OUTER_SHARE of its
    `extent`, and `most` px (a digit written near a wide field's side is no side)."""
    near = min(OUTER_SHARE * extent, most)
    return coordinates.min() <= near or coordinates.max() >= extent - 1 - near


def near_lines(lines: list[tuple], shape: tuple[int, int]) -> np.ndarray:
    """The pixels within LINE_MEET of any of `lines` ((rows, cols) bands), of an image of `shape`."""
    from scipy import ndimage

    near = np.zeros(shape, bool)
    for rows, cols in lines:
        near[rows, cols] = True
    return ndimage.binary_dilation(near, structure=np.ones((3, 3)), iterations=LINE_MEET)


def meets(band: tuple, others: list[tuple], shape: tuple[int, int], upper: bool = True) -> bool:
    """Whether a side's upper or lower end lies on one of `others`: a frame's side (or a comb's tick)
    stands on its base line or (`upper`) hangs from its top line."""
    near = near_lines(others, shape)
    rows, cols = band
    ends = (rows >= rows.max() - LINE_MEET) | (upper & (rows <= rows.min() + LINE_MEET))
    return bool(near[rows[ends], cols[ends]].any())


def drop_line_ends(cleaned: np.ndarray, before: np.ndarray, reach: int = LINE_MEET) -> np.ndarray:
    """What a removed line leaves: its blurred ends, corners and the ticks of a comb field. They
    touch where the line was and are small beside the largest piece of ink (the digit), or lie
    wholly within `reach` px of it (a line found on a reduced image is placed to its block size)."""
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
    along = ndimage.binary_dilation(removed, structure=np.ones((3, 3)), iterations=reach)
    hugging = np.bincount(labels[~along], minlength=count + 1) == 0
    drop = touching & ((areas < LINE_END_SHARE * areas[1:].max()) | hugging | comb_ticks(labels, areas)
                       | tick_pair(labels, areas, removed))
    drop[0] = False
    return np.where(drop[labels], 0, cleaned)


def tick_pair(labels: np.ndarray, areas: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Which pieces (by label) are a comb's two ticks standing on its base: thin upright pieces whose
    foot, and not their top, touches where a line was removed (`removed`), two of them of the same
    height and ink (within TICK_TWINS), whichever is the largest piece. An empty comb cell cropped
    with the base running on beyond its ticks left them to be read as a 1; a digit written between
    them is a piece of another size. (The two sides of a narrow 0 whose top and bottom were taken
    for lines touch them at both ends.)"""
    from scipy import ndimage

    pairs = np.zeros(len(areas), bool)
    boxes = ndimage.find_objects(labels)

    def standing(label: int, rows: slice, cols: slice) -> bool:
        piece = labels[rows, cols] == label
        near = removed[rows, cols]
        foot, top = slice(-LINE_MEET - 1, None), slice(0, LINE_MEET + 1)
        return bool((piece[foot] & near[foot]).any()) and not (piece[top] & near[top]).any()

    upright = [label for label, (rows, cols) in enumerate(boxes, start=1)
               if cols.stop - cols.start <= TICK_SHAPE * (rows.stop - rows.start) and standing(label, rows, cols)]
    heights = {label: boxes[label - 1][0].stop - boxes[label - 1][0].start for label in upright}
    for first, second in itertools.combinations(upright, 2):
        if (abs(heights[first] - heights[second]) <= TICK_TWINS * max(heights[first], heights[second])
                and abs(areas[first] - areas[second]) <= TICK_TWINS * max(areas[first], areas[second])):
            pairs[[first, second]] = True
    return pairs


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
