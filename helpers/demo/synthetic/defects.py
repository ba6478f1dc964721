"""What the demo exports annotate: thin branching cracks (drawn supersampled, outlined loosely
and traced into polygons) and taped drywall seams (bands with their true pixel masks).
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from helpers.demo.synthetic.surfaces import lowfreq

OUTLINE_MARGIN = (1.0, 4.0)  # px at 320 px: how loosely a source's cracks are outlined
SUPERSAMPLE = 2  # cracks are drawn at this multiple of the image size, then traced


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


def draw_cracks(rng: np.random.Generator, size: int, s: float) -> np.ndarray:
    """A supersampled uint8 {0,255} mask of 1-3 cracks.

    COCO polygons cannot hold holes, so a crack whose branches close a loop larger than a few
    pixels (it would be annotated as a filled blob) is drawn again.
    """
    for _ in range(8):
        mask = _draw_crack_set(rng, size, s)
        if _largest_hole(mask) <= 6 * (SUPERSAMPLE * s) ** 2:
            break
    return mask


def loosen(mask_big: np.ndarray, margin: float) -> np.ndarray:
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


def trace_polygons(mask_big: np.ndarray, size: int) -> list[list[float]]:
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


def render_polygons(polygons: list[list[float]], size: int) -> np.ndarray:
    """Fill polygons exactly as COCO readers do (pycocotools); uint8 {0,1}."""
    if not polygons:
        return np.zeros((size, size), np.uint8)
    rles = mask_utils.frPyObjects(polygons, size, size)
    return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)


def _number(v: float) -> float | int:
    """Round like Roboflow: 3 decimals, whole numbers written as integers."""
    r = round(float(v), 3)
    return int(r) if r == int(r) else r


def polygon_box(polygon: list[float], size: int) -> list[int]:
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


def seam_bands(rng: np.random.Generator, size: int, s: float) -> list[tuple[np.ndarray, float]]:
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


def render_seams(
    rng: np.random.Generator, lum: np.ndarray, bands: list[tuple[np.ndarray, float]], s: float
) -> np.ndarray:
    """Paint mud and tape over the bands: a tone shift, smoother texture, feathered edges."""
    size = lum.shape[0]
    for band, width in bands:
        b = band.astype(np.float32)
        feather = rng.uniform(0.6, 2.0) * s
        soft = cv2.GaussianBlur(b, (0, 0), feather)
        delta = rng.uniform(5, 16) * (1.0 if rng.random() < 0.7 else -1.0)
        mud = cv2.GaussianBlur(lum, (0, 0), 2.5 * s) + delta + 1.5 * lowfreq(rng, size, 12)
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


def add_screw_spots(rng: np.random.Generator, lum: np.ndarray, s: float) -> None:
    """Small mud dots over screw heads along a stud line (not annotated)."""
    size = lum.shape[0]
    layer = np.zeros((size, size), np.float32)
    vertical = rng.random() < 0.5
    line = rng.uniform(0.1, 0.9) * size
    for pos in np.arange(rng.uniform(0, 0.2) * size, size, rng.uniform(0.2, 0.35) * size):
        x, y = (line, pos) if vertical else (pos, line)
        cv2.circle(layer, (int(x), int(y)), int(rng.uniform(3, 6) * s), 1.0, -1, cv2.LINE_AA)
    lum += rng.uniform(6, 14) * cv2.GaussianBlur(layer, (0, 0), 1.2 * s)


