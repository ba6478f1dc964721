"""Seeded synthetic stand-ins for the two Roboflow COCO exports of the course.

`generate_demo_exports` writes, under one folder:

- `cracks/{train,valid,test}/`: polygon annotations of thin, branching cracks on painted
  wall, plaster and concrete, outlined loosely as annotators do (a margin of 1-4 px on each
  side, so annotated widths match the real export's: a median of about 10 px at the model's
  352 px input, where the drawn cracks alone are about 4 px), with unannotated look-alikes (scratches, stains, shadows,
  straight seams), images without any crack and a few annotations whose `segmentation` is
  empty (a quirk of the real export);
- `drywall-join/{train,valid}/`: box-only annotations (`segmentation: []`) over taped and
  mudded drywall seams;
- `drywall-join-seams/{train,valid}/<image stem>.png`: the true pixel masks of those seams,
  which a real export does not have (used to measure box-to-mask refinement).

The exports copy the real layout: compact JSON with `info`, `licenses`, `categories`
(id 0 is the placeholder supercategory, the class is id 1), `images`, `annotations`
(`area` is the box area, as Roboflow writes it), file names `<source>_jpg.rf.<32 hex>.jpg`
and each source photo exported 2-4 times as augmented variants (flip, 90-degree rotation,
colour jitter) spread over the export splits, so that the export's own split leaks. A couple
of photos are re-uploaded under another name with (near-)identical pixels.

Everything comes from `numpy.random.Generator`s derived from the seed: the same seed gives
byte-identical JSON and images.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from helpers.io import write_mask_png

GENERATOR_VERSION = 3
STAMP_NAME = "demo_stamp.json"
JPEG_QUALITY = 90
DATE_CREATED = "2025-06-02T09:15:00+00:00"
CRACK_FOLDER = "cracks"
TAPING_FOLDER = "drywall-join"
SEAM_FOLDER = "drywall-join-seams"
CRACK_SPLITS: dict[str, float] = {"train": 0.7, "valid": 0.2, "test": 0.1}
TAPING_SPLITS: dict[str, float] = {"train": 0.8, "valid": 0.2}
NO_CRACK_RATE = 0.15  # share of crack sources without any crack
DISTRACTOR_RATE = 0.2  # share of crack sources with unannotated crack look-alikes
EMPTY_SEGMENTATION_RATE = 0.02  # share of crack annotations written with `segmentation: []`
SPLIT_LEAK_RATE = 0.3  # share of non-train sources that also have a variant in train
OUTLINE_MARGIN = (1.0, 4.0)  # px at 320 px: how loosely a source's cracks are outlined
SUPERSAMPLE = 2  # cracks are drawn at this multiple of the image size, then traced

LICENSES = [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}]
CRACK_CATEGORIES = [
    {"id": 0, "name": "cracks", "supercategory": "none"},
    {"id": 1, "name": "crack", "supercategory": "cracks"},
]
TAPING_CATEGORIES = [
    {"id": 0, "name": "Drywall-Join", "supercategory": "none"},
    {"id": 1, "name": "drywall-join", "supercategory": "Drywall-Join"},
]


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo exports live."""

    root: Path
    cracks: Path
    taping: Path
    seam_masks: Path


def demo_paths(root: str | os.PathLike[str]) -> DemoPaths:
    """The `DemoPaths` of a demo folder (nothing is checked or written)."""
    root = Path(root)
    return DemoPaths(root, root / CRACK_FOLDER, root / TAPING_FOLDER, root / SEAM_FOLDER)


