"""Box -> seam mask refinement for the taping boxes (OpenCV, no learned model).

The taping export has boxes only, and a filled box is a coarse stand-in for a taped seam:
the seam is a long band of slightly different tone and smoother texture running along the
box's long axis, with plain wall on both flanks. Two refinements:

- "lines": profile across the box. Per row (for a box wider than tall; columns otherwise)
  take robust averages along the long axis of colour (CIE Lab) and of texture (absolute
  difference to the next pixel along the long axis). The band is the contiguous run of
  rows whose mean profile differs most from the rows outside it (a two-step,
  piecewise-constant fit found by exhaustive search with cumulative sums). Chunks along
  the long axis give a slope, so slightly tilted seams are followed; ends of the box where
  the band fades out are trimmed.
- "grabcut": `cv2.grabCut` (5 iterations) on a Gaussian-blurred crop around the box
  (blurring lets the colour models see the seam's tone rather than pixel noise). Outside
  the box is sure background, the centre third of the box across its short axis probable
  seam, the flanks probable background; the result is kept inside the box.

Guarantees: masks are uint8 {0, 255} of the image's shape and never leave the box. A box
with pixels inside the image never gives an empty mask: when no band stands out clearly
from the noise (or GrabCut finds nothing, or the box leaves no background around it for
GrabCut), or when the box is thinner than 3 px, the filled rectangle is returned, i.e.
the box is kept as it was. `refine_box_result` says which happened.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

METHODS = ("lines", "grabcut")
# Minimum band contrast (two-step fit statistic, in noise units) to accept a band.
MIN_BAND_SCORE = 40.0
# Profiles are computed on a copy whose short side is at most this many pixels.
MAX_SHORT_SIDE = 160


@dataclass(frozen=True)
class Refinement:
    """Mask of one box and how it was obtained (`fallback` is None when refined)."""

    mask: np.ndarray
    method: str
    fallback: str | None = None
    score: float = float("nan")


def box_region(
    box_xywh: Sequence[float], shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1), end-exclusive, of a COCO box clipped to the image.

    Every pixel the box touches is inside: x0 = floor(x), x1 = ceil(x + w).
    """
    if len(box_xywh) != 4:
        raise ValueError(f"box must be (x, y, w, h), got {box_xywh}")
    x, y, w, h = (float(v) for v in box_xywh)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise ValueError(f"box must be finite with w, h >= 0, got {box_xywh}")
    height, width = shape[:2]
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    return x0, y0, max(x0, x1), max(y0, y1)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB or (H, W), got shape {img.shape}")
    return img


def _features(crop_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 4) float32: Lab colour and texture |I(x+1) - I(x)| along axis 1 (the long axis)."""
    lab = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    grad = np.abs(np.diff(lab[:, :, 0], axis=1))
    grad = np.concatenate([grad, grad[:, -1:]], axis=1)
    return np.concatenate([lab, grad[:, :, None]], axis=2)


def _robust_profile(feat: np.ndarray) -> np.ndarray:
    """(R, C) mean of the middle half of values along axis 1 (robust to crossings)."""
    n = feat.shape[1]
    if n < 4:
        return np.nanmean(feat, axis=1)
    srt = np.sort(feat, axis=1)  # NaNs sort last
    valid = np.sum(~np.isnan(feat[:, :, 0]), axis=1)
    lo, hi = valid // 4, np.maximum(valid - valid // 4, valid // 4 + 1)
    idx = np.arange(n)[None, :]
    keep = (idx >= lo[:, None]) & (idx < hi[:, None])
    srt = np.where(keep[:, :, None], srt, 0.0)
    return srt.sum(axis=1) / np.maximum(hi - lo, 1)[:, None]


def _noise_scale(profile: np.ndarray) -> np.ndarray:
    """Per-feature noise level of a profile from the MAD of its first differences."""
    if profile.shape[0] < 3:
        return np.ones(profile.shape[1])
    d = np.abs(np.diff(profile, axis=0))
    sigma = 1.4826 * np.median(d, axis=0) / math.sqrt(2)
    return np.maximum(sigma, 0.1)


def _best_run(profile: np.ndarray, sigma: np.ndarray, min_width: int = 1) -> tuple[int, int, float]:
    """Run [a, b) of rows maximising n_in n_out / n |mean_in - mean_out|^2 (noise units)."""
    z = profile / sigma
    r = z.shape[0]
    cums = np.concatenate([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])
    total = cums[-1]
    a = np.arange(r + 1)[:, None]
    b = np.arange(r + 1)[None, :]
    n_in = (b - a).astype(np.float64)
    n_out = r - n_in
    ok = (n_in >= min_width) & (n_out >= 1)
    s_in = cums[None, :, :] - cums[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = s_in / n_in[:, :, None] - (total - s_in) / n_out[:, :, None]
        score = n_in * n_out / r * np.sum(diff**2, axis=2)
    score = np.where(ok, score, -np.inf)
    ia, ib = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(ia), int(ib), float(score[ia, ib])


def _shift_rows(feat: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Column x moved up by shifts[x] rows (NaN where it leaves the crop)."""
    r, w = feat.shape[:2]
    rows = np.arange(r)[:, None] + shifts[None, :]
    inside = (rows >= 0) & (rows < r)
    out = feat[np.clip(rows, 0, r - 1), np.arange(w)[None, :]]
    out[~inside] = np.nan
    return out


