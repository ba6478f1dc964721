"""The shared figure helpers draw what they promise."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.course.viz import bootstrap_bars, integer_ticks, probability_grid, save_figure  # noqa: E402


def test_probability_grid_has_one_colour_bar_on_a_fixed_scale(tmp_path):
    maps = [np.full((8, 8), 0.2, np.float32), np.linspace(0, 0.6, 64).reshape(8, 8)]
    fig = probability_grid(maps, titles=["a", "b"], threshold=0.4)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 2 and all(im.get_clim() == (0.0, 1.0) for im in images)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "probability"]
    assert len(bars) == 1 and 0.4 in bars[0].get_yticks()
    assert save_figure(fig, tmp_path / "p.png").stat().st_size > 0
    plt.close(fig)


def test_integer_ticks_on_a_count_axis():
    fig, ax = plt.subplots()
    ax.bar([0, 1], [1, 3])
    integer_ticks(ax, "y")
    fig.canvas.draw()
    ticks = ax.get_yticks()
    assert len(ticks) > 1 and np.allclose(ticks, np.round(ticks))
    with pytest.raises(ValueError, match="axis"):
        integer_ticks(ax, "z")
    plt.close(fig)


def test_bootstrap_bars_start_at_zero_with_the_interval_as_error_bars():
    boot = pd.DataFrame({
        "mode": ["lora", "lora", "full", "full"], "dataset": ["cracks", "taping"] * 2,
        "iou": [0.40, 0.55, 0.42, 0.50], "iou_low": [0.35, 0.50, 0.30, 0.45],
        "iou_high": [0.45, 0.60, 0.50, 0.58], "level": 0.9,
    })
    ax = bootstrap_bars(boot)
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 0.6
    assert "90 % interval" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lora", "full"]
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights == [0.40, 0.42, 0.50, 0.55]
    # each error bar spans the interval: the lora cracks bar goes from 0.35 to 0.45
    segments = [s for c in ax.collections for s in c.get_segments()]
    spans = sorted((round(s[0][1], 2), round(s[1][1], 2)) for s in segments)
    assert (0.35, 0.45) in spans and (0.30, 0.50) in spans
    with pytest.raises(ValueError, match="iou_low"):
        bootstrap_bars(boot.drop(columns="iou_low"))
    plt.close("all")
