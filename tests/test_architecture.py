"""The architecture figure is drawn from the model's config and the LoRA placement."""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
from PIL import Image

from helpers.course.architecture import architecture_figure, figure_labels
from helpers.course.viz import save_figure
from helpers.demo.tiny_model import build_tiny_model
from helpers.model.modes import LoraSettings


def _config():
    return build_tiny_model()[0].config


def test_layers_and_adapters_follow_the_config(tmp_path):
    config = _config()  # 5 vision layers, decoder reads 1, 2, 3
    fig = architecture_figure(config)
    labels = figure_labels(fig)
    assert [t for t in labels if t.endswith("-> decoder")] == [
        "vision layer 1 -> decoder", "vision layer 2 -> decoder", "vision layer 3 -> decoder"
    ]
    assert [t for t in labels if t.endswith("(unused)")] == ["vision layer 4 (unused)"]
    # LoRA on vision layers 0..3 (the feeding ones), the text tower and each decoder block
    assert labels.count("LoRA q_proj/v_proj") == 4 + 1 + 3
    path = save_figure(fig, tmp_path / "architecture.png")
    assert Image.open(path).size[0] > 500
    plt.close(fig)

    other = copy.deepcopy(config)
    other.extract_layers = [0, 2]
    other.vision_config.num_hidden_layers = 6
    labels = figure_labels(architecture_figure(other, LoraSettings(parts=("vision",))))
    assert [t for t in labels if t.endswith("-> decoder")] == [
        "vision layer 0 -> decoder", "vision layer 2 -> decoder"
    ]
    assert [t for t in labels if t.endswith("(unused)")] == [
        "vision layer 3 (unused)", "vision layer 4 (unused)", "vision layer 5 (unused)"
    ]
    assert labels.count("LoRA q_proj/v_proj") == 3  # vision layers 0..2 only
    assert not any("decoder block 2" in t for t in labels)
    plt.close("all")
