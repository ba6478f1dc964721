"""The failure taxonomy: each category from its measured criterion, counts and causes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers.evaluate.failures import (
    CATEGORIES,
    PASSED,
    UNEXPLAINED,
    best_and_worst,
    best_image_sentences,
    categorise,
    failure_conclusion,
    failure_counts,
    fix_for,
    gallery_gaps,
    gallery_picks,
    hidden_passes,
    refinement_verdict,
    root_cause_table,
    taxonomy,
)


def row(
    iou=0.3, precision=0.5, recall=0.5, bf1=0.2, pred=0.1, truth=0.1, near=0.9, dataset="cracks"
):
    return SimpleNamespace(
        iou=iou, precision=precision, recall=recall, bf1=bf1, pred_fraction=pred,
        truth_fraction=truth, fp_near_share=near, dataset=dataset,
    )


@pytest.mark.parametrize(
    ("scores", "true_iou", "expected"),
    [
        (row(iou=0.0, truth=0.0), None, "false alarm on an empty image"),
        (row(iou=1.0, truth=0.0, pred=0.0), None, PASSED),
        (row(iou=0.8), None, PASSED),
        (row(iou=0.0, pred=0.0, recall=0.0), None, "missed object"),
        (row(iou=0.05, recall=0.05, precision=0.9), None, "missed object"),
        (row(iou=0.3, precision=0.3, recall=0.9, dataset="taping"), 0.5,
         "penalty from the box label"),
        (row(iou=0.3, precision=0.3, recall=0.9, dataset="taping"), 0.35,
         "over-segmentation: halo"),
        (row(iou=0.3, precision=0.4, recall=0.6, bf1=0.7), None, "boundary offset"),
        (row(iou=0.3, precision=0.3, recall=0.9), None, "over-segmentation: halo"),
        (row(iou=0.3, precision=0.3, recall=0.9, near=0.5), None, "over-segmentation: halo"),
        (row(iou=0.3, precision=0.3, recall=0.9, near=0.3), None, "over-segmentation: elsewhere"),
        (row(iou=0.3, precision=0.9, recall=0.3), None, "under-segmentation"),
        (row(iou=0.2, precision=0.3, recall=0.3, near=0.2), None, "wrong place"),
        # a mask whose false positives hug the object lies on it: not the wrong place
        (row(iou=0.2, precision=0.3, recall=0.3, near=0.9), None, "coarse mask on the object"),
        # most false positives lie farther out, but with the true positives most of the mask
        # is on or near the object (0.45 + 0.55 x 0.3 = 0.615): it lies on the object
        (row(iou=0.25, precision=0.45, recall=0.3, near=0.3), None, "coarse mask on the object"),
        (row(iou=0.45, precision=0.6, recall=0.6), None, UNEXPLAINED),
    ],
)
def test_each_category_follows_its_measured_criterion(scores, true_iou, expected):
    assert categorise(scores, true_iou) == expected


def frame(rows):
    return pd.DataFrame(
        [{**vars(r), "image_id": f"img{i}", "prompt": "p"} for i, r in enumerate(rows)]
    )


def test_counts_explained_share_and_root_causes_come_from_the_rows():
    scores = frame(
        [
            row(iou=0.3, precision=0.3, recall=0.9),  # over, halo
            row(iou=0.3, precision=0.3, recall=0.9),  # over, halo
            row(iou=0.45, precision=0.6, recall=0.6),  # unexplained
            row(iou=0.9, precision=0.9, recall=0.9),  # passed
            row(iou=0.3, precision=0.3, recall=0.9, dataset="taping"),  # box penalty
        ]
    )
    true = pd.DataFrame({"image_id": ["img4"], "prompt": ["p"], "iou": [0.6]})
    tax = taxonomy(scores, true)
    assert tax["category"].tolist()[-1] == "penalty from the box label"
    assert np.isnan(tax["true_iou"].iloc[0]) and tax["true_iou"].iloc[-1] == 0.6
    counts = failure_counts(tax)
    assert counts.loc["cracks", "images"] == 4 and counts.loc["cracks", "failing"] == 3
    assert counts.loc["cracks", "over-segmentation: halo"] == 2
    assert counts.loc["cracks", "over-segmentation: elsewhere"] == 0
    assert counts.loc["cracks", "explained_share"] == pytest.approx(2 / 3)
    assert counts.loc["taping", "explained_share"] == 1.0
    causes = root_cause_table(counts)
    assert causes.index[0] == "over-segmentation: halo"  # most frequent first
    assert set(causes.index) == {  # a category that never occurs is not blamed
        "over-segmentation: halo", UNEXPLAINED, "penalty from the box label"
    }
    assert causes.loc["over-segmentation: halo", "cracks images"] == 2
    assert set(CATEGORIES) >= set(causes.index)
    assert causes.loc["over-segmentation: halo", "criterion"].startswith("precision < 0.5")


def shaped(i, category_row, orientation="", width=np.nan, kind="polygon", dataset="cracks"):
    return {**vars(category_row), "dataset": dataset, "image_id": f"img{i}", "prompt": "p",
            "missed_orientation": orientation, "missed_width": width, "label_kind": kind}


def test_each_category_s_cause_is_written_from_its_own_rows():
    tax = taxonomy(pd.DataFrame([
        # halo: false positives near the object, two vertical seams of ~3 px missed in part
        shaped(0, row(precision=0.3, recall=0.9, near=0.8), "vertical", 3.0),
        shaped(1, row(precision=0.3, recall=0.9, near=0.7), "vertical", 5.0),
        # under-segmentation on a box label: a horizontal seam missed
        shaped(2, row(precision=0.9, recall=0.3, near=np.nan), "horizontal", 12.0, "box",
               "taping"),
        # false alarm on an empty wall covering 4 % of it
        shaped(3, row(iou=0.0, truth=0.0, pred=0.04, near=np.nan)),
    ]))
    table = root_cause_table(failure_counts(tax), tax)
    halo = table.loc["over-segmentation: halo", "measured"]
    assert halo.startswith("2 images") and "within a patch of the object in 2 of 2 and farther " \
        "away in 0" in halo
    assert "found a median 90% of the object) lie along: 2 vertical (median width 4.0 px)" in halo
    assert "labels: 2 polygon" in halo
    under = table.loc["under-segmentation", "measured"]
    assert "1 horizontal (median width 12.0 px)" in under and "labels: 1 box" in under
    alarm = table.loc["false alarm on an empty image", "measured"]
    assert "no labelled object" in alarm and "4.0% of the image" in alarm
    assert "median 4.0%" not in halo  # each sentence comes from its own rows only


def test_the_conclusion_names_the_leading_category_and_its_criterion():
    tax = taxonomy(frame([row(precision=0.3, recall=0.9)] * 3
                         + [row(precision=0.9, recall=0.3), row(iou=0.9, precision=0.9)]))
    text = failure_conclusion(failure_counts(tax))
    assert text.startswith("4 of 5 images fail")
    assert "for cracks 'over-segmentation: halo' (3 of 4 failing images)" in text
    assert "criterion: precision < 0.5, recall >= 0.5" in text
    assert "4 of the 4 meet the criterion of a named category" in text
    passed = taxonomy(frame([row(iou=0.9, precision=0.9)]))
    assert failure_conclusion(failure_counts(passed)).startswith("No image of 1 fails")


def test_gallery_takes_one_image_per_photo_and_keeps_false_alarms():
    tax = taxonomy(frame([
        row(iou=0.3, precision=0.3, recall=0.9),  # img0, photo A
        row(iou=0.1, precision=0.3, recall=0.9),  # img1, photo A (worse: the one shown)
        row(iou=0.2, precision=0.3, recall=0.9),  # img2, photo B
        row(iou=0.0, truth=0.0),  # img3, photo C: false alarm on an empty wall
        row(iou=0.9, precision=0.9),  # img4, passed
    ]))
    photo_of = {"img0": "A", "img1": "A", "img2": "B", "img3": "C", "img4": "D"}
    picks = gallery_picks(tax, photo_of, n=8)
    assert sorted(picks["image_id"]) == ["img1", "img2", "img3"]
    assert picks["group_id"].is_unique
    assert "false alarm on an empty image" in set(picks["category"])
    assert len(gallery_picks(tax, photo_of, n=2)) == 2
    assert set(gallery_picks(tax, photo_of, n=2)["category"]) == {
        "over-segmentation: halo", "false alarm on an empty image"}
    with pytest.raises(KeyError, match="img3"):
        gallery_picks(tax, {k: v for k, v in photo_of.items() if k != "img3"})


def test_a_rare_category_keeps_its_slot_when_a_worse_image_of_its_photo_is_another_category():
    halo = dict(precision=0.3, recall=0.9, near=0.8)
    tax = taxonomy(frame([
        row(iou=0.05, **halo),  # img0, photo A: the worst image of A
        row(iou=0.30, precision=0.3, recall=0.3, near=0.9),  # img1, photo A: the only coarse mask
        row(iou=0.10, **halo),  # img2, photo B
        row(iou=0.20, **halo),  # img3, photo C
    ]))
    assert tax.loc[1, "category"] == "coarse mask on the object"
    photo_of = {"img0": "A", "img1": "A", "img2": "B", "img3": "C"}
    picks = gallery_picks(tax, photo_of, n=3)
    assert picks["group_id"].is_unique
    assert set(picks["category"]) == {"coarse mask on the object", "over-segmentation: halo"}
    assert list(picks["image_id"]) == ["img1", "img2", "img3"]  # halo's worst left with photo A


def test_the_conclusion_says_what_each_class_s_count_means():
    rows = [row(precision=0.3, recall=0.9, near=0.1, dataset="taping")] * 3  # all taping fail
    rows += [row(precision=0.3, recall=0.9)] + [row(iou=0.9, precision=0.9)] * 3  # 1 of 4 cracks
    text = failure_conclusion(failure_counts(taxonomy(frame(rows))))
    assert "every taping test image fails (3 of 3)" in text
    assert "does not segment taping to the IoU >= 0.5 criterion" in text
    assert "1 of 4 cracks test images fail (3 pass): failures are the minority" in text
    # the leading category is read per class, never pooled over both
    assert ("for taping 'over-segmentation: elsewhere' (3 of 3 failing images): the model "
            "finds the object but also marks areas more than a patch away") in text
    assert "for cracks 'over-segmentation: halo' (1 of 1 failing images)" in text
    most = failure_conclusion(failure_counts(taxonomy(frame(
        [row(precision=0.3, recall=0.9)] * 2 + [row(iou=0.9, precision=0.9)]))))
    assert "most cracks test images fail (2 of 3; 1 pass)" in most


def test_passes_on_empty_walls_are_told_apart_from_labelled_images_that_pass():
    rows = [row(precision=0.3, recall=0.9)] * 4 + [row(iou=0.9, precision=0.9)]  # 1 of 5 passes
    rows += [row(iou=1.0, truth=0.0, pred=0.0)] * 2 + [row(iou=0.0, truth=0.0)]  # 2 quiet walls
    counts = failure_counts(taxonomy(frame(rows)))
    assert counts.loc["cracks", "empty"] == 3
    text = failure_conclusion(counts)
    assert ("most cracks test images fail (5 of 8; 3 pass: 1 of 5 labelled images reach IoU >= "
            "0.5, 2 of 3 empty walls stay empty under the class's prompt)") in text


def test_fixes_leave_out_tiles_for_photos_no_larger_than_the_model_input():
    assert "tile" in fix_for("missed object") and "tile" in fix_for("missed object", 640)
    small = fix_for("missed object", 320)
    assert "tile large photos" not in small and small.startswith("a lower threshold")
    assert "not a higher resolution or tiles: these photos (320 px on the longer side)" in small
    assert fix_for("under-segmentation", 320) == fix_for("under-segmentation")  # nothing to drop
    tax = taxonomy(frame([row(precision=0.3, recall=0.9)]))
    table = root_cause_table(failure_counts(tax), tax, photo_side=320)
    halo = table.loc["over-segmentation: halo", "fix"]
    suggested = halo.split("; not")[0]
    assert "tiles" not in suggested and "higher resolution" not in suggested
    assert halo.startswith("a loss that weighs false positives more")
    large = root_cause_table(failure_counts(tax), tax, photo_side=1408)
    assert large.loc["over-segmentation: halo", "fix"].startswith("predict at a higher resolution")


def test_a_fix_asking_for_negatives_names_the_negatives_the_run_already_draws():
    assert "already draws" not in fix_for("over-segmentation: elsewhere")
    said = fix_for("over-segmentation: elsewhere", negative_rate=1.0)
    assert said.endswith("this run already draws 1 negative pair(s) per image and epoch, so the "
                         "lever is more of them or harder ones")
    assert "already draws" not in fix_for("under-segmentation", negative_rate=1.0)


def test_best_and_worst_take_one_image_per_photo_and_never_the_same_photo_twice():
    scores = frame([
        row(iou=0.9), row(iou=0.8),  # img0, img1: photo A (best image of A is img0)
        row(iou=0.7),  # img2: photo B
        row(iou=0.1), row(iou=0.05),  # img3, img4: photo C (worst image of C is img4)
        row(iou=0.0, truth=0.0),  # img5: no label, never in the gallery
        row(iou=0.3, dataset="taping"),  # img6: photo D
    ])
    photo_of = {"img0": "A", "img1": "A", "img2": "B", "img3": "C", "img4": "C", "img5": "E",
                "img6": "D"}
    picks = best_and_worst(scores, photo_of, n=1)
    cracks = picks[picks["dataset"] == "cracks"]
    assert cracks[cracks["kind"] == "worst"]["image_id"].tolist() == ["img4"]  # C's worst copy
    assert cracks[cracks["kind"] == "best"]["image_id"].tolist() == ["img0"]  # A's best copy
    more = best_and_worst(scores, photo_of, n=2)
    cracks = more[more["dataset"] == "cracks"]
    assert cracks[cracks["kind"] == "worst"]["image_id"].tolist() == ["img4", "img2"]
    assert cracks[cracks["kind"] == "best"]["image_id"].tolist() == ["img0"]  # B is taken
    failing = best_and_worst(scores.assign(iou=scores["iou"] * 0.4), photo_of, n=1)
    assert "best" not in set(failing["kind"])  # no image passes: the best row says it fails
    assert set(failing["kind"]) == {"least bad (IoU < 0.5: fails)", "worst"}
    assert more[more["dataset"] == "taping"]["kind"].tolist() == ["worst"]
    assert "img5" not in set(more["image_id"])  # no label: never best or worst
    assert not more.duplicated(["dataset", "group_id"]).any()


def test_a_passing_image_of_a_photo_shown_among_the_worst_is_named():
    scores = frame([row(iou=0.6), row(iou=0.1),  # img0, img1: photo A passes and fails
                    row(iou=0.7), row(iou=0.3)])  # img2: photo B, img3: photo C
    photo_of = {"img0": "A", "img1": "A", "img2": "B", "img3": "C"}
    picks = best_and_worst(scores, photo_of, n=1)  # worst: A by img1; best: B by img2
    assert hidden_passes(picks, scores, photo_of) == [
        "cracks: 1 of the 2 passing images belong to photo A (shown among the worst by its "
        "worst copy, IoU 0.100): a photo whose copies both pass and fail is shown by its failure"]
    assert hidden_passes(best_and_worst(scores, photo_of, n=1), scores.iloc[1:], photo_of) == []


def test_best_image_sentence_says_when_even_the_best_image_fails():
    scores = frame([row(iou=0.31, dataset="taping"), row(iou=0.42, dataset="taping"),
                    row(iou=0.7), row(iou=0.2)])
    cracks, taping = best_image_sentences(scores)
    assert taping.startswith("taping: even the best of the 2 labelled test images scores IoU "
                             "0.420, below the failure cut-off 0.5; no taping image passes")
    assert cracks == ("cracks: 1 of 2 labelled test images reach IoU >= 0.5; the best scores "
                      "0.700")


def _gain(low, high, diff=0.08):
    common = {"dataset": "taping", "photos": 7, "pairs": 17, "level": 0.9}
    return pd.DataFrame([
        {**common, "mode": "rectangles", "iou": 0.19, "diff": 0.0, "diff_low": 0.0,
         "diff_high": 0.0},
        {**common, "mode": "refined", "iou": 0.27, "diff": diff, "diff_low": low,
         "diff_high": high},
    ])


@pytest.mark.parametrize(("low", "high", "said"), [
    (0.02, 0.15, "counts as a fix on these test photos"),
    (-0.03, 0.15, "includes 0, so by the criterion that it lie wholly above 0 the refinement is "
                  "not shown to be a fix: 7 photos"),
    (-0.2, -0.01, "made the model worse"),
])
def test_refinement_is_called_a_fix_only_when_its_interval_lies_above_zero(low, high, said):
    text = " ".join(refinement_verdict(_gain(low, high), 42, "lines", synthetic=False))
    assert said in text
    assert "from 0.190 to 0.270 (+0.080; 90% interval over 7 photos" in text
    assert "trained once (seed 42)" in text and "synthetic" not in text
    caveat = refinement_verdict(_gain(low, high), 42, "lines", synthetic=True)[-1]
    assert "synthetic" in caveat and "'lines' refiner" in caveat
    measured = refinement_verdict(_gain(low, high), 42, "lines", True, refined_iou=0.8745)[-1]
    assert "its masks reach a mean IoU of 0.875 against the true seams, not 1" in measured


# -- causes measured from stored probability maps: a fixture where each cause is known --------

SIDE = 176  # a model patch (16 px of 352) is 8 px here


def _band(y0, y1, x0, x1):
    m = np.zeros((SIDE, SIDE), bool)
    m[y0:y1, x0:x1] = True
    return m


LINE = _band(20, 151, 80, 84)  # a vertical crack, 4 px wide
STRIPES = np.logical_or.reduce([_band(y, y + 4, 110, 170) for y in range(10, 170, 20)])
SEAM = _band(80, 92, 10, 170)  # a horizontal taped seam, 12 px wide
CASES = {  # image: (class, label, prediction, objects, objects rendered from a box)
    "halo": ("cracks", LINE, _band(20, 151, 73, 91), 1, 0),  # a rim within a patch
    "elsewhere": ("cracks", LINE, LINE | STRIPES, 1, 0),  # other structures far away
    "partial": ("taping", SEAM, _band(80, 92, 10, 50), 1, 1),  # a quarter of the seam, on a box
    "empty": ("cracks", np.zeros((SIDE, SIDE), bool), _band(10, 30, 10, 30), 0, 0),
    "misplaced": ("cracks", LINE, _band(20, 51, 80, 84) | _band(100, 130, 120, 150), 1, 0),
}


@pytest.fixture
def stored(tmp_path):
    import cv2

    from helpers.evaluate.predictions import probability_path, write_probability
    from helpers.evaluate.stored import stored_scores

    rows = []
    for name, (cls, label, pred, objects, boxes) in CASES.items():
        mask_path = tmp_path / "masks" / f"{name}.png"
        mask_path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(mask_path), label.astype(np.uint8) * 255)
        prompt = "segment crack" if cls == "cracks" else "segment taping area"
        write_probability(probability_path(tmp_path / "store", "test", name, prompt),
                          pred.astype(np.float32))
        rows.append({"image_path": f"images/{name}.jpg", "mask_path": str(mask_path),
                     "dataset": cls, "split": "test", "n_objects": objects,
                     "n_box_fallbacks": boxes})
    prompts = {"cracks": ["segment crack"], "taping": ["segment taping area"]}
    return stored_scores(tmp_path / "store", pd.DataFrame(rows), {"cracks": 0.5, "taping": 0.5},
                         ["test"], prompts=prompts)


def test_stored_scores_carry_every_column_the_causes_are_written_from(stored):
    assert {"fp_near_share", "missed_orientation", "missed_width", "label_kind"} <= set(stored)
    kinds = dict(zip(stored["image_id"], stored["label_kind"], strict=True))
    assert kinds["partial"] == "box" and kinds["halo"] == "polygon" and pd.isna(kinds["empty"])


def test_each_category_s_measured_cause_matches_how_its_fixture_fails(stored):
    tax = taxonomy(stored)
    assert dict(zip(tax["image_id"], tax["category"], strict=True)) == {
        "halo": "over-segmentation: halo", "elsewhere": "over-segmentation: elsewhere",
        "partial": "under-segmentation", "empty": "false alarm on an empty image",
        "misplaced": "wrong place",
    }
    measured = root_cause_table(failure_counts(tax), tax)["measured"]
    assert "within a patch of the object in 1 of 1 and" in measured["over-segmentation: halo"]
    assert "labels: 1 polygon" in measured["over-segmentation: halo"]
    assert "within a patch of the object in 0 of 1 and farther away in 1" in measured[
        "over-segmentation: elsewhere"]
    partial = measured["under-segmentation"]
    assert "1 horizontal" in partial and "labels: 1 box" in partial
    assert float(partial.split("median width ")[1].split(" px")[0]) == pytest.approx(12, abs=1.5)
    misplaced = measured["wrong place"]
    assert "1 vertical" in misplaced and "labels: 1 polygon" in misplaced
    assert float(misplaced.split("median width ")[1].split(" px")[0]) == pytest.approx(4, abs=1)
    assert "no labelled object; the mask covers a median 1.3% of the image" in measured[
        "false alarm on an empty image"]


def test_a_category_the_gallery_cannot_show_is_named():
    tax = pd.DataFrame({
        "image_id": ["a1", "a2", "b1"], "dataset": "taping", "iou": [0.2, 0.3, 0.1],
        "category": ["over-segmentation: halo", UNEXPLAINED, "over-segmentation: elsewhere"],
    })
    photo_of = {"a1": "A", "a2": "A", "b1": "B"}  # the unexplained image shares photo A
    picks = gallery_picks(tax, photo_of, n=4)
    assert UNEXPLAINED not in set(picks["category"])
    assert gallery_gaps(picks, tax) == [
        "taping: not in the gallery: 'unexplained' (1 image) (one image per photo: its photos "
        "are shown under another category, or the slots ran out)"]
    assert gallery_gaps(gallery_picks(tax.iloc[[1, 2]], photo_of, n=4), tax.iloc[[1, 2]]) == []
