"""Per-image and dataset-level scores for binary segmentation masks.

Masks are 2-D numpy arrays: bool, or integers/floats holding only {0, 1} or {0, 255}.
Prediction and truth must have the same shape; compare them at the image's own resolution
(`helpers.inference.segmenter.upsample_logits` brings 352x352 model output there).

Empty cases, the same rule for every ratio in this module (IoU, Dice, pixel precision and
recall, clDice, boundary F1):

- prediction and truth both empty -> 1.0 (the image is "correctly empty");
- exactly one of them empty -> 0.0.

Every score here is about the foreground class only. The "iou" of `mean_scores` (the mIoU) is
the mean of per-image foreground IoU; no background IoU is averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pandas as pd
from skimage.morphology import skeletonize

from helpers.core.overlap import dice_from_counts, iou_from_counts
from helpers.inference.postprocess import as_binary

MODEL_SIZE = (352, 352)
PATCH_PX = 16  # one vision-tower patch side at MODEL_SIZE (real checkpoint and tiny model)


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = as_binary(pred, "pred")
    t = as_binary(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} does not match truth shape {t.shape}")
    return p, t


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: np.ndarray) -> np.ndarray:
    """num / den; where den == 0: 1.0 if `both_empty` else 0.0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(den > 0, out, np.where(both_empty, 1.0, 0.0))


def rates_from_counts(tp, fp, fn) -> dict[str, np.ndarray]:
    """IoU, Dice, precision and recall from pixel counts (scalars or arrays, vectorised).

    Empty cases follow the module rule: no predicted and no true pixels (tp = fp = fn = 0)
    -> 1.0; a zero denominator with the other side non-empty -> 0.0.
    """
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    both_empty = (tp + fp + fn) == 0
    return {
        "iou": iou_from_counts(tp, fp, fn),
        "dice": dice_from_counts(tp, fp, fn),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
    }


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Foreground pixel counts (tp, fp, fn)."""
    p, t = _pair(pred, truth)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return tp, fp, fn


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground IoU |P & T| / |P | T|. Both empty -> 1.0; one empty -> 0.0."""
    return float(rates_from_counts(*confusion_counts(pred, truth))["iou"])


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice 2|P & T| / (|P| + |T|). Both empty -> 1.0; one empty -> 0.0."""
    return float(rates_from_counts(*confusion_counts(pred, truth))["dice"])


def _skeleton(mask: np.ndarray) -> np.ndarray:
    skel = skeletonize(mask)
    # skeletonize keeps every component, but never trust an empty skeleton of a non-empty mask
    return skel if skel.any() or not mask.any() else mask


def cldice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Centreline Dice: harmonic mean of topology precision and sensitivity.

    Topology precision = |skel(P) & T| / |skel(P)|, sensitivity = |skel(T) & P| / |skel(T)|
    (skeletons from `skimage.morphology.skeletonize`). Both masks empty -> 1.0; exactly one
    empty -> 0.0; both non-empty but no overlap -> 0.0.
    """
    p, t = _pair(pred, truth)
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return 1.0
    if not p_any or not t_any:
        return 0.0
    sp, st = _skeleton(p), _skeleton(t)
    tprec = np.count_nonzero(sp & t) / np.count_nonzero(sp)
    tsens = np.count_nonzero(st & p) / np.count_nonzero(st)
    if tprec + tsens == 0:
        return 0.0
    return float(2 * tprec * tsens / (tprec + tsens))


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its 3x3 erosion (outside the image counts as empty).

    Treating outside as empty means a mask touching the image edge has a boundary there, so
    every non-empty mask has a non-empty boundary.
    """
    m = as_binary(mask).astype(np.uint8)
    eroded = cv2.erode(
        m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return (m & (1 - eroded)).astype(bool)


def _distance_to(points: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of `points`."""
    return cv2.distanceTransform(
        (~points).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )


def boundary_scores(
    pred: np.ndarray, truth: np.ndarray, tolerance: float = 2
) -> tuple[float, float, float]:
    """Boundary (precision, recall, F1) with boundary pixels matched within `tolerance` px.

    A predicted boundary pixel is matched when a true boundary pixel lies within Euclidean
    distance `tolerance` (distance transform), and vice versa for recall. `tolerance=0`
    asks for exact pixel matches. Empty cases: both masks empty -> (1, 1, 1); exactly one
    empty -> (0, 0, 0).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    p, t = _pair(pred, truth)
    bp, bt = boundary(p), boundary(t)
    n_p, n_t = np.count_nonzero(bp), np.count_nonzero(bt)
    if n_p == 0 and n_t == 0:
        return 1.0, 1.0, 1.0
    if n_p == 0 or n_t == 0:
        return 0.0, 0.0, 0.0
    precision = np.count_nonzero(_distance_to(bt)[bp] <= tolerance) / n_p
    recall = np.count_nonzero(_distance_to(bp)[bt] <= tolerance) / n_t
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return float(precision), float(recall), float(f1)


def boundary_f1(pred: np.ndarray, truth: np.ndarray, tolerance: float = 2) -> float:
    """Boundary F1 within `tolerance` pixels (see `boundary_scores`; 2 px by default)."""
    return boundary_scores(pred, truth, tolerance)[2]


@dataclass(frozen=True)
class ImageScores:
    """All scores of one image (foreground only; empty cases as in the module docstring)."""

    iou: float
    dice: float
    cldice: float
    bf1: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score_image(pred: np.ndarray, truth: np.ndarray, tolerance: float = 2) -> ImageScores:
    """Every per-image score of a binary prediction against its truth."""
    p, t = _pair(pred, truth)
    tp, fp, fn = confusion_counts(p, t)
    rates = rates_from_counts(tp, fp, fn)
    return ImageScores(
        iou=float(rates["iou"]),
        dice=float(rates["dice"]),
        cldice=cldice(p, t),
        bf1=boundary_f1(p, t, tolerance),
        precision=float(rates["precision"]),
        recall=float(rates["recall"]),
        tp=tp,
        fp=fp,
        fn=fn,
    )


def false_positives_near(pred: np.ndarray, truth: np.ndarray, patches: float = 1.0) -> float:
    """Share of the false-positive pixels that lie within `patches` model patches of the truth.

    A patch of the 352x352 model input covers `PATCH_PX * width / 352` photo pixels across and
    `PATCH_PX * height / 352` down, so "near" is measured in what the model sees. NaN when there
    is no false positive or no truth (nothing to measure).
    """
    p, t = _pair(pred, truth)
    fp = p & ~t
    if not fp.any() or not t.any():
        return float("nan")
    h, w = t.shape
    rx = max(1, round(patches * PATCH_PX * w / MODEL_SIZE[1]))
    ry = max(1, round(patches * PATCH_PX * h / MODEL_SIZE[0]))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * rx + 1, 2 * ry + 1))
    near = cv2.dilate(t.astype(np.uint8), kernel) > 0
    return float((fp & near).sum() / fp.sum())


ELONGATED = 2.0  # a region this many times longer than wide has an orientation


def missed_shape(pred: np.ndarray, truth: np.ndarray) -> tuple[str, float]:
    """Orientation and mean width (pixels) of the labelled pixels the prediction missed (FN).

    Orientation, from the second moments of the missed pixels: "vertical" or "horizontal"
    (major axis within 30 degrees of the image's axis), "diagonal", or "compact" when the
    region is less than `ELONGATED` times longer than wide; ("", NaN) when nothing is missed.
    Width = missed pixels / skeleton length (about the stroke width of a line).
    """
    p, t = _pair(pred, truth)
    fn = t & ~p
    if not fn.any():
        return "", float("nan")
    ys, xs = np.nonzero(fn)
    width = float(fn.sum() / max(1, int(_skeleton(fn).sum())))
    if len(xs) < 2:
        return "compact", width
    mu20, mu02 = np.var(xs), np.var(ys)
    mu11 = float(np.mean((xs - xs.mean()) * (ys - ys.mean())))
    spread = np.sqrt(((mu20 - mu02) / 2) ** 2 + mu11**2)
    major, minor = (mu20 + mu02) / 2 + spread, (mu20 + mu02) / 2 - spread
    if major < ELONGATED**2 * max(minor, 1 / 12):  # 1/12: the variance of one pixel's width
        return "compact", width
    angle = abs(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))  # 0 = along x
    if angle <= 30:
        return "horizontal", width
    if angle >= 60:
        return "vertical", width
    return "diagonal", width


SCORE_COLUMNS = ("iou", "dice", "cldice", "bf1", "precision", "recall")


def mean_scores(rows: pd.DataFrame, by: Sequence[str] | None = ("dataset",)) -> pd.DataFrame:
    """The one aggregation of per-image scores: a row per group of `by` (one row if empty).

    `rows` holds one scored image-prompt pair per row (with `image_id`). Columns, in this
    order: `by`; images (distinct image ids); pairs (rows); threshold (its mean, when the rows
    carry one and it is not in `by`); the mean of each of `SCORE_COLUMNS` the rows carry (so
    "iou" is the mIoU of the foreground class: no background IoU is averaged in); pooled_iou =
    sum tp / sum (tp + fp + fn) when the rows carry counts (large masks weigh more).
    """
    by = list(by or [])
    missing = {"image_id", *by} - set(rows.columns)
    if missing:
        raise ValueError(f"per-image scores lack columns {sorted(missing)}")
    grouped = rows.groupby(by, sort=True) if by else rows.assign(_all=0).groupby("_all")
    out = pd.DataFrame({"images": grouped["image_id"].nunique(), "pairs": grouped.size()})
    means = [c for c in ("threshold", *SCORE_COLUMNS) if c in rows.columns and c not in by]
    out = out.join(grouped[means].mean())
    if {"tp", "fp", "fn"} <= set(rows.columns):
        sums = grouped[["tp", "fp", "fn"]].sum()
        out["pooled_iou"] = rates_from_counts(sums["tp"], sums["fp"], sums["fn"])["iou"]
    return out.reset_index() if by else out.reset_index(drop=True)


def resize_truth(
    truth: np.ndarray, size: tuple[int, int] = MODEL_SIZE, method: str = "area"
) -> np.ndarray:
    """Truth at another resolution (height, width), e.g. the model's 352x352, as bool.

    method "area": cv2.INTER_AREA gives each output pixel the covered fraction of
    foreground, kept where >= 0.5 (thin lines narrower than half an output pixel vanish);
    "nearest": cv2.INTER_NEAREST samples one input pixel (thin lines break into dashes).
    Scoring at 352x352 is shown only for comparison: report scores at full resolution.
    """
    t = as_binary(truth, "truth")
    dsize = (int(size[1]), int(size[0]))
    if method == "area":
        frac = cv2.resize(t.astype(np.float32), dsize, interpolation=cv2.INTER_AREA)
        return frac >= 0.5
    if method == "nearest":
        return cv2.resize(t.astype(np.uint8), dsize, interpolation=cv2.INTER_NEAREST) > 0
    raise ValueError(f"unknown resize method {method!r}; use 'area' or 'nearest'")
