"""Wall surfaces for the demo exports: paint, plaster, concrete and drywall textures, and the
unannotated look-alikes (scratches, stains, shadows, straight seams) that make cracks hard.

Every function draws from the `numpy.random.Generator` it is given; `s` scales sizes with the
image (1.0 at 320 px).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

# ----------------------------------------------------------------------------- textures


def lowfreq(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise with about `cells` bumps across the image, roughly unit amplitude."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _noise(rng: np.random.Generator, size: int, sigma: float = 0.0) -> np.ndarray:
    """White noise, optionally blurred by `sigma` pixels, rescaled to unit standard deviation."""
    n = rng.standard_normal((size, size)).astype(np.float32)
    if sigma > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigma)
    return n / (float(n.std()) + 1e-6)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear ramp from -0.5 to 0.5 in a random direction (uneven lighting)."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    ramp = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)
    return ramp.astype(np.float32)


def _tint(rng: np.random.Generator) -> np.ndarray:
    """A small colour cast (warm, cool or neutral) added to a grey tone, RGB."""
    warm = rng.uniform(-1.0, 1.0)
    return np.array([4.0 * warm, 1.0 * warm, -4.0 * warm], np.float32) + rng.normal(0, 1.2, 3)


def _with_colour(rng: np.random.Generator, lum: np.ndarray) -> np.ndarray:
    """Turn a luminance field into an RGB float image with a colour cast."""
    return lum[..., None] + _tint(rng)[None, None, :]


def _paint(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(180, 235)
    lum = tone + 5 * lowfreq(rng, size, 3) + 10 * _gradient(rng, size)
    lum += 2.2 * _noise(rng, size, 1.2 * s) + 1.2 * _noise(rng, size)
    return _with_colour(rng, lum)


def _plaster(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(165, 220)
    lum = tone + 6 * lowfreq(rng, size, 4) + 12 * _gradient(rng, size)
    blotches = lowfreq(rng, size, 9)
    lum -= rng.uniform(6, 14) * np.clip(blotches - 0.4, 0, None)
    lum += rng.uniform(3, 8) * np.clip(-blotches - 0.6, 0, None)
    lum += 3.5 * _noise(rng, size, 2.0 * s) + 1.8 * _noise(rng, size)
    return _with_colour(rng, lum)


def _concrete(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(110, 175)
    lum = tone + 8 * lowfreq(rng, size, 4) + 14 * _gradient(rng, size)
    lum += 4.5 * _noise(rng, size, 0.8 * s) + 2.5 * _noise(rng, size)
    grains = np.zeros((size, size), np.float32)
    for _ in range(int(140 * s * s)):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        radius = max(1, int(round(rng.uniform(0.8, 3.5) * s)))
        cv2.circle(grains, centre, radius, float(rng.normal(0, 16)), -1, cv2.LINE_AA)
    for _ in range(int(50 * s * s)):  # pores: small dark dots
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        cv2.circle(grains, centre, max(1, int(round(s))), float(-rng.uniform(15, 35)), -1)
    lum += cv2.GaussianBlur(grains, (0, 0), 0.7)
    return _with_colour(rng, lum)


def drywall(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(192, 232)
    lum = tone + 4 * lowfreq(rng, size, 3) + 14 * _gradient(rng, size)
    fibre = cv2.GaussianBlur(
        rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigmaX=3.0 * s, sigmaY=0.6 * s
    )
    lum += 2.5 * fibre / (float(fibre.std()) + 1e-6) + 1.5 * _noise(rng, size)
    return _with_colour(rng, lum)


BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, float], np.ndarray]] = {
    "paint": _paint,
    "plaster": _plaster,
    "concrete": _concrete,
}


# --------------------------------------------------------------------------- distractors


def line_layer(
    size: int, p0: np.ndarray, p1: np.ndarray, value: float, thickness: int, blur: float
) -> np.ndarray:
    layer = np.zeros((size, size), np.float32)
    pts = (np.round(p0 * 16).astype(int), np.round(p1 * 16).astype(int))
    cv2.line(layer, tuple(pts[0]), tuple(pts[1]), value, thickness, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(layer, (0, 0), blur) if blur > 0 else layer


def _add_scratch(rng: np.random.Generator, img: np.ndarray, s: float) -> None:
    """Thin light straight lines (a few, roughly parallel)."""
    size = img.shape[0]
    angle = rng.uniform(0, np.pi)
    for _ in range(int(rng.integers(1, 4))):
        centre = rng.uniform(0.15, 0.85, 2) * size
        half = rng.uniform(0.15, 0.4) * size
        d = np.array([np.cos(angle), np.sin(angle)]) * half
        layer = line_layer(size, centre - d, centre + d, float(rng.uniform(15, 35)), 1, 0.4 * s)
        img += layer[..., None]
        angle += rng.normal(0, 0.08)


def _add_stain(rng: np.random.Generator, img: np.ndarray, s: float) -> None:
    """A soft darker, slightly brownish blob."""
    size = img.shape[0]
    blob = np.zeros((size, size), np.float32)
    centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
    axes = (int(rng.uniform(15, 60) * s), int(rng.uniform(10, 45) * s))
    cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), rng.uniform(6, 16) * s)
    strength = rng.uniform(12, 35)
    colour = np.array([0.8, 1.0, 1.35], np.float32)  # browner: less red lost than blue
    img -= strength * blob[..., None] * colour[None, None, :]


def _add_shadow(rng: np.random.Generator, img: np.ndarray, s: float) -> None:
    """A broad soft shadow edge across the image."""
    size = img.shape[0]
    ramp = _gradient(rng, size) * size
    edge = rng.uniform(-0.25, 0.25) * size
    width = rng.uniform(6, 30) * s
    shade = 1.0 / (1.0 + np.exp(-(ramp - edge) / width))
    img *= (1.0 - rng.uniform(0.15, 0.35) * shade)[..., None]


def _add_seam(rng: np.random.Generator, img: np.ndarray, s: float) -> None:
    """A long straight dark line across the whole image (formwork or panel joint)."""
    size = img.shape[0]
    vertical = rng.random() < 0.5
    pos = rng.uniform(0.1, 0.9) * size
    slope = rng.normal(0, 0.02) * size
    if vertical:
        p0, p1 = np.array([pos, -2.0]), np.array([pos + slope, size + 2.0])
    else:
        p0, p1 = np.array([-2.0, pos]), np.array([size + 2.0, pos + slope])
    thickness = int(rng.integers(1, 3))
    img += line_layer(size, p0, p1, -float(rng.uniform(18, 40)), thickness, 0.5 * s)[..., None]


DISTRACTORS: dict[str, Callable[[np.random.Generator, np.ndarray, float], None]] = {
    "scratch": _add_scratch,
    "stain": _add_stain,
    "shadow": _add_shadow,
    "seam": _add_seam,
}


