"""Small statistics shared by report (accuracy against labels) and train (the gain on held-back digits)."""

import math

MIN_MEASURED = 100  # fewer labelled digits than this give an interval too wide to tell a gain from chance


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> list[float]:
    """95% confidence interval of a proportion; sound near 0% and 100%, unlike the normal one."""
    if total == 0:
        return [0.0, 0.0]
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def overlap(first: list[float], second: list[float]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]
