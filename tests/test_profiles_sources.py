"""Profiles and the resolution of which exports a run reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers.core.paths import SHARED_ROBOFLOW_DIR
from helpers.course.profiles import PROFILES, get_profile
from helpers.course.smoke_cap import evaluation_cap, evaluation_manifest
from helpers.course.sources import resolve_sources


def test_demo_and_full_profiles_differ_in_data_and_model():
    demo, full = PROFILES["demo"], PROFILES["full"]
    assert demo.model == "tiny" and demo.cracks_export == demo.taping_export == ""
    assert full.model == "CIDAS/clipseg-rd64-refined"
    assert full.cracks_export and full.taping_export
    assert full.epochs > demo.epochs


def test_the_demo_evaluates_every_image_and_quick_is_the_demo_in_a_capped_epoch():
    from dataclasses import replace

    demo, quick = PROFILES["demo"], PROFILES["quick"]
    assert demo.eval_max_images is None  # make run's numbers cover every val/test image
    assert quick.epochs == 1 and quick.eval_max_images and quick.max_steps_per_epoch
    same = replace(quick, name="demo", epochs=demo.epochs, patience=demo.patience,
                   max_steps_per_epoch=None, eval_max_images=None)
    assert same == demo  # otherwise the demo's settings: what the quick run checks is the demo


def test_overrides_apply_and_empty_values_keep_the_profile():
    cfg = get_profile("demo", epochs=2, model="", cracks_export=None)
    assert cfg.epochs == 2 and cfg.model == "tiny" and cfg.cracks_export == ""


def test_unknown_profile_or_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="'laptop'"):
        get_profile("laptop")
    with pytest.raises(ValueError, match="epoch"):
        get_profile("demo", epoch=3)


def test_missing_export_folder_is_named(tmp_path):
    cfg = get_profile("full", cracks_export=str(tmp_path / "nowhere"), taping_export="")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_sources(cfg)


def test_real_exports_get_their_own_prepared_folder(shared_roboflow):
    cfg = get_profile(
        "full",
        cracks_export=str(shared_roboflow / "cracks.v1i.coco"),
        taping_export=str(shared_roboflow / "drywall-join-detect.v2i.coco"),
    )
    src = resolve_sources(cfg)
    assert src.name.startswith("custom-") and not src.is_demo
    assert src.seam_masks is None and src.prepared.name == src.name


def test_full_profile_is_sized_for_a_gpu_and_leaves_runtime_choices_to_the_runtime():
    full = PROFILES["full"]
    assert full.batch_size >= 32 and full.eval_batch_size >= 32
    assert full.device == "auto" and full.precision == "auto" and full.num_workers is None


def test_smoke_profile_runs_the_full_size_path_on_the_real_exports_briefly():
    smoke = PROFILES["smoke"]
    assert smoke.model == "full-size-random"
    assert Path(smoke.cracks_export) == SHARED_ROBOFLOW_DIR / "cracks.v1i.coco"
    assert Path(smoke.taping_export) == SHARED_ROBOFLOW_DIR / "drywall-join-detect.v2i.coco"
    assert smoke.epochs == 1 and 0 < smoke.max_steps_per_epoch <= 5
    assert smoke.eval_max_images is not None and smoke.eval_max_images <= 5


def test_device_and_precision_overrides_reach_the_profile():
    cfg = get_profile("smoke", device="cpu", precision="fp32")
    assert (cfg.device, cfg.precision) == ("cpu", "fp32")
    assert get_profile("smoke", device="", precision=None).device == "auto"


def _manifest() -> pd.DataFrame:
    rows = []
    for split, n in (("train", 7), ("val", 5), ("test", 6)):
        for dataset in ("cracks", "taping"):
            for i in range(n):
                rows.append(
                    {
                        "image_path": f"{dataset}/{split}/{i}.jpg",
                        "split": split,
                        "dataset": dataset,
                        "n_objects": 0 if i % 2 else 1,  # every other image is empty
                    }
                )
    return pd.DataFrame(rows)


def test_evaluation_cap_keeps_all_training_rows_and_n_labelled_images_per_split_and_class():
    manifest = _manifest()
    cfg = get_profile("demo", eval_max_images=2)
    kept = evaluation_manifest(manifest, cfg)
    sizes = kept.groupby(["split", "dataset"]).size().to_dict()
    assert sizes[("train", "cracks")] == sizes[("train", "taping")] == 7
    for split in ("val", "test"):
        assert sizes[(split, "cracks")] == sizes[(split, "taping")] == 2
    assert (kept[kept.split != "train"].n_objects > 0).all()  # labelled images first
    assert kept.equals(evaluation_manifest(manifest, cfg))  # deterministic for a seed
    info = evaluation_cap(manifest, kept, cfg)
    assert info["capped"] and info["max_images_per_split_and_class"] == 2
    assert info["evaluated"]["val"] == {"cracks": 2, "taping": 2}
    assert info["available"]["test"] == {"cracks": 6, "taping": 6}


def test_no_cap_changes_nothing_and_a_bad_cap_is_named():
    manifest = _manifest()
    cfg = get_profile("demo")
    assert evaluation_manifest(manifest, cfg) is manifest
    assert evaluation_cap(manifest, manifest, cfg)["capped"] is False
    with pytest.raises(ValueError, match="eval_max_images.*0"):
        evaluation_manifest(manifest, get_profile("demo", eval_max_images=0))
