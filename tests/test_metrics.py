"""Per-image scores on hand-computed cases, empty cases, and the resolution scores are taken at."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.evaluate.metrics import (
    boundary_f1,
    boundary_scores,
    cldice,
    dice,
    false_positives_near,
    iou,
    mean_scores,
    resize_truth,
    score_image,
)
from helpers.inference.segmenter import upsample_logits

# 4x4 hand case: pred covers columns 0-1 of rows 0-1, truth columns 1-2 of rows 0-1.
# tp = 2, fp = 2, fn = 2 -> IoU = 2/6, Dice = 4/8.
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
TRUTH = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)


def test_iou_and_dice_of_hand_case_in_every_mask_encoding():
    for enc in (lambda m: m, lambda m: m * 255, lambda m: m.astype(bool)):
        assert iou(enc(PRED), enc(TRUTH)) == pytest.approx(1 / 3)
        assert dice(enc(PRED), enc(TRUTH)) == pytest.approx(0.5)
    assert iou(PRED, PRED) == 1.0


@pytest.mark.parametrize("fn", [iou, dice, cldice, boundary_f1])
def test_empty_cases(fn):
    empty = np.zeros((4, 4), np.uint8)
    assert fn(empty, empty) == 1.0  # correctly empty
    assert fn(PRED, empty) == 0.0
    assert fn(empty, TRUTH) == 0.0


def test_bad_masks_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="not binary"):
        iou(np.full((4, 4), 0.5), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="2-D"):
        dice(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))


def _vline(x: int, width: int = 1, shape=(40, 40)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[5:35, x : x + width] = True
    return m


def test_cldice_of_lines():
    assert cldice(_vline(20), _vline(20)) == 1.0
    assert cldice(_vline(20), _vline(22)) == 0.0  # a 1-px line shifted by 2 px misses entirely
    # thin centreline prediction of a 3-px wide truth: topologically right, poor IoU
    thin, thick = _vline(20), _vline(19, width=3)
    assert iou(thin, thick) == pytest.approx(1 / 3)
    assert cldice(thin, thick) > 0.95


def _square(dx: int = 0) -> np.ndarray:
    m = np.zeros((30, 30), bool)
    m[10:20, 10 + dx : 20 + dx] = True
    return m


def test_boundary_f1_tolerance():
    assert boundary_f1(_square(), _square(), tolerance=0) == 1.0
    assert boundary_f1(_square(1), _square(), tolerance=2) == 1.0
    assert boundary_f1(_square(1), _square(), tolerance=0) < 1.0
    assert boundary_f1(_square(5), _square(), tolerance=2) < boundary_f1(_square(1), _square())
    precision, recall, f1 = boundary_scores(_square(), _square(), tolerance=0)
    assert precision == recall == f1 == 1.0


def test_score_image_fields_agree_with_functions():
    s = score_image(PRED * 255, TRUTH * 255)
    assert (s.tp, s.fp, s.fn) == (2, 2, 2)
    assert s.iou == pytest.approx(1 / 3) and s.dice == pytest.approx(0.5)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(0.5)
    assert s.cldice == cldice(PRED, TRUTH) and s.bf1 == boundary_f1(PRED, TRUTH)
    assert set(s.as_dict()) == {"iou", "dice", "cldice", "bf1", "precision", "recall",
                                "tp", "fp", "fn"}


def test_pooled_iou_differs_from_mean_iou():
    # image a: tp 90, fp 10 -> IoU 0.9; image b: tp 1, fn 9 -> IoU 0.1
    df = pd.DataFrame(
        [
            {"image_id": "a", "dataset": "cracks", "iou": 0.9, "dice": 90 / 95,
             "tp": 90, "fp": 10, "fn": 0},
            {"image_id": "b", "dataset": "cracks", "iou": 0.1, "dice": 2 / 11,
             "tp": 1, "fp": 0, "fn": 9},
            {"image_id": "c", "dataset": "taping", "iou": 1.0, "dice": 1.0,
             "tp": 5, "fp": 0, "fn": 0},
            {"image_id": "d", "dataset": "empty", "iou": 1.0, "dice": 1.0,
             "tp": 0, "fp": 0, "fn": 0},
        ]
    )
    table = mean_scores(df, by=["dataset"]).set_index("dataset")
    assert list(table.columns) == ["images", "pairs", "iou", "dice", "pooled_iou"]
    assert table.loc["cracks", "iou"] == pytest.approx(0.5)
    assert table.loc["cracks", "pooled_iou"] == pytest.approx(91 / 110)
    assert table.loc["cracks", "images"] == 2
    assert table.loc["taping", "iou"] == 1.0
    assert table.loc["empty", "pooled_iou"] == 1.0  # nothing predicted or true anywhere
    overall = mean_scores(df, by=None)
    assert len(overall) == 1 and overall.loc[0, "images"] == 4
    assert overall.loc[0, "pooled_iou"] == pytest.approx(96 / 115)
    with pytest.raises(ValueError, match="image_id"):
        mean_scores(df.drop(columns="image_id"))


def test_mean_scores_counts_images_once_across_prompts():
    rows = pd.DataFrame(
        [
            {"image_id": "a", "prompt": "p", "iou": 0.2, "cldice": 0.4, "threshold": 0.3},
            {"image_id": "a", "prompt": "q", "iou": 0.4, "cldice": 0.6, "threshold": 0.3},
            {"image_id": "b", "prompt": "p", "iou": 0.6, "cldice": 0.8, "threshold": 0.3},
        ]
    )
    table = mean_scores(rows, by=[])
    assert table.loc[0, ["images", "pairs"]].tolist() == [2, 3]
    assert table.loc[0, "iou"] == pytest.approx(0.4) and table.loc[0, "cldice"] == 0.6
    assert "pooled_iou" not in table  # no counts, no pooled score
    assert list(mean_scores(rows, by=["prompt"])["images"]) == [2, 1]


def test_upsample_logits_shapes_and_values():
    logits = torch.zeros(352, 352)
    out = upsample_logits(logits, (480, 640))
    assert out.shape == (480, 640) and out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor(0.5))
    batch = upsample_logits(torch.zeros(2, 3, 352, 352, dtype=torch.float16), (100, 50))
    assert batch.shape == (2, 3, 100, 50) and batch.dtype == torch.float32
    with pytest.raises(ValueError, match="size"):
        upsample_logits(logits, (0, 10))


def test_thin_line_scored_at_352_versus_full_resolution():
    # model output at 352: a 1-px line at column 176; the image is 3x larger (1056)
    logits = np.full((352, 352), -8.0, np.float32)
    logits[:, 176] = 8.0
    probs = upsample_logits(torch.from_numpy(logits), (1056, 1056)).numpy()
    pred_full = probs >= 0.5
    assert np.array_equal(np.flatnonzero(pred_full[500]), [528, 529, 530])
    truth = np.zeros((1056, 1056), bool)
    truth[:, 529] = True  # a 1-px crack at full resolution
    assert iou(pred_full, truth) == pytest.approx(1 / 3)
    # at 352 the 1-px line covers a third of each pixel and vanishes from the truth
    small = resize_truth(truth, (352, 352), method="area")
    assert not small.any()
    assert iou(logits >= 0, small) == 0.0
    with pytest.raises(ValueError, match="method"):
        resize_truth(truth, (352, 352), method="cubic")


def test_false_positives_near_are_measured_in_model_patches():
    truth = np.zeros((704, 352), bool)  # twice as tall as the model input: a patch is 32 px down
    truth[300:310, 100:110] = True
    pred = truth.copy()
    pred[300:310, 120:125] = True  # 10 px right of the object: within one 16 px patch across
    pred[340:342, 100:110] = True  # 30 px below: within one 32 px patch down
    assert false_positives_near(pred, truth) == 1.0
    pred[300:310, 127:137] = True  # 17-27 px right: beyond a patch across
    assert false_positives_near(pred, truth) == pytest.approx((50 + 20) / (50 + 20 + 100))
    assert np.isnan(false_positives_near(truth, truth))  # no false positive: nothing to measure


def test_missed_shape_gives_orientation_and_width_of_what_was_missed():
    from helpers.evaluate.metrics import missed_shape

    truth = np.zeros((60, 60), bool)
    truth[5:55, 20:23] = True  # a vertical seam 3 px wide
    pred = np.zeros_like(truth)
    orientation, width = missed_shape(pred, truth)
    assert orientation == "vertical" and 2.5 <= width <= 3.5
    assert missed_shape(pred, truth.T)[0] == "horizontal"
    assert missed_shape(pred, np.eye(60, dtype=bool))[0] == "diagonal"
    square = np.zeros_like(truth)
    square[10:30, 10:30] = True
    assert missed_shape(pred, square)[0] == "compact"
    assert missed_shape(truth, truth)[0] == ""  # nothing missed
