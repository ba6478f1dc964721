"""The prompt explorer: the plain computation, its widgets driven from Python, and headless runs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from helpers.core.io import write_mask_png
from helpers.core.progress import HEADLESS_ENV
from helpers.course import explorer as ex
from helpers.demo.tiny_model import build_tiny_model
from helpers.inference.segmenter import Segmenter


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for i in range(3):
        image = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(image)
        mask = write_mask_png(tmp_path / f"mask{i}.png", rng.random((40, 52)) < 0.3)
        rows.append({"image_path": str(image), "mask_path": str(mask), "dataset": "cracks",
                     "split": "test" if i < 2 else "val"})
    return pd.DataFrame(rows)


def _label(manifest, i=0):
    return np.asarray(Image.open(manifest["mask_path"][i])) > 0


def test_parse_prompts_splits_on_commas_and_lines():
    assert ex.parse_prompts(" segment crack,\nwall crack ,, \n") == ["segment crack", "wall crack"]


def test_explore_returns_maps_masks_and_iou(segmenter, manifest):
    image = np.asarray(Image.open(manifest["image_path"][0]).convert("RGB"))
    label = _label(manifest)
    out = ex.explore(segmenter, image, ["segment crack", "wall crack"], 0.5, label)
    assert out.probs.shape == out.masks.shape == (2, 40, 52)
    np.testing.assert_array_equal(out.masks, out.probs >= 0.5)
    everything = ex.explore(segmenter, image, ["segment crack"], 0.0, label)
    assert everything.foreground == [1.0]
    assert everything.ious[0] == pytest.approx(label.mean())  # all predicted: IoU = label share
    assert ex.explore(segmenter, image, ["segment crack"], 0.5).ious is None
    with pytest.raises(ValueError, match="does not match"):
        ex.explore(segmenter, image, ["segment crack"], 0.5, label[:-1])
    fig = ex.explorer_figure(image, out, label)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 4 + 2  # 2 rows, 4 panels, 2 bars
    plt.close(fig)


def test_widgets_recompute_when_prompts_threshold_and_image_change(segmenter, manifest, tmp_path):
    other = Segmenter(*build_tiny_model(seed=7))
    app = ex.PromptExplorer(segmenter, manifest, ["segment crack"], 0.5, compare=other)
    assert list(app.image.options) == [*(f"cracks: img{i}.png" for i in range(2)), ex.OWN_PHOTO]
    app.prompts.value = "segment crack, segment fracture"
    assert app.results["model"].prompts == ["segment crack", "segment fracture"]
    assert '"segment fracture"' in app.status.value
    app.threshold.value = 0.0
    assert app.results["model"].foreground == [1.0, 1.0]
    assert app.results["model"].ious[0] == pytest.approx(_label(manifest).mean())
    assert "100.0% foreground" in app.status.value
    app.threshold.value = 1.0
    assert app.results["model"].ious[0] < _label(manifest).mean()
    app.compare_box.value = True
    assert set(app.results) == {"model", "zero-shot"}
    assert not np.array_equal(app.results["model"].probs, app.results["zero-shot"].probs)
    app.image.value = "cracks: img1.png"
    assert app.results["model"].ious[0] == pytest.approx(
        ex.explore(segmenter, np.asarray(Image.open(manifest["image_path"][1]).convert("RGB")),
                   ["segment crack"], 1.0, _label(manifest, 1)).ious[0])
    app.image.value = ex.OWN_PHOTO  # no path yet: one line, no figure
    assert app.results == {} and "give the path" in app.status.value
    app.path.value = str(tmp_path / "missing.png")
    assert app.results == {} and "missing.png" in app.status.value
    app.path.value = manifest["image_path"][2]
    assert app.results["model"].ious is None and "IoU" not in app.status.value
    plt.close("all")


def test_headless_run_draws_the_example_and_waits_for_nothing(segmenter, manifest, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert ex.prompt_explorer(segmenter, manifest, ["segment crack"], 0.5) is None
    assert len(shown) == 1 and isinstance(shown[0], Figure)
    monkeypatch.delenv(HEADLESS_ENV)
    shown.clear()
    app = ex.prompt_explorer(segmenter, manifest, ["segment crack"], 0.5)
    assert isinstance(app, ex.PromptExplorer) and shown[-1] is app.widget
    with pytest.raises(ValueError, match="no test images"):
        ex.prompt_explorer(segmenter, manifest[manifest["split"] == "val"])
    plt.close("all")


def test_the_example_reads_the_zero_shot_model_against_the_trained_one():
    def result(ious, masks):
        masks = np.array(masks, dtype=bool)
        return ex.Exploration(["segment crack", "segment taping area"], 0.5,
                              masks.astype(np.float32), masks, ious)

    on, off = [[1, 1], [0, 0]], [[0, 0], [0, 0]]
    trained = result([0.540, 0.0], [on, off])
    zero_shot = result([0.554, 0.554], [on, on])
    text = ex.comparison_reading(trained, zero_shot, "zero-shot", "cracks")
    assert ('under "segment crack" the zero-shot model scores IoU 0.554 against the trained '
            "model's 0.540, about the same (within 0.02)") in text
    # the other class's prompt is read as false alarms, never as a better outline
    assert ('under "segment taping area", a prompt of another class, where anything marked is '
            "a false alarm, the trained model marks 0.0% of the photo and the zero-shot model "
            "50.0%") in text
    assert "0.554 against the trained model's 0.000" not in text
    assert "the trained model's mask changes with the prompt (up to 50.0% of the pixels" in text
    assert "zero-shot model's mask is almost the same under every prompt" in text
    better = ex.comparison_reading(trained, result([0.7, 0.0], [on, on]), "zero-shot", "cracks")
    assert "IoU 0.700 against the trained model's 0.540, higher" in better
    assert "One photo is a case, not a rate" in better
