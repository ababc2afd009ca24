"""Training augmentation aimed at writer variation, batched on the device: per-image random
affine + elastic distortion (one grid_sample), stroke width (thicker or thinner), blur; and, where
non-digits are trained, a marker-thick pen and a skipping pen.

Every function takes a float batch (N, 1, 28, 28) in [0, 1] and draws its parameters per
image; no Python loop over images, so it costs a few milliseconds per batch on a CPU.
"""

import math

import torch
from torch.nn import functional as F


def uniform(n: int, *shape: int, like: torch.Tensor, generator=None) -> torch.Tensor:
    return torch.rand(n, *shape, device=like.device, generator=generator)


def warp(x: torch.Tensor, generator=None, degrees: float = 10.0, scale=(0.9, 1.1), shear: float = 8.0,
         translate: float = 0.1, elastic: float = 0.08, lattice: int = 4) -> torch.Tensor:
    """Affine (rotation, scale, shear, shift as a share of the side) plus an elastic field: random
    displacements on a lattice x lattice grid, smoothly upsampled; `elastic` is the largest one in
    normalised units (0.08 is about 1.1 px). Hands differ in slant and in wobble: this draws both."""
    n = x.shape[0]
    angle = (uniform(n, like=x, generator=generator) * 2 - 1) * math.radians(degrees)
    slant = (uniform(n, like=x, generator=generator) * 2 - 1) * math.radians(shear)
    zoom = scale[0] + uniform(n, like=x, generator=generator) * (scale[1] - scale[0])
    shift = (uniform(n, 2, like=x, generator=generator) * 2 - 1) * (2 * translate)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(slant)
    linear = torch.stack([torch.stack([cos, cos * tan - sin], -1),
                          torch.stack([sin, sin * tan + cos], -1)], 1) / zoom[:, None, None]
    sampling = F.affine_grid(torch.cat([linear, shift[:, :, None]], 2), list(x.shape), align_corners=False)
    if elastic > 0:
        field = (uniform(n, 2, lattice, lattice, like=x, generator=generator) * 2 - 1) * elastic
        field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=True)
        sampling = sampling + field.permute(0, 2, 3, 1)
    return F.grid_sample(x, sampling, mode="bilinear", padding_mode="zeros", align_corners=False)


def dilate3(x: torch.Tensor) -> torch.Tensor:
    """3x3 maximum filter from shifted maxima: about ten times faster than max_pool2d on the CPU."""
    padded = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def rescale_peak(x: torch.Tensor) -> torch.Tensor:
    """Brightest pixel back to 1, as classify's preprocessing scales every digit's peak to 255."""
    return x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)


def stroke_width(x: torch.Tensor, generator=None, p: float = 0.5) -> torch.Tensor:
    """With probability p per image, blend by a random amount towards its 3x3 dilation (a thicker
    pen) or erosion (a thinner one), each half the time: MNIST's pens are all much alike."""
    n = x.shape[0]
    amount = uniform(n, 1, 1, 1, like=x, generator=generator)
    amount = amount * (uniform(n, 1, 1, 1, like=x, generator=generator) < p)
    thicker = uniform(n, 1, 1, 1, like=x, generator=generator) < 0.5
    target = torch.where(thicker, dilate3(x), -dilate3(-x))
    return rescale_peak(x + amount * (target - x))


def blur(x: torch.Tensor, generator=None, p: float = 0.3, sigma=(0.5, 1.2)) -> torch.Tensor:
    """With probability p per image, a separable 5-tap Gaussian blur of random sigma (soft scans,
    upscaled small images), as one grouped convolution per direction."""
    n, _, height, width = x.shape
    sigmas = sigma[0] + uniform(n, like=x, generator=generator) * (sigma[1] - sigma[0])
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigmas[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    identity = torch.zeros_like(kernel)
    identity[:, 2] = 1
    kernel = torch.where((uniform(n, like=x, generator=generator) < p)[:, None], kernel, identity)
    y = x.reshape(1, n, height, width)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0)), kernel[:, None, None, :], groups=n)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2)), kernel[:, None, :, None], groups=n)
    return rescale_peak(y.reshape(n, 1, height, width))


def heavy_pen(x: torch.Tensor, generator=None, p: float = 0.15) -> torch.Tensor:
    """With probability p per image, a much broader pen: the full 3x3 dilation. A network that
    learns blots as non-digits must still know a digit written with a marker."""
    heavy = uniform(x.shape[0], 1, 1, 1, like=x, generator=generator) < p
    return torch.where(heavy, dilate3(x), x)


def skipping_pen(x: torch.Tensor, generator=None, p: float = 0.15) -> torch.Tensor:
    """With probability p per image, a thin gap (0.8-2.4 px) across the strokes, along a line at any
    angle through the middle of the field, where the ink fades to 0-30%: a pen that skipped, a faint
    stroke broken by a scanner's threshold. A network that learns halves of digits as non-digits
    must still know a digit with a break in it (without this, 4.0% of such digits were rejected:
    tests/test_not_digit.py). Drawn before the stroke width, which narrows some gaps, as ink does."""
    n, _, height, width = x.shape
    angle = uniform(n, 1, 1, like=x, generator=generator) * math.pi
    centre = 8 + uniform(n, 2, 1, 1, like=x, generator=generator) * 12
    half_width = 0.4 + uniform(n, 1, 1, like=x, generator=generator) * 0.8
    fade = uniform(n, 1, 1, like=x, generator=generator) * 0.3
    rows = torch.arange(height, device=x.device, dtype=x.dtype)[:, None]
    cols = torch.arange(width, device=x.device, dtype=x.dtype)[None, :]
    distance = ((rows - centre[:, 0]) * torch.cos(angle) - (cols - centre[:, 1]) * torch.sin(angle)).abs()
    gapped = (distance < half_width) & (uniform(n, 1, 1, like=x, generator=generator) < p)
    return x * torch.where(gapped, fade, torch.ones_like(fade))[:, None]


def make_augment(elastic: float = 0.08, stroke_p: float = 0.5, blur_p: float = 0.3, heavy_p: float = 0.0,
                 skip_p: float = 0.0, generator=None):
    """uint8 (N, 28, 28) -> uint8 (N, 28, 28): affine + elastic, then a heavy pen (heavy_p), a
    skipping pen (skip_p), stroke width, then blur. The defaults but heavy_p and skip_p are
    smallbn's writer set (see the README)."""

    def augment(images: torch.Tensor) -> torch.Tensor:
        x = warp(images.unsqueeze(1).float() / 255.0, generator, elastic=elastic)
        if heavy_p:
            x = heavy_pen(x, generator, heavy_p)
        if skip_p:
            x = skipping_pen(x, generator, skip_p)
        if stroke_p:
            x = stroke_width(x, generator, stroke_p)
        if blur_p:
            x = blur(x, generator, blur_p)
        return (x.squeeze(1) * 255.0).round().clamp_(0, 255).to(torch.uint8)

    return augment
