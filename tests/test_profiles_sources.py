"""Profiles and the resolution of which exports a run reads."""

from __future__ import annotations

import pytest

from helpers.datasources import resolve_sources
from helpers.profiles import PROFILES, get_profile


def test_demo_and_full_profiles_differ_in_data_and_model():
    demo, full = PROFILES["demo"], PROFILES["full"]
    assert demo.model == "tiny" and demo.cracks_export == demo.taping_export == ""
    assert full.model == "CIDAS/clipseg-rd64-refined"
    assert full.cracks_export and full.taping_export
    assert full.epochs > demo.epochs


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