def generation_parameters(
    seed: int, image_size: int, n_crack_sources: int, n_taping_sources: int
) -> dict[str, int]:
    """The parameters that fully determine a demo folder (stored in its stamp)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "n_crack_sources": int(n_crack_sources),
        "n_taping_sources": int(n_taping_sources),
    }


# ----------------------------------------------------------------------------- textures


def _lowfreq(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
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
    lum = tone + 5 * _lowfreq(rng, size, 3) + 10 * _gradient(rng, size)
    lum += 2.2 * _noise(rng, size, 1.2 * s) + 1.2 * _noise(rng, size)
    return _with_colour(rng, lum)


def _plaster(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(165, 220)
    lum = tone + 6 * _lowfreq(rng, size, 4) + 12 * _gradient(rng, size)
    blotches = _lowfreq(rng, size, 9)
    lum -= rng.uniform(6, 14) * np.clip(blotches - 0.4, 0, None)
    lum += rng.uniform(3, 8) * np.clip(-blotches - 0.6, 0, None)
    lum += 3.5 * _noise(rng, size, 2.0 * s) + 1.8 * _noise(rng, size)
    return _with_colour(rng, lum)


def _concrete(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(110, 175)
    lum = tone + 8 * _lowfreq(rng, size, 4) + 14 * _gradient(rng, size)
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


def _drywall(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    tone = rng.uniform(192, 232)
    lum = tone + 4 * _lowfreq(rng, size, 3) + 14 * _gradient(rng, size)
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


def _line_layer(
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
        layer = _line_layer(size, centre - d, centre + d, float(rng.uniform(15, 35)), 1, 0.4 * s)
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
    img += _line_layer(size, p0, p1, -float(rng.uniform(18, 40)), thickness, 0.5 * s)[..., None]


DISTRACTORS: dict[str, Callable[[np.random.Generator, np.ndarray, float], None]] = {
    "scratch": _add_scratch,
    "stain": _add_stain,
    "shadow": _add_shadow,
    "seam": _add_seam,
}


# -------------------------------------------------------------------------------- cracks


def _crack_path(
    rng: np.random.Generator,
    mask: np.ndarray,
    start: np.ndarray,
    heading: float,
    length: float,
    width: float,
    s: float,
    depth: int,
) -> None:
    """Draw one random-walk crack (with branches) into the supersampled `mask`."""
    f = SUPERSAMPLE
    step = 4.0 * s
    n = max(3, int(length / step))
    base = heading
    points = [start.astype(np.float64)]
    headings = [heading]
    for _ in range(n):
        heading += rng.normal(0, 0.3)
        heading = base + 0.85 * (heading - base)
        d = np.array([np.cos(heading), np.sin(heading)]) * step * rng.uniform(0.6, 1.4)
        points.append(points[-1] + d)
        headings.append(heading)
    t = np.linspace(0, 1, n + 1)
    widths = width * np.sqrt(0.3 + 0.7 * np.sin(np.pi * np.clip(t * 1.05, 0, 1)))
    widths *= rng.uniform(0.8, 1.2, n + 1)
    for i in range(n):
        thickness = max(f, int(round(max(widths[i], s) * f)))
        p0 = tuple(int(v) for v in np.round(points[i] * f))
        p1 = tuple(int(v) for v in np.round(points[i + 1] * f))
        cv2.line(mask, p0, p1, 255, thickness, cv2.LINE_8)
    if depth >= 2:
        return
    n_branches = int(
        rng.choice([0, 1, 2, 3], p=[0.3, 0.35, 0.25, 0.1] if depth == 0 else [0.7, 0.3, 0.0, 0.0])
    )
    for _ in range(n_branches):
        i = int(rng.integers(n // 5, n))
        turn = rng.uniform(0.35, 1.1) * rng.choice([-1.0, 1.0])
        _crack_path(
            rng,
            mask,
            points[i],
            headings[i] + turn,
            length * rng.uniform(0.15, 0.45),
            max(s, 0.6 * widths[i]),
            s,
            depth + 1,
        )


def _draw_cracks(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    """A supersampled uint8 {0,255} mask of 1-3 cracks.

    COCO polygons cannot hold holes, so a crack whose branches close a loop larger than a few
    pixels (it would be annotated as a filled blob) is drawn again.
    """
    for _ in range(8):
        mask = _draw_crack_set(rng, size, s)
        if _largest_hole(mask) <= 6 * (SUPERSAMPLE * s) ** 2:
            break
    return mask


def _loosen(mask_big: np.ndarray, margin: float) -> np.ndarray:
    """The supersampled crack mask grown by `margin` image pixels on every side."""
    r = max(1, int(round(margin * SUPERSAMPLE)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask_big, disk)


def _largest_hole(mask: np.ndarray) -> float:
    """Area (supersampled pixels) of the largest hole enclosed by the mask."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return 0.0
    holes = [cv2.contourArea(c) for c, h in zip(contours, hierarchy[0], strict=True) if h[3] >= 0]
    return max(holes, default=0.0)


