"""Prompt lists, slugs and sampling; the joint dataset's items, negatives, augmentation, collate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import CLIPSegProcessor, ViTImageProcessor

from helpers.data.dataset import JointSegmentationDataset, make_collate, resize_soft_mask
from helpers.data.prompts import (
    DEFAULT_PROMPT,
    PROMPTS,
    class_of_prompt,
    prompt_slug,
    sample_prompt,
)

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def vit_processor() -> ViTImageProcessor:
    """The CLIPSeg image preprocessing, built without any files."""
    return ViTImageProcessor(
        size={"height": 352, "width": 352}, image_mean=list(MEAN), image_std=list(STD)
    )


@pytest.fixture(scope="module")
def real_processor(real_processor_dir: Path) -> CLIPSegProcessor:
    return CLIPSegProcessor.from_pretrained(real_processor_dir)


def _write_pair(folder: Path, name: str, square: tuple[int, int, int, int], seed: int) -> tuple:
    """An 80x60 image: dark noise with a bright square, and a mask equal to the square."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), dtype=np.uint8)
    x0, y0, x1, y1 = square
    image[y0:y1, x0:x1] = 255
    mask[y0:y1, x0:x1] = 255
    image_path, mask_path = folder / f"{name}.png", folder / f"{name}_mask.png"
    cv2.imwrite(str(image_path), image[:, :, ::-1])
    cv2.imwrite(str(mask_path), mask)
    return str(image_path), str(mask_path)