def _slope(feat: np.ndarray) -> float:
    """Band slope (rows per column) from band centres of chunks along the long axis."""
    r, w = feat.shape[:2]
    n_chunks = int(np.clip(w // max(r // 2, 16), 0, 8))
    if n_chunks < 3:
        return 0.0
    edges = np.linspace(0, w, n_chunks + 1).astype(int)
    xs, cs = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        profile = _robust_profile(feat[:, lo:hi])
        a, b, score = _best_run(profile, _noise_scale(profile))
        if score >= MIN_BAND_SCORE / 2:
            xs.append((lo + hi) / 2)
            cs.append((a + b) / 2)
    if len(xs) < 3:
        return 0.0
    x, c = np.array(xs), np.array(cs)
    inl = np.ones(len(x), bool)
    for _ in range(3):
        slope, icpt = np.polyfit(x[inl], c[inl], 1)
        res = np.abs(c - (slope * x + icpt))
        new = res <= max(2.0, 2.5 * np.median(res[inl]))
        if new.sum() < 3 or np.array_equal(new, inl):
            break
        inl = new
    return float(slope) if abs(slope) < 0.5 else 0.0


def _trim_ends(feat: np.ndarray, band: np.ndarray, out: np.ndarray) -> tuple[int, int]:
    """First and last+1 column where the band still differs from its flanks."""
    r, w = feat.shape[:2]
    if not out.any() or w < 3 * r:
        return 0, w
    f = np.nan_to_num(feat)
    cnt_in = np.maximum(band.sum(axis=0), 1)[:, None]
    cnt_out = np.maximum(out.sum(axis=0), 1)[:, None]
    m_in = (f * band[:, :, None]).sum(axis=0) / cnt_in
    m_out = (f * out[:, :, None]).sum(axis=0) / cnt_out
    d = m_in - m_out  # (W, C)
    ref = np.median(d, axis=0)
    norm = float(np.linalg.norm(ref))
    if norm == 0:
        return 0, w
    proj = d @ (ref / norm)
    k = max(3, r)
    smooth = np.convolve(proj, np.ones(k) / k, mode="same")
    strong = np.flatnonzero(smooth >= 0.5 * norm)
    if strong.size == 0:
        return 0, w
    return int(strong[0]), int(strong[-1]) + 1


def _lines_band(crop: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Band mask of a crop whose long axis is axis 1, and its score (None when too weak)."""
    feat = _features(crop)
    r, w = feat.shape[:2]
    if r < 3:
        return None, 0.0
    slope = _slope(feat)
    xs = np.arange(w)
    shifts = np.rint(slope * (xs - (w - 1) / 2)).astype(int)
    aligned = _shift_rows(feat, shifts)
    valid = ~np.isnan(aligned[:, :, 0])
    # rows of the aligned crop seen by at least half of the columns (a contiguous range)
    seen = np.flatnonzero(valid.mean(axis=1) >= 0.5)
    lo, hi = int(seen[0]), int(seen[-1]) + 1
    profile = _robust_profile(aligned[lo:hi])
    a, b, score = _best_run(profile, _noise_scale(profile))
    a, b = a + lo, b + lo
    if score < MIN_BAND_SCORE:
        return None, score
    rows = np.arange(r)[:, None] - shifts[None, :]
    band = (rows >= a) & (rows < b)
    in_run = np.broadcast_to((np.arange(r)[:, None] >= a) & (np.arange(r)[:, None] < b), (r, w))
    x0, x1 = _trim_ends(aligned, in_run & valid, ~in_run & valid)
    band[:, :x0] = False
    band[:, x1:] = False
    return (band if band.any() else None), score


def _refine_lines(crop: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Try the long axis (and the other one for near-square boxes); keep the stronger band."""
    h, w = crop.shape[:2]
    if min(h, w) < 3:
        return None, float("nan")  # too thin to hold a band and two flanks
    orientations = [w >= h]
    if max(h, w) < 1.5 * min(h, w):
        orientations.append(not orientations[0])
    best: tuple[np.ndarray | None, float] = (None, -np.inf)
    for horizontal in orientations:
        c = crop if horizontal else np.ascontiguousarray(crop.transpose(1, 0, 2))
        scale = min(1.0, MAX_SHORT_SIDE / c.shape[0])
        if scale < 1.0:
            size = (max(1, round(c.shape[1] * scale)), max(1, round(c.shape[0] * scale)))
            c = cv2.resize(c, size, interpolation=cv2.INTER_AREA)
        band, score = _lines_band(c)
        if band is not None and scale < 1.0:
            full = (crop.shape[1], crop.shape[0]) if horizontal else (crop.shape[0], crop.shape[1])
            band = cv2.resize(band.astype(np.uint8), full, interpolation=cv2.INTER_NEAREST) > 0
        if band is not None and not horizontal:
            band = band.T
        if score > best[1]:
            best = (band, score)
    return best


def _refine_grabcut(image: np.ndarray, region: tuple[int, int, int, int],
                    iterations: int) -> np.ndarray | None:
    """GrabCut on a blurred crop around the box; None when it finds nothing."""
    x0, y0, x1, y1 = region
    height, width = image.shape[:2]
    short = min(x1 - x0, y1 - y0)
    margin = max(10, short // 2)
    cx0, cy0 = max(0, x0 - margin), max(0, y0 - margin)
    cx1, cy1 = min(width, x1 + margin), min(height, y1 + margin)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1) or short < 3:
        return None  # no background around the box to learn from
    crop = cv2.cvtColor(image[cy0:cy1, cx0:cx1], cv2.COLOR_RGB2BGR)
    # colour models see tone, not texture: blur so the seam's tone shift beats pixel noise
    crop = np.ascontiguousarray(cv2.GaussianBlur(crop, (0, 0), float(np.clip(short / 16, 1.5, 4))))
    bx0, by0, bx1, by1 = x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0
    gc = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    gc[by0:by1, bx0:bx1] = cv2.GC_PR_BGD
    if bx1 - bx0 >= by1 - by0:  # centre third across the short axis: probable seam
        gc[by0 + (by1 - by0) // 3:by1 - (by1 - by0) // 3, bx0:bx1] = cv2.GC_PR_FGD
    else:
        gc[by0:by1, bx0 + (bx1 - bx0) // 3:bx1 - (bx1 - bx0) // 3] = cv2.GC_PR_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    inside = fg[by0:by1, bx0:bx1]
    return inside if inside.any() else None


def refine_box_result(
    image_rgb: np.ndarray,
    box_xywh: Sequence[float],
    method: str = "lines",
    grabcut_iterations: int = 5,
) -> Refinement:
    """Refine one box into a seam mask; see the module docstring for methods and fallbacks."""
    if method not in METHODS:
        raise ValueError(f"unknown refinement method {method!r}; choose from {METHODS}")
    img = _check_image(image_rgb)
    region = box_region(box_xywh, img.shape)
    x0, y0, x1, y1 = region
    mask = np.zeros(img.shape[:2], np.uint8)
    if x1 <= x0 or y1 <= y0:
        return Refinement(mask, method, fallback="box outside the image or empty")
    score = float("nan")
    if method == "lines":
        inside, score = _refine_lines(img[y0:y1, x0:x1])
    else:
        inside = _refine_grabcut(img, region, grabcut_iterations)
    if inside is None:
        mask[y0:y1, x0:x1] = 255
        return Refinement(mask, method, fallback="no band found: filled box", score=score)
    mask[y0:y1, x0:x1] = np.where(inside, np.uint8(255), np.uint8(0))
    return Refinement(mask, method, fallback=None, score=score)


def refine_box(
    image_rgb: np.ndarray, box_xywh: Sequence[float], method: str = "lines"
) -> np.ndarray:
    """Seam mask (uint8 {0, 255}, image shape) inside one COCO box (x, y, w, h)."""
    return refine_box_result(image_rgb, box_xywh, method).mask


def refine_boxes(
    image_rgb: np.ndarray, boxes: Iterable[Sequence[float]], method: str = "lines"
) -> np.ndarray:
    """Seam masks of several boxes of one image, OR-ed (uint8 {0, 255})."""
    img = _check_image(image_rgb)
    mask = np.zeros(img.shape[:2], np.uint8)
    for box in boxes:
        mask |= refine_box(img, box, method)
    return mask
