"""Grouping of augmented variants, leakage-free splitting and export leakage measurement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers.data.split import export_leakage, group_sources, group_split, split_sizes

DRYWALL = "drywall-join-detect.v2i.coco"


def _source_of(file_name: str) -> str:
    """Stem before `_jpg.rf.` (case-insensitive), as Roboflow names exported images."""
    match = re.match(r"(.+?)_(?:jpe?g|png)\.rf\.", file_name, flags=re.IGNORECASE)
    assert match, file_name
    return match.group(1).lower()


def _synthetic_frame(seed: int = 0) -> pd.DataFrame:
    """Two datasets, many sources with 1-8 variants each spread over export splits."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, n_sources in (("cracks", 90), ("taping", 50)):
        for s in range(n_sources):
            for v in range(int(rng.integers(1, 9))):
                rows.append(
                    {
                        "image_path": f"/nowhere/{dataset}/{s}_{v}.jpg",
                        "dataset": dataset,
                        "source_split": str(rng.choice(["train", "valid", "test"])),
                        "source_id": f"src{s:03d}",
                    }
                )
    df = pd.DataFrame(rows)
    df["group_id"] = group_sources(df, phash_distance=None)
    return df


def _pattern(seed: int, size: int = 96) -> np.ndarray:
    """A colour image with low-frequency structure (what a perceptual hash looks at)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 0.03, (size, size, 3)).astype(np.float32)
    return (np.clip(smooth + fine, 0, 1) * 255).astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def test_group_ids_join_same_source_within_a_dataset_only() -> None:
    df = pd.DataFrame(
        {
            "image_path": ["a", "b", "c", "d"],
            "dataset": ["cracks", "cracks", "cracks", "taping"],
            "source_split": ["train", "valid", "train", "train"],
            "source_id": ["wall7", "wall7", "wall2", "wall7"],
        }
    )
    groups = group_sources(df, phash_distance=None)
    assert list(groups) == ["cracks:wall7", "cracks:wall7", "cracks:wall2", "taping:wall7"]
    assert groups.index.equals(df.index)


def test_phash_joins_recoloured_and_flipped_copies_but_not_other_images(tmp_path: Path) -> None:
    base = _pattern(0)
    recoloured = np.clip(base.astype(np.float32) * 0.8 + np.array([30, 10, 0]), 0, 255)
    recoloured = recoloured.astype(np.uint8)
    paths = [
        _write(tmp_path / "photo_a.png", base),
        _write(tmp_path / "renamed_copy.png", recoloured),
        _write(tmp_path / "flipped_copy.png", recoloured[:, ::-1]),
    ]
    paths += [_write(tmp_path / f"other_{k}.png", _pattern(100 + k)) for k in range(12)]
    names = [Path(p).stem for p in paths]
    df = pd.DataFrame(
        {"image_path": paths, "dataset": "cracks", "source_split": "train", "source_id": names}
    )

    plain = group_sources(df)
    assert plain[0] == plain[1] == "cracks:photo_a"
    assert plain.iloc[3:].nunique() == 12 and not plain.iloc[3:].isin([plain[0]]).any()

    with_flips = group_sources(df, dihedral=True)
    assert with_flips[0] == with_flips[1] == with_flips[2] == "cracks:flipped_copy"
    assert with_flips.iloc[3:].nunique() == 12
    assert not with_flips.iloc[3:].isin([with_flips[0]]).any()


def test_phash_reports_unreadable_image(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    df = pd.DataFrame(
        {"image_path": [str(bad), str(bad)], "dataset": "cracks", "source_id": ["x", "y"]}
    )
    with pytest.raises(ValueError, match="broken.jpg"):
        group_sources(df)


def test_no_group_in_two_splits_and_each_dataset_near_70_15_15() -> None:
    df = _synthetic_frame()
    df["split"] = group_split(df, seed=3)
    assert (df.groupby("group_id")["split"].nunique() == 1).all()
    for _, sub in df.groupby("dataset"):
        share = sub["split"].value_counts(normalize=True)
        assert share["train"] == pytest.approx(0.70, abs=0.04)
        assert share["val"] == pytest.approx(0.15, abs=0.04)
        assert share["test"] == pytest.approx(0.15, abs=0.04)


def test_split_is_deterministic_by_seed_and_ignores_row_order() -> None:
    df = _synthetic_frame()
    first = group_split(df, seed=42)
    assert first.equals(group_split(df, seed=42))
    assert not first.equals(group_split(df, seed=43))
    shuffled = df.sample(frac=1.0, random_state=0)
    assert group_split(shuffled, seed=42).loc[df.index].equals(first)


def test_other_fractions_and_no_stratification() -> None:
    df = _synthetic_frame()
    split = group_split(df, seed=1, fractions=(0.8, 0.2, 0.0), stratify=None)
    share = split.value_counts(normalize=True)
    assert "test" not in share
    assert share["train"] == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize(
    "fractions, message",
    [
        ((0.7, 0.3), "three numbers"),
        ((0.7, 0.2, 0.2), "sum to 1"),
        ((1.1, -0.05, -0.05), ">= 0"),
        ((0.7, float("nan"), 0.3), "finite"),
        ((0.0, 0.5, 0.5), "train fraction"),
    ],
)
def test_bad_fractions_are_refused(fractions: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        group_split(_synthetic_frame(), fractions=fractions)


def test_split_needs_group_ids() -> None:
    df = _synthetic_frame().drop(columns="group_id")
    with pytest.raises(ValueError, match="group_sources"):
        group_split(df)


def test_export_leakage_on_a_hand_made_case() -> None:
    table = [
        ("cracks", "train", ["a", "b", "c", "d", "d"]),
        ("cracks", "valid", ["a", "e"]),
        ("cracks", "test", ["f"]),
        ("taping", "train", ["x", "y"]),
        ("taping", "valid", ["y", "y"]),
    ]
    rows = [
        {"dataset": d, "source_split": s, "source_id": src}
        for d, s, sources in table
        for src in sources
    ]
    df = pd.DataFrame(rows)
    df["group_id"] = df["source_id"].replace({"f": "a"})  # pretend f looks like a
    leak = export_leakage(df).set_index(["dataset", "split_a", "split_b", "key"])

    row = leak.loc[("cracks", "train", "valid", "source_id")]
    assert (row.n_a, row.n_b, row.n_shared, row.leak_fraction) == (4, 2, 1, 0.5)
    assert leak.loc[("cracks", "train", "test", "source_id")].n_shared == 0
    assert leak.loc[("cracks", "train", "test", "group_id")].leak_fraction == 1.0
    assert leak.loc[("cracks", "valid", "test", "group_id")].n_shared == 1
    assert leak.loc[("taping", "train", "valid", "source_id")].leak_fraction == 1.0
    assert len(leak) == 2 * (3 + 1)


def _drywall_frame(root: Path) -> pd.DataFrame:
    rows = []
    for split in ("train", "valid"):
        folder = root / DRYWALL / split
        coco = json.loads((folder / "_annotations.coco.json").read_text(encoding="utf-8"))
        for image in coco["images"]:
            rows.append(
                {
                    "image_path": str(folder / image["file_name"]),
                    "dataset": "taping",
                    "source_split": split,
                    "source_id": _source_of(image["file_name"]),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.realdata
def test_drywall_export_valid_shares_82_of_86_sources_with_train(shared_roboflow: Path) -> None:
    leak = export_leakage(_drywall_frame(shared_roboflow))
    row = leak[(leak.split_a == "train") & (leak.split_b == "valid")].iloc[0]
    assert (row.n_b, row.n_shared) == (86, 82)
    assert row.leak_fraction == pytest.approx(82 / 86)


@pytest.mark.realdata
def test_drywall_group_split_keeps_every_photo_in_one_split(shared_roboflow: Path) -> None:
    df = _drywall_frame(shared_roboflow)
    df["group_id"] = group_sources(df)
    # Flat walls hash alike; the default hash must not chain different photos together.
    assert df["group_id"].nunique() >= 0.9 * df["source_id"].nunique()
    df["split"] = group_split(df, seed=42)
    assert (df.groupby("group_id")["split"].nunique() == 1).all()
    assert (df.groupby("source_id")["split"].nunique() == 1).all()
    share = df["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.70, abs=0.05)
    assert share["val"] == pytest.approx(0.15, abs=0.05)
    assert share["test"] == pytest.approx(0.15, abs=0.05)


def test_split_sizes_count_photos_once_however_many_copies():
    manifest = pd.DataFrame({
        "split": ["test"] * 4 + ["val"] * 2,
        "dataset": ["cracks", "cracks", "cracks", "taping", "cracks", "taping"],
        "group_id": ["c:a", "c:a", "c:b", "t:a", "c:c", "t:b"],  # two copies of photo c:a
    })
    sizes = split_sizes(manifest)
    assert list(sizes.index) == ["val", "test"]  # in split order; absent splits left out
    assert sizes.loc["test", ("images", "cracks")] == 3
    assert sizes.loc["test", ("photos", "cracks")] == 2
    assert sizes.loc["val", ("photos", "taping")] == 1