@pytest.fixture()
def manifest(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for k in range(8):
        dataset = "cracks" if k % 2 == 0 else "taping"
        image_path, mask_path = _write_pair(tmp_path, f"img{k}", (4 + k, 6, 30 + k, 25), k)
        split = "train" if k < 6 else "val"
        rows.append(
            {"image_path": image_path, "mask_path": mask_path, "dataset": dataset, "split": split}
        )
    return pd.DataFrame(rows)


def _many_rows(manifest: pd.DataFrame, n: int) -> pd.DataFrame:
    """A large manifest pointing at the same few files (for statistics over many items)."""
    train = manifest[manifest["split"] == "train"]
    return pd.concat([train] * (n // len(train) + 1), ignore_index=True).iloc[:n]


# ---------------------------------------------------------------- prompts


def test_prompt_lists_are_exact() -> None:
    assert PROMPTS == {
        "cracks": [
            "segment crack",
            "segment wall crack",
            "segment surface crack",
            "segment drywall crack",
            "segment fracture",
        ],
        "taping": [
            "segment taping area",
            "segment joint tape",
            "segment drywall seam",
            "segment drywall joint",
            "segment tape line",
        ],
    }
    assert DEFAULT_PROMPT == {"cracks": "segment crack", "taping": "segment taping area"}


def test_prompt_slug_and_class() -> None:
    assert prompt_slug("segment crack") == "segment_crack"
    assert prompt_slug("  Segment   Taping\tArea ") == "segment_taping_area"
    assert prompt_slug("segment crack/../x?") == "segment_crackx"
    for bad in ("", "   ", "???"):
        with pytest.raises(ValueError, match="file name"):
            prompt_slug(bad)
    assert class_of_prompt("segment fracture") == "cracks"
    assert class_of_prompt("Segment  drywall seam") == "taping"
    with pytest.raises(ValueError, match="unknown prompt"):
        class_of_prompt("segment window")


def test_prompt_sampling_is_deterministic_and_changes_with_epoch() -> None:
    epoch0 = [sample_prompt("cracks", 42, 0, i) for i in range(60)]
    assert epoch0 == [sample_prompt("cracks", 42, 0, i) for i in range(60)]
    assert set(epoch0) == set(PROMPTS["cracks"])
    epoch1 = [sample_prompt("cracks", 42, 1, i) for i in range(60)]
    assert sum(a != b for a, b in zip(epoch0, epoch1, strict=True)) > 20
    other_seed = [sample_prompt("cracks", 7, 0, i) for i in range(60)]
    assert other_seed != epoch0
    with pytest.raises(ValueError, match="windows"):
        sample_prompt("windows", 42, 0, 0)


# ---------------------------------------------------------------- dataset


def test_bad_inputs_name_the_problem(manifest: pd.DataFrame, vit_processor) -> None:
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        JointSegmentationDataset(manifest, "test", vit_processor)
    with pytest.raises(ValueError, match="mask_path"):
        JointSegmentationDataset(manifest.drop(columns="mask_path"), "train", vit_processor)
    with pytest.raises(ValueError, match="negative_rate"):
        JointSegmentationDataset(manifest, "train", vit_processor, negative_rate=1.5)
    with pytest.raises(ValueError, match="other than"):
        JointSegmentationDataset(
            manifest,
            "train",
            vit_processor,
            prompts={"cracks": ["segment crack"], "taping": []},
            negative_rate=0.2,
        )
    with pytest.raises(ValueError, match="no prompts for dataset 'taping'"):
        JointSegmentationDataset(manifest, "train", vit_processor, prompts={"cracks": ["x"]})


def test_item_matches_clipseg_processor_without_augmentation(
    manifest: pd.DataFrame, real_processor: CLIPSegProcessor
) -> None:
    ds = JointSegmentationDataset(manifest, "train", real_processor.image_processor)
    item = ds[2]
    image = Image.open(manifest.loc[2, "image_path"]).convert("RGB")
    expected = real_processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert item["pixel_values"].shape == (3, 352, 352)
    assert torch.allclose(item["pixel_values"], expected, atol=1e-5)
    assert item["labels"].shape == (352, 352) and item["labels"].dtype == torch.float32
    assert 0.0 <= float(item["labels"].min()) and float(item["labels"].max()) <= 1.0
    assert item["dataset"] == "cracks" and item["prompt"] in PROMPTS["cracks"]
    assert item["is_negative"] is False and item["index"] == 2


def test_prompts_change_with_set_epoch_and_repeat_for_a_seed(
    manifest: pd.DataFrame, vit_processor
) -> None:
    big = _many_rows(manifest, 40)
    ds = JointSegmentationDataset(big, "train", vit_processor, seed=5)
    first = [ds.pair(i) for i in range(len(ds))]
    ds.set_epoch(1)
    second = [ds.pair(i) for i in range(len(ds))]
    assert first != second
    again = JointSegmentationDataset(big, "train", vit_processor, seed=5)
    assert [again.pair(i) for i in range(len(again))] == first
    for (prompt, _), name in zip(first, big["dataset"], strict=True):
        assert class_of_prompt(prompt) == name


def test_negative_pairs_come_on_top_of_every_positive(
    manifest: pd.DataFrame, vit_processor
) -> None:
    big = _many_rows(manifest, 200)
    ds = JointSegmentationDataset(big, "train", vit_processor, negative_rate=0.3, seed=1)
    n = len(ds.frame)
    assert ds.n_negatives == round(0.3 * n) and len(ds) == n + ds.n_negatives
    pairs = [ds.pair(i) for i in range(len(ds))]
    assert [negative for _, negative in pairs] == [False] * n + [True] * ds.n_negatives
    # every image keeps its positive pair; negatives show distinct images, the other class
    images = [ds.image_of(i) for i in range(len(ds))]
    assert images[:n] == list(range(n))
    assert len(set(images[n:])) == ds.n_negatives
    for i, (prompt, negative) in enumerate(pairs):
        assert (class_of_prompt(prompt) != big["dataset"].iloc[images[i]]) == negative
    ds.set_epoch(1)
    assert [ds.image_of(i) for i in range(n, len(ds))] != images[n:]  # drawn afresh per epoch

    ds.set_epoch(0)
    item = ds[n]
    assert item["is_negative"] is True and item["index"] == images[n]
    assert float(item["labels"].abs().sum()) == 0.0
    assert class_of_prompt(item["prompt"]) != item["dataset"]
    with pytest.raises(IndexError):
        ds[len(ds)]

    plain = JointSegmentationDataset(big, "train", vit_processor, seed=1)
    assert len(plain) == n and not any(plain.pair(i)[1] for i in range(len(plain)))
    # turning negatives on leaves the positives' prompts as they were
    assert [plain.pair(i) for i in range(n)] == pairs[:n]


def test_augmentation_moves_image_and_mask_together(manifest: pd.DataFrame, vit_processor) -> None:
    ds = JointSegmentationDataset(manifest, "train", vit_processor, augment=True, jitter=0.0)
    plain = JointSegmentationDataset(manifest, "train", vit_processor)
    moved = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            item = ds[index]
            red = item["pixel_values"][0].numpy() * STD[0] + MEAN[0]
            bright, labels = red > 0.6, item["labels"].numpy()
            assert labels[bright].mean() > 0.9
            assert labels[~bright].mean() < 0.05
            moved += not torch.equal(item["labels"], plain[index]["labels"])
    assert moved > 10


def test_collate_shapes_and_tokens(manifest: pd.DataFrame, real_processor) -> None:
    ds = JointSegmentationDataset(
        manifest, "train", real_processor.image_processor, size=224, negative_rate=0.5
    )
    items = [ds[i] for i in range(4)]
    items[0]["prompt"] = "segment crack"
    batch = make_collate(real_processor.tokenizer)(items)
    assert batch["pixel_values"].shape == (4, 3, 224, 224)
    assert batch["labels"].shape == (4, 224, 224)
    length = batch["input_ids"].shape[1]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, length)
    assert batch["input_ids"][0, :4].tolist() == [49406, 15615, 10334, 49407]
    assert batch["attention_mask"][0].tolist() == [1] * 4 + [0] * (length - 4)
    assert batch["prompts"][0] == "segment crack"
    assert batch["datasets"] == [item["dataset"] for item in items]
    assert batch["is_negative"].dtype == torch.bool
    assert batch["is_negative"].tolist() == [item["is_negative"] for item in items]
    assert batch["indices"].dtype == torch.long and batch["indices"].tolist() == [0, 1, 2, 3]


def test_size_is_configurable(manifest: pd.DataFrame, vit_processor) -> None:
    item = JointSegmentationDataset(manifest, "val", vit_processor, size=224)[0]
    assert item["pixel_values"].shape == (3, 224, 224)
    assert item["labels"].shape == (224, 224)


def test_thin_line_survives_downscaling_as_soft_values() -> None:
    mask = np.zeros((640, 640), dtype=np.float32)
    mask[:, 301] = 1.0  # a crack one pixel wide
    soft = resize_soft_mask(mask, 352)
    column = soft[:, soft.max(axis=0) > 0]
    assert 0.0 < soft.max() < 1.0
    assert (column.max(axis=1) > 0).all()  # continuous from top to bottom
    assert soft.sum() == pytest.approx(mask.sum() * (352 / 640) ** 2, rel=0.02)


def test_summary_and_repr(manifest: pd.DataFrame, vit_processor) -> None:
    ds = JointSegmentationDataset(manifest, "train", vit_processor, negative_rate=0.2)
    text = repr(ds)
    assert "split='train'" in text and "n=6" in text and "cracks 3" in text
    assert ds.summary().loc["taping", "images"] == 3


def test_mask_of_wrong_size_is_reported(manifest: pd.DataFrame, vit_processor) -> None:
    cv2.imwrite(manifest.loc[0, "mask_path"], np.zeros((10, 10), np.uint8))
    ds = JointSegmentationDataset(manifest, "train", vit_processor)
    with pytest.raises(ValueError, match="img0_mask.png"):
        ds[0]


def test_preloading_on_threads_caches_exactly_what_lazy_decoding_does(
    manifest: pd.DataFrame, vit_processor
) -> None:
    rows = _many_rows(manifest, 12)
    lazy = JointSegmentationDataset(rows, "train", vit_processor)
    threaded = JointSegmentationDataset(rows, "train", vit_processor)
    threaded.preload(threads=4)
    assert len(threaded._images) == len(threaded._masks) == len(threaded.frame)
    for i in range(len(lazy.frame)):
        assert torch.equal(lazy.cached_image(i), threaded._images[i])
        assert torch.equal(lazy.cached_mask(i), threaded._masks[i])
    broken = rows.copy()
    gone = Path(broken.iloc[5].mask_path).with_name("gone.png")
    broken.loc[broken.index[5], "mask_path"] = str(gone)
    with pytest.raises(Exception, match="gone.png"):
        JointSegmentationDataset(broken, "train", vit_processor).preload(threads=4)


def test_loader_workers_started_without_fork_give_the_same_batches(
    manifest: pd.DataFrame, real_processor
) -> None:
    # Python 3.14 starts loader workers with "forkserver" on Linux (macOS and Windows: "spawn"),
    # which pickles the dataset and the collate function for every worker.
    ds = JointSegmentationDataset(
        manifest, "train", real_processor.image_processor, augment=True, negative_rate=0.5,
        finish_on_device=True,
    )
    collate = make_collate(real_processor.tokenizer)

    def batches(**kwargs) -> list[dict]:
        loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate, **kwargs)
        return list(loader)

    in_process = batches(num_workers=0)
    spawned = batches(num_workers=1, multiprocessing_context="spawn")
    assert len(spawned) == len(in_process) > 0
    for a, b in zip(in_process, spawned, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            else:
                assert value == b[key], key