def _draw_crack_set(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    f = SUPERSAMPLE
    mask = np.zeros((size * f, size * f), np.uint8)
    for _ in range(int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))):
        if rng.random() < 0.5:  # enter from an edge
            side = int(rng.integers(0, 4))
            u = rng.uniform(0.1, 0.9) * size
            start = [
                np.array([u, 0.0]),
                np.array([size - 1.0, u]),
                np.array([u, size - 1.0]),
                np.array([0.0, u]),
            ][side]
            heading = np.pi / 2 + side * np.pi / 2 + rng.normal(0, 0.5)
        else:
            start = rng.uniform(0.15, 0.85, 2) * size
            heading = rng.uniform(0, 2 * np.pi)
        width = (1.0 + 7.0 * rng.beta(2.0, 2.5)) * s  # about 1-8 px at 320 px, mean ~4 px
        _crack_path(rng, mask, start, heading, rng.uniform(0.35, 1.2) * size, width, s, 0)
    return mask


def _trace_polygons(mask_big: np.ndarray, size: int) -> list[list[float]]:
    """COCO polygons (pixel coordinates of the final image) of the outlines of a mask."""
    f = SUPERSAMPLE
    contours, _ = cv2.findContours(mask_big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        approx = cv2.approxPolyDP(contour, 0.75, True).reshape(-1, 2).astype(np.float64)
        if len(approx) < 3:
            continue
        pts = np.clip((approx + 0.5) / f, 0, size)
        if abs(cv2.contourArea(pts.astype(np.float32))) < 1.0:
            continue
        polygons.append([_number(v) for v in pts.ravel()])
    polygons.sort(key=lambda p: (p[1], p[0]))
    return polygons


def _render_polygons(polygons: list[list[float]], size: int) -> np.ndarray:
    """Fill polygons exactly as COCO readers do (pycocotools); uint8 {0,1}."""
    if not polygons:
        return np.zeros((size, size), np.uint8)
    rles = mask_utils.frPyObjects(polygons, size, size)
    return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)


def _number(v: float) -> float | int:
    """Round like Roboflow: 3 decimals, whole numbers written as integers."""
    r = round(float(v), 3)
    return int(r) if r == int(r) else r


def _polygon_box(polygon: list[float], size: int) -> list[int]:
    xs, ys = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
    x0, y0 = int(np.floor(xs.min())), int(np.floor(ys.min()))
    x1, y1 = min(size, int(np.ceil(xs.max()))), min(size, int(np.ceil(ys.max())))
    return [x0, y0, max(1, x1 - x0), max(1, y1 - y0)]


# ------------------------------------------------------------------------------- seams


def _smooth_1d(rng: np.random.Generator, n: int, knots: int = 6) -> np.ndarray:
    return np.interp(np.linspace(0, knots - 1, n), np.arange(knots), rng.standard_normal(knots))


def _band_mask(
    rng: np.random.Generator, size: int, s: float, vertical: bool, centre: float, width: float
) -> np.ndarray:
    """uint8 {0,1} mask of one slightly tilted, slightly wavy seam band."""
    if rng.random() < 0.7:
        u0, u1 = -4.0, size + 4.0
    else:
        u0 = rng.uniform(-0.1, 0.4) * size
        u1 = min(size + 4.0, u0 + rng.uniform(0.45, 1.0) * size)
    u = np.linspace(u0, u1, 32)
    tilt = np.tan(np.deg2rad(rng.normal(0, 1.5)))
    v = centre + tilt * (u - size / 2)
    left = v - width / 2 - 0.8 * s * _smooth_1d(rng, len(u))
    right = v + width / 2 + 0.8 * s * _smooth_1d(rng, len(u))
    along = np.concatenate([u, u[::-1]])
    across = np.concatenate([left, right[::-1]])
    pts = np.stack([across, along] if vertical else [along, across], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 1, cv2.LINE_8, shift=2)
    return mask


def _seam_bands(rng: np.random.Generator, size: int, s: float) -> list[tuple[np.ndarray, float]]:
    """1-3 seam bands: vertical and horizontal, parallel or crossing."""
    n = int(rng.choice([1, 2, 3], p=[0.55, 0.35, 0.1]))
    first_vertical = bool(rng.random() < 0.6)
    bands: list[tuple[np.ndarray, float]] = []
    used: list[tuple[bool, float]] = []
    for i in range(n):
        vertical = first_vertical if i == 0 else bool(rng.random() < 0.5)
        for _ in range(20):
            centre = rng.uniform(0.15, 0.85) * size
            if all(o != vertical or abs(c - centre) > 0.3 * size for o, c in used):
                break
        else:
            continue
        used.append((vertical, centre))
        width = rng.uniform(8, 30) * s
        bands.append((_band_mask(rng, size, s, vertical, centre, width), width))
    return bands


