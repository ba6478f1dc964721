"""What notebooks 01-03 and 07 show a student: quiet processor loading, empty targets named as
such, split sizes in photos beside images, galleries with colour bars, generated summaries, and
a report whose new numbers come from the metrics files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.data.items import STATES, item_caption, target_state, target_states


def test_the_tiny_processor_loads_without_building_or_pretraining_the_model(
    tmp_path, monkeypatch
):
    from transformers import CLIPSegProcessor

    from helpers.demo.tokenizer import build_tiny_tokenizer
    from helpers.inference import loading
    from helpers.model.architecture import build_processor

    def no_build(*args, **kwargs):
        raise AssertionError("the tiny model was built (and its pretraining log printed)")

    monkeypatch.setattr(loading, "ensure_tiny_model", no_build)
    quiet = loading.load_processor("tiny")
    build_processor(build_tiny_tokenizer()).save_pretrained(tmp_path)  # as the tiny model's is
    saved = CLIPSegProcessor.from_pretrained(tmp_path)
    texts = ["segment crack", "segment taping area", "hairline fracture", "joint compound"]
    assert quiet.tokenizer(texts, padding=True)["input_ids"] == saved.tokenizer(
        texts, padding=True)["input_ids"]
    assert quiet.image_processor.to_dict() == saved.image_processor.to_dict()


FRAME = pd.DataFrame({"mask_fraction": [0.02, 0.0, 0.05]})


def item(index, negative=False, target=0.0, dataset="cracks", prompt="segment crack"):
    labels = torch.zeros(8, 8)
    labels[2, 2] = target
    return {"index": index, "is_negative": negative, "labels": labels, "dataset": dataset,
            "prompt": prompt}


@pytest.mark.parametrize(("it", "state"), [
    (item(0, target=0.4), "object"),  # a soft target counts: it is trained on
    (item(1), "no object in the image"),
    (item(2), "object cropped out"),
    (item(0, negative=True), "negative pair"),
])
def test_an_item_s_target_is_named_by_what_it_holds(it, state):
    assert target_state(it, FRAME) == state
    caption = item_caption(it, FRAME)
    assert caption.startswith('cracks: "segment crack"')
    if state in ("no object in the image", "object cropped out"):
        assert f"positive, EMPTY target: {state}" in caption
    assert ("EMPTY" in caption) == (state in ("no object in the image", "object cropped out"))


def test_target_states_count_every_item_of_the_epoch():
    class Items:
        frame = FRAME
        items = [item(0, target=1.0), item(1), item(2), item(0, negative=True)]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    counts = target_states(Items())
    assert list(counts.index) == list(STATES)
    assert counts.to_dict() == {"object": 1, "no object in the image": 1,
                                "object cropped out": 1, "negative pair": 1}


def test_split_figure_shows_photos_beside_images_with_whole_number_ticks():
    import matplotlib.pyplot as plt

    from helpers.course.viz import split_sizes_figure
    from helpers.data.split import split_sizes

    manifest = pd.DataFrame({
        "split": ["train"] * 6 + ["test"] * 5,
        "dataset": ["cracks"] * 11,
        "group_id": ["a", "a", "b", "c", "c", "c", "d", "d", "d", "e", "e"],
    })
    fig = split_sizes_figure(split_sizes(manifest), small=20, note="seed 42")
    ax = fig.axes[0]
    bars = {c.get_label(): [int(v) for v in c.datavalues] for c in ax.containers}
    assert bars == {"images": [6, 5], "photos": [3, 2]}  # train 6 from 3 photos, test 5 from 2
    assert sorted(t.get_text() for t in ax.texts) == ["2", "3", "5", "6"]  # each bar labelled
    assert ax.get_ylabel() == "count" and ax.get_xlabel() == "split"
    assert "photos" in ax.get_title() and "seed 42" in fig._suptitle.get_text()
    assert all(float(t).is_integer() for t in ax.get_yticks())
    plt.close(fig)


def test_displayed_manifests_name_no_machine_path():
    from helpers.core.paths import PROJECT_ROOT
    from helpers.course.viz import with_shown_paths

    frame = pd.DataFrame({"image_path": [str(PROJECT_ROOT / "data" / "x.jpg")],
                          "true_mask_path": [""], "n_objects": [1]})
    out = with_shown_paths(frame)
    assert out.loc[0, "image_path"] == "data/x.jpg" and out.loc[0, "true_mask_path"] == ""
    assert frame.loc[0, "image_path"].startswith(str(PROJECT_ROOT))  # the input is untouched


def test_a_gallery_row_has_a_colour_bar_and_names_its_category(tmp_path):
    import cv2
    import matplotlib.pyplot as plt

    from helpers.course.galleries import prediction_gallery
    from helpers.evaluate.predictions import probability_path, write_probability

    image, mask = tmp_path / "wall.png", tmp_path / "wall_mask.png"
    cv2.imwrite(str(image), np.full((32, 48, 3), 128, np.uint8))
    cv2.imwrite(str(mask), np.pad(np.full((4, 48), 255, np.uint8), ((14, 14), (0, 0))))
    write_probability(probability_path(tmp_path, "test", "wall", "segment crack"),
                      np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48))
    by_id = pd.DataFrame({"image_path": [str(image)], "mask_path": [str(mask)]},
                         index=["wall"])
    picks = pd.DataFrame([{"image_id": "wall", "dataset": "cracks", "split": "test",
                           "iou": 0.12, "precision": 0.2, "recall": 0.6, "truth_fraction": 0.1,
                           "pred_fraction": 0.5, "category": "over-segmentation: elsewhere"}])
    fig = prediction_gallery(picks, by_id, tmp_path, {"cracks": "segment crack"},
                             {"cracks": 0.35}, "cracks: failing test images")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 5 and titles[0].startswith("over-segmentation: elsewhere\nIoU 0.120")
    assert "t=0.35" in titles[2] and "t=0.35" in titles[3]
    (bar,) = fig.axes[2].child_axes  # the probability map's own colour bar, on the 0-1 scale
    assert bar.get_ylim() == (0.0, 1.0)
    assert 0.35 in [round(t, 2) for t in bar.get_yticks()]  # the threshold is marked
    plt.close(fig)


def test_summaries_state_each_number_with_its_criterion():
    from helpers.course.records import JointDataset, MaskRendering
    from helpers.course.summaries import run_summary

    joint = JointDataset(
        profile="demo", data="demo", seed=42, image_size=352, negative_rate=1.0,
        negatives_epoch0=189, groups_in_several_splits=0,
        split_images={"taping": {"train": 80, "val": 18, "test": 17}},
        split_photos={"taping": {"train": 24, "val": 5, "test": 7}},
        item_targets_epoch0={"object": 180, "no object in the image": 6,
                             "object cropped out": 3, "negative pair": 189},
    )
    text = " ".join(run_summary(joint))
    assert "test 17 images (7 photos: too few)" in text
    assert "train 80 images (24 photos);" in text  # 24 photos: not flagged
    joint.split_photos = {"taping": {"train": 24, "val": 21, "test": 20}}
    assert "too few" not in " ".join(run_summary(joint))  # no split flagged, no note
    assert "9 positive items have an empty target (6 images without an object, 3 with the " \
           "object cropped out)" in text
    masks = MaskRendering(profile="demo", data="demo", images={"cracks": 156},
                          objects={"cracks": 166}, box_fallbacks={"cracks": 3},
                          mean_mask_fraction={"cracks": 0.0213},
                          images_without_foreground={"cracks": 40})
    assert "predicting nothing would already score 97.87% pixel accuracy" in " ".join(
        run_summary(masks))


RUNTIME = {"device": "cpu", "gpu": None, "precision": "fp32", "num_workers": 0}


def _failure_analysis(**changes):
    from helpers.course.records import FailureAnalysis
    from helpers.evaluate.failures import refinement_verdict

    gain = pd.DataFrame([
        {"mode": "rectangles", "dataset": "taping", "photos": 7, "pairs": 17, "iou": 0.1946,
         "iou_low": 0.15, "iou_high": 0.24, "level": 0.9, "diff": 0.0, "diff_low": 0.0,
         "diff_high": 0.0},
        {"mode": "refined", "dataset": "taping", "photos": 7, "pairs": 17, "iou": 0.2731,
         "iou_low": 0.2, "iou_high": 0.33, "level": 0.9, "diff": 0.0785, "diff_low": -0.012,
         "diff_high": 0.16},
    ])
    values = dict(
        profile="demo", data="demo", model="tiny", seed=42, runtime=RUNTIME,
        peak_memory_mb=900.0, evaluation_cap={"capped": False}, mode="lora",
        thresholds_chosen_on_val={"cracks": 0.3, "taping": 0.25},
        test_images={"cracks": 23, "taping": 17}, test_photos={"cracks": 9, "taping": 7},
        fail_iou=0.5,
        taxonomy_counts={"taping": {"images": 17, "failing": 17,
                                    "over-segmentation: elsewhere": 17}},
        explained_share={"taping": 1.0}, root_causes=[],
        best_test_iou={"taping": 0.41},
        best_image_sentences=["taping: even the best of the 17 labelled test images scores IoU "
                              "0.410, below the failure cut-off 0.5"],
        refined_gain=gain.to_dict("records"),
        refinement_verdict=refinement_verdict(gain, 42, "lines", synthetic=True),
    )
    values.update(changes)
    return FailureAnalysis(**values)


def test_07_summary_says_what_the_counts_mean_and_calls_no_fix_without_its_criterion():
    from helpers.course.summaries import run_summary

    text = " ".join(run_summary(_failure_analysis()))
    assert "Every taping test image fails (17 of 17)" in text
    assert "empty image fails too" not in text  # no empty taping image: nothing to warn about
    empty = {"taping": {"images": 19, "empty": 2, "failing": 18,
                        "over-segmentation: elsewhere": 17, "false alarm on an empty image": 1}}
    assert "(a false alarm on an empty image fails too)" in " ".join(
        run_summary(_failure_analysis(taxonomy_counts=empty)))
    assert "even the best of the 17 labelled test images scores IoU 0.410" in text
    assert "from 0.195 to 0.273 (+0.079; 90% interval over 7 photos" in text
    assert "not shown to be a fix" in text and "counts as a fix" not in text
    assert "trained once (seed 42)" in text and "synthetic" in text  # the caveats travel along
    tied = {"taping": {"images": 4, "failing": 3, "over-segmentation: halo": 1,
                       "wrong place": 1, "unexplained": 1}}
    text = " ".join(run_summary(_failure_analysis(taxonomy_counts=tied)))
    assert "3 categories tie as the most common" in text and "most common category is" not in text


def test_07_report_section_shows_the_interval_and_caveats_from_recorded_numbers(tmp_path):
    from report_check import unbacked_numbers

    from helpers.course.course_report import build_report

    _failure_analysis().write_in(tmp_path)
    text = build_report(tmp_path, "demo").read_text()
    assert "paired gain" in text and "trained once (seed 42)" in text
    assert "synthetic" in text and "even the best of the 17" in text
    from helpers.data.split import SMALL_SPLIT

    assert unbacked_numbers(text, tmp_path, [SMALL_SPLIT]) == []  # the header's cut-off: 05's
