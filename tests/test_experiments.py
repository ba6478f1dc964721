"""The course protocol's run cache: what makes two training runs the same."""

from __future__ import annotations

import pandas as pd

from helpers.experiments import _fingerprint, train_config
from helpers.profiles import get_profile


def _manifest(fraction: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_path": ["a.jpg", "b.jpg"],
            "mask_path": ["a.png", "b.png"],
            "split": ["train", "val"],
            "dataset": ["cracks", "taping"],
            "mask_fraction": [fraction, 0.1],
        }
    )


def test_fingerprint_follows_mask_content_and_training_settings() -> None:
    demo = get_profile("demo")
    cfg = train_config(demo, "lora")
    key = _fingerprint(demo, cfg, _manifest(0.02), None)
    assert key == _fingerprint(demo, train_config(demo, "lora"), _manifest(0.02), None)
    # regenerated masks under the same file names are new data
    assert key != _fingerprint(demo, cfg, _manifest(0.03), None)
    heavier_bce = train_config(demo, "lora", bce_weight=2.0)
    assert key != _fingerprint(demo, heavier_bce, _manifest(0.02), None)
    heavier = get_profile("demo", bce_weight=demo.bce_weight + 1)
    assert train_config(heavier, "lora").bce_weight == demo.bce_weight + 1