def _render_seams(
    rng: np.random.Generator, lum: np.ndarray, bands: list[tuple[np.ndarray, float]], s: float
) -> np.ndarray:
    """Paint mud and tape over the bands: a tone shift, smoother texture, feathered edges."""
    size = lum.shape[0]
    for band, width in bands:
        b = band.astype(np.float32)
        feather = rng.uniform(0.6, 2.0) * s
        soft = cv2.GaussianBlur(b, (0, 0), feather)
        delta = rng.uniform(5, 16) * (1.0 if rng.random() < 0.7 else -1.0)
        mud = cv2.GaussianBlur(lum, (0, 0), 2.5 * s) + delta + 1.5 * _lowfreq(rng, size, 12)
        opacity = rng.uniform(0.75, 1.0)
        lum = lum * (1 - opacity * soft) + mud * opacity * soft
        if rng.random() < 0.4:  # visible tape edges
            edges = cv2.morphologyEx(band, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            lum -= rng.uniform(2, 5) * cv2.GaussianBlur(edges.astype(np.float32), (0, 0), 0.6)
        if rng.random() < 0.3:  # the crease down the middle of paper tape
            core = cv2.erode(band, np.ones((3, 3), np.uint8), iterations=max(1, int(width / 8)))
            crease = cv2.morphologyEx(core, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            lum -= 1.5 * crease.astype(np.float32)
    return lum


def _add_screw_spots(rng: np.random.Generator, lum: np.ndarray, s: float) -> None:
    """Small mud dots over screw heads along a stud line (not annotated)."""
    size = lum.shape[0]
    layer = np.zeros((size, size), np.float32)
    vertical = rng.random() < 0.5
    line = rng.uniform(0.1, 0.9) * size
    for pos in np.arange(rng.uniform(0, 0.2) * size, size, rng.uniform(0.2, 0.35) * size):
        x, y = (line, pos) if vertical else (pos, line)
        cv2.circle(layer, (int(x), int(y)), int(rng.uniform(3, 6) * s), 1.0, -1, cv2.LINE_AA)
    lum += rng.uniform(6, 14) * cv2.GaussianBlur(layer, (0, 0), 1.2 * s)


# ---------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One augmented export of a source photo."""

    hflip: bool = False
    rot90: int = 0
    contrast: float = 1.0
    brightness: float = 0.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def geometry(self, arr: np.ndarray) -> np.ndarray:
        """Apply the flip and rotation to an image or mask (first two axes)."""
        if self.hflip:
            arr = arr[:, ::-1]
        if self.rot90:
            arr = np.rot90(arr, self.rot90, axes=(0, 1))
        return np.ascontiguousarray(arr)

    def colour(self, img: np.ndarray) -> np.ndarray:
        """Apply the colour and brightness jitter to a float RGB image."""
        out = (img - 128.0) * self.contrast + 128.0 + self.brightness
        return out * np.asarray(self.gains, np.float32)[None, None, :]


ORIGINAL = Variant()


def _random_variant(rng: np.random.Generator) -> Variant:
    hflip = bool(rng.random() < 0.5)
    rot90 = int(rng.choice([0, 1, 2, 3], p=[0.4, 0.2, 0.2, 0.2]))
    if not hflip and rot90 == 0:
        hflip = bool(rng.random() < 0.5)
        rot90 = 0 if hflip else int(rng.integers(1, 4))
    return Variant(
        hflip,
        rot90,
        float(rng.uniform(0.85, 1.15)),
        float(rng.uniform(-15, 15)),
        tuple(float(g) for g in rng.uniform(0.95, 1.05, 3)),
    )


def _near_identical(rng: np.random.Generator) -> Variant:
    return Variant(brightness=float(rng.uniform(-4, 4)), contrast=float(rng.uniform(0.98, 1.02)))


def _encode_jpeg(img_rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(np.clip(np.round(img_rgb), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError("could not encode a JPEG image")
    return buf.tobytes()


# ------------------------------------------------------------------------------ planning


@dataclass
class SourcePlan:
    """A source photo: its name, content switches and where each exported variant goes."""

    index: int
    stem: str
    splits: list[str]
    content_index: int  # index of the source whose pixels it shows (differs for re-uploads)
    reupload: bool = False
    has_target: bool = True
    distractors: list[str] = field(default_factory=list)


def _source_names(rng: np.random.Generator, n: int, styles: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        style = styles[int(rng.integers(0, len(styles)))]
        digits = int(style.split(":0")[1][0]) if ":0" in style else 4
        name = style.format(int(rng.integers(1, 10**digits)))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _plan(
    rng: np.random.Generator, n_sources: int, split_fractions: dict[str, float], styles: list[str]
) -> list[SourcePlan]:
    """Names, variant counts and splits of every source, including leaks and re-uploads."""
    splits = list(split_fractions)
    counts = {
        sp: max(1, round(fr * n_sources)) for sp, fr in split_fractions.items() if sp != "train"
    }
    n_train = n_sources - sum(counts.values())
    if n_train < 1:
        raise ValueError(f"need more sources to fill the splits {splits}, got {n_sources}")
    homes = ["train"] * n_train + [sp for sp, c in counts.items() for _ in range(c)]
    homes = [homes[i] for i in rng.permutation(n_sources)]
    n_alias = min(2, max(1, round(n_sources / 20)))
    names = _source_names(rng, n_sources + n_alias, styles)
    plans = []
    for i in range(n_sources):
        n_variants = int(rng.integers(2, 5))
        plans.append(SourcePlan(i, names[i], [homes[i]] * n_variants, i))
    for split in splits[1:]:
        members = [p for p in plans if p.splits[0] == split]
        for j in rng.permutation(len(members))[: round(SPLIT_LEAK_RATE * len(members))]:
            p = members[int(j)]
            p.splits[int(rng.integers(1, len(p.splits)))] = "train"
    for k, j in enumerate(rng.permutation(n_sources)[:n_alias]):
        original = plans[int(j)]
        others = [sp for sp in splits if sp != original.splits[0]]
        where = others[int(rng.integers(0, len(others)))]
        plans.append(
            SourcePlan(
                n_sources + k,
                names[n_sources + k],
                [where, where],
                original.content_index,
                reupload=True,
            )
        )
    return plans


def _file_name(rng: np.random.Generator, stem: str) -> str:
    return f"{stem}_jpg.rf.{rng.bytes(16).hex()}.jpg"


def _source_rng(seed: int, dataset: int, index: int, purpose: int) -> np.random.Generator:
    """An independent generator per (seed, dataset, source, purpose); purpose 0 plans."""
    return np.random.default_rng(np.random.SeedSequence([seed, dataset, index, purpose]))


def _variants_of(rng: np.random.Generator, plan: SourcePlan) -> list[Variant]:
    if plan.reupload:
        return [ORIGINAL, _near_identical(rng)]
    return [ORIGINAL] + [_random_variant(rng) for _ in plan.splits[1:]]


# ------------------------------------------------------------------------------ writing


@dataclass
class _Entry:
    file_name: str
    extra_name: str | None
    annotations: list[dict[str, Any]]


def _write_export(
    folder: Path,
    entries: dict[str, list[_Entry]],
    categories: list[dict],
    rng: np.random.Generator,
    size: int,
    first_annotation_id: int,
    with_extra: bool,
    title: str,
) -> None:
    """Write `_annotations.coco.json` per split (images in shuffled order) and the READMEs."""
    for split, items in entries.items():
        images, annotations = [], []
        ann_id = first_annotation_id
        for image_id, k in enumerate(rng.permutation(len(items))):
            e = items[int(k)]
            image: dict[str, Any] = {
                "id": image_id,
                "license": 1,
                "file_name": e.file_name,
                "height": size,
                "width": size,
                "date_captured": DATE_CREATED,
            }
            if with_extra:
                image["extra"] = {"name": e.extra_name}
            images.append(image)
            for a in e.annotations:
                annotations.append({"id": ann_id, "image_id": image_id, **a})
                ann_id += 1
        data = {
            "info": {
                "year": DATE_CREATED[:4],
                "version": "1",
                "description": "Synthetic demo export in the Roboflow COCO layout",
                "contributor": "",
                "url": "https://public.roboflow.com/object-detection/undefined",
                "date_created": DATE_CREATED,
            },
            "licenses": LICENSES,
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        (folder / split / "_annotations.coco.json").write_text(text, encoding="utf-8")
    n_images = sum(len(v) for v in entries.values())
    (folder / "README.dataset.txt").write_text(
        f"# {title} > synthetic demo\n\nGenerated by helpers.data.synthetic "
        f"(version {GENERATOR_VERSION}).\nLicense: CC BY 4.0\n",
        encoding="utf-8",
    )
    (folder / "README.roboflow.txt").write_text(
        f"\n{title} - synthetic demo\n==============================\n\n"
        f"Synthetic images and annotations laid out like a Roboflow COCO export.\n\n"
        f"The dataset includes {n_images} images.\n"
        f"{title} are annotated in COCO format.\n",
        encoding="utf-8",
    )


def _build_cracks(root: Path, seed: int, size: int, n_sources: int) -> dict[str, int]:
    s = size / 320.0
    plan_rng = _source_rng(seed, 1, 0, 0)
    plans = _plan(
        plan_rng,
        n_sources,
        CRACK_SPLITS,
        ["IMG_{:04d}", "wall_{:03d}", "DSC{:05d}", "{:d}", "crack_{:04d}"],
    )
    originals = [p for p in plans if not p.reupload]
    order = plan_rng.permutation(len(originals))
    n_empty = round(NO_CRACK_RATE * len(originals))
    for j in order[:n_empty]:
        originals[int(j)].has_target = False
    for j in plan_rng.permutation(len(originals))[: round(DISTRACTOR_RATE * len(originals))]:
        kinds = list(DISTRACTORS)
        n = int(plan_rng.integers(1, 3))
        originals[int(j)].distractors = [kinds[int(i)] for i in plan_rng.permutation(4)[:n]]

    entries: dict[str, list[_Entry]] = {sp: [] for sp in CRACK_SPLITS}
    for sp in CRACK_SPLITS:
        (root / CRACK_FOLDER / sp).mkdir(parents=True)
    for plan in plans:
        content = plans[plan.content_index]
        crng = _source_rng(seed, 1, content.index, 1)
        kind = list(BACKGROUNDS)[int(crng.choice(3, p=[0.35, 0.35, 0.3]))]
        bg = BACKGROUNDS[kind](crng, size, s)
        for name in content.distractors:
            DISTRACTORS[name](crng, bg, s)
        cracks = _draw_cracks(crng, size, s) if content.has_target else None
        outline = None
        if cracks is not None:  # annotators outline a crack loosely: a margin on each side
            margin = _source_rng(seed, 1, content.index, 3).uniform(*OUTLINE_MARGIN) * s
            outline = _loosen(cracks, margin)
        depth = np.clip(crng.uniform(0.35, 0.65) * (1 + 0.25 * _lowfreq(crng, size, 6)), 0.15, 0.9)
        vrng = _source_rng(seed, 1, plan.index, 2)
        for split, variant in zip(plan.splits, _variants_of(vrng, plan), strict=True):
            img = variant.geometry(bg)
            annotations = []
            if cracks is not None:
                visible = _trace_polygons(variant.geometry(cracks), size)
                pixels = _render_polygons(visible, size).astype(np.float32)
                soft = np.maximum(cv2.GaussianBlur(pixels, (0, 0), 0.6), 0.85 * pixels)
                img = img * (1 - variant.geometry(depth) * soft)[..., None]
                polygons = _trace_polygons(variant.geometry(outline), size)
                for poly in polygons:
                    box = _polygon_box(poly, size)
                    annotations.append(
                        {
                            "category_id": 1,
                            "bbox": box,
                            "area": box[2] * box[3],
                            "segmentation": [poly],
                            "iscrowd": 0,
                        }
                    )
            name = _file_name(vrng, plan.stem)
            (root / CRACK_FOLDER / split / name).write_bytes(_encode_jpeg(variant.colour(img)))
            entries[split].append(_Entry(name, f"{plan.stem}.jpg", annotations))

    all_anns = [a for sp in CRACK_SPLITS for e in entries[sp] for a in e.annotations]
    n_quirk = max(1, round(EMPTY_SEGMENTATION_RATE * len(all_anns))) if all_anns else 0
    for j in plan_rng.permutation(len(all_anns))[:n_quirk]:
        all_anns[int(j)]["segmentation"] = []
    _write_export(root / CRACK_FOLDER, entries, CRACK_CATEGORIES, plan_rng, size, 1, True, "Cracks")
    return {sp: len(v) for sp, v in entries.items()}


def _build_taping(root: Path, seed: int, size: int, n_sources: int) -> dict[str, int]:
    s = size / 320.0
    plan_rng = _source_rng(seed, 2, 0, 0)
    plans = _plan(
        plan_rng,
        n_sources,
        TAPING_SPLITS,
        ["IMG_{:04d}_JPG", "IMG_{:04d}_JPG", "PXL_2024{:04d}", "drywall_{:03d}"],
    )
    entries: dict[str, list[_Entry]] = {sp: [] for sp in TAPING_SPLITS}
    for sp in TAPING_SPLITS:
        (root / TAPING_FOLDER / sp).mkdir(parents=True)
        (root / SEAM_FOLDER / sp).mkdir(parents=True)
    for plan in plans:
        crng = _source_rng(seed, 2, plan.content_index, 1)
        rgb = _drywall(crng, size, s)
        lum = rgb.mean(axis=2)
        cast = rgb - lum[..., None]
        if crng.random() < 0.5:
            _add_screw_spots(crng, lum, s)
        bands = _seam_bands(crng, size, s)
        lum = _render_seams(crng, lum, bands, s)
        if crng.random() < 0.2:  # a pencil mark
            p0 = crng.uniform(0.1, 0.9, 2) * size
            p1 = p0 + crng.normal(0, 0.1, 2) * size
            lum += _line_layer(size, p0, p1, -25.0, 1, 0.4 * s)
        img_src = lum[..., None] + cast
        vrng = _source_rng(seed, 2, plan.index, 2)
        for split, variant in zip(plan.splits, _variants_of(vrng, plan), strict=True):
            img = variant.geometry(img_src)
            truth = np.zeros((size, size), np.uint8)
            annotations = []
            for band, _ in bands:
                b = variant.geometry(band)
                truth |= b
                ys, xs = np.nonzero(b)
                if len(xs) == 0:
                    continue
                pad = [int(vrng.integers(0, int(3 * s) + 2)) for _ in range(4)]
                x0, y0 = max(0, int(xs.min()) - pad[0]), max(0, int(ys.min()) - pad[1])
                x1 = min(size, int(xs.max()) + 1 + pad[2])
                y1 = min(size, int(ys.max()) + 1 + pad[3])
                box = [x0, y0, x1 - x0, y1 - y0]
                annotations.append(
                    {
                        "category_id": 1,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "segmentation": [],
                        "iscrowd": 0,
                    }
                )
            name = _file_name(vrng, plan.stem)
            (root / TAPING_FOLDER / split / name).write_bytes(_encode_jpeg(variant.colour(img)))
            write_mask_png(root / SEAM_FOLDER / split / f"{Path(name).stem}.png", truth)
            entries[split].append(_Entry(name, None, annotations))
    _write_export(
        root / TAPING_FOLDER, entries, TAPING_CATEGORIES, plan_rng, size, 0, False, "Drywall-Join"
    )
    return {sp: len(v) for sp, v in entries.items()}


def generate_demo_exports(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    image_size: int = 320,
    n_crack_sources: int = 48,
    n_taping_sources: int = 36,
) -> DemoPaths:
    """Write both demo exports and the true seam masks under `out_dir`.

    The folder is built beside `out_dir` and renamed into place, so an interrupted run leaves
    `out_dir` as it was. An existing `out_dir` is replaced only if it is empty or holds an
    earlier demo (its stamp file); anything else raises `FileExistsError`.
    """
    out = Path(out_dir).resolve()
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64, got {image_size}")
    if n_crack_sources < 3 or n_taping_sources < 2:
        raise ValueError(
            f"need at least 3 crack and 2 taping sources, got {n_crack_sources}, {n_taping_sources}"
        )
    if out.exists() and any(out.iterdir()) and not (out / STAMP_NAME).is_file():
        raise FileExistsError(
            f"{out} exists and is not a demo folder (no {STAMP_NAME}); refusing to replace it"
        )
    params = generation_parameters(seed, image_size, n_crack_sources, n_taping_sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        counts = {
            CRACK_FOLDER: _build_cracks(tmp, int(seed), int(image_size), int(n_crack_sources)),
            TAPING_FOLDER: _build_taping(tmp, int(seed), int(image_size), int(n_taping_sources)),
        }
        stamp = {**params, "images": counts}
        (tmp / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        _swap_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return demo_paths(out)


def _swap_into_place(new: Path, out: Path) -> None:
    """Replace `out` by the finished folder `new` (keeping the old one until the rename)."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_stamp(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stamp of a demo folder, or None when missing or unreadable."""
    path = Path(out_dir) / STAMP_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
