"""The input pipeline: images decoded once, augmentation on batched tensors, batches on the
model's device, and the import direction model -> train."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import ViTImageProcessor

from helpers.data.augment import augment_batch, draw_augment, finish_batch, no_augment
from helpers.data.dataset import JointSegmentationDataset, make_collate
from helpers.data.images import load_rgb
from helpers.data.prompts import STREAM_AUGMENT, item_rng

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vit_processor() -> ViTImageProcessor:
    return ViTImageProcessor(size={"height": 352, "width": 352})


@pytest.fixture()
def manifest(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for k in range(6):
        rng = np.random.default_rng(k)
        image = rng.integers(0, 60, (60, 80, 3), dtype=np.uint8)
        mask = np.zeros((60, 80), np.uint8)
        image[5 : 20 + k, 10 : 40 + k] = 255
        mask[5 : 20 + k, 10 : 40 + k] = 255
        cv2.imwrite(str(tmp_path / f"i{k}.png"), image[:, :, ::-1])
        cv2.imwrite(str(tmp_path / f"m{k}.png"), mask)
        rows.append({
            "image_path": str(tmp_path / f"i{k}.png"), "mask_path": str(tmp_path / f"m{k}.png"),
            "dataset": "cracks" if k % 2 == 0 else "taping", "split": "train",
        })
    return pd.DataFrame(rows)


class _Tok:
    """Stands in for a tokenizer: one token per word."""

    def __call__(self, prompts, padding=True, return_tensors="pt"):
        n = max(len(p.split()) for p in prompts)
        ids = torch.ones(len(prompts), n, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _square(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.full((1, 3, size, size), 30.0)
    mask = torch.zeros(1, size, size)
    image[..., 8:30, 12:50] = 250.0
    mask[..., 8:30, 12:50] = 1.0
    return image, mask


def test_augmentation_repeats_for_an_item_and_moves_image_and_mask_together() -> None:
    image, mask = _square()
    params = torch.stack([draw_augment(item_rng(3, 1, i, STREAM_AUGMENT), 0.0) for i in range(16)])
    again = torch.stack([draw_augment(item_rng(3, 1, i, STREAM_AUGMENT), 0.0) for i in range(16)])
    assert torch.equal(params, again)
    assert not torch.equal(params, torch.stack(
        [draw_augment(item_rng(3, 2, i, STREAM_AUGMENT), 0.0) for i in range(16)]
    ))
    images, masks = augment_batch(image.repeat(16, 1, 1, 1), mask.repeat(16, 1, 1), params)
    assert params[:, 0].any() and params[:, 7].ne(0).any()  # crops and turns were drawn
    moved = 0
    for img, m in zip(images, masks, strict=True):
        bright = img[0] > 140
        assert m[bright].mean() > 0.9 and m[~bright].mean() < 0.05
        moved += not torch.equal(m, mask[0])
    assert moved > 8
    # batched equals one at a time
    one = [augment_batch(image, mask, p[None]) for p in params]
    assert torch.equal(images, torch.cat([o[0] for o in one]))
    assert torch.equal(masks, torch.cat([o[1] for o in one]))


def test_no_augment_row_leaves_the_item_exactly_as_it_was() -> None:
    image, mask = _square()
    out_image, out_mask = augment_batch(image, mask, no_augment()[None])
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_cache_holds_the_same_pixels_as_a_fresh_decode(manifest, vit_processor) -> None:
    ds = JointSegmentationDataset(manifest, "train", vit_processor)
    cached = ds.cached_image(3)
    assert cached.dtype == torch.uint8 and cached.shape == (3, 352, 352)
    assert ds.cached_image(3) is cached  # decoded once
    fresh = vit_processor(
        images=Image.fromarray(load_rgb(manifest.loc[3, "image_path"])),
        do_rescale=False, do_normalize=False, return_tensors="pt",
    )["pixel_values"][0]
    assert torch.equal(cached, fresh.to(torch.uint8))
    expected = vit_processor(images=Image.open(manifest.loc[3, "image_path"]).convert("RGB"),
                             return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(ds[3]["pixel_values"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(ds[3]["pixel_values"], expected, atol=1e-5, rtol=0)


def test_batches_finished_on_the_device_equal_items_finished_one_by_one(
    manifest, vit_processor
) -> None:
    kwargs = {"augment": True, "negative_rate": 0.5, "seed": 4}
    on_device = JointSegmentationDataset(manifest, "train", vit_processor, finish_on_device=True,
                                         **kwargs)
    one_by_one = JointSegmentationDataset(manifest, "train", vit_processor, **kwargs)
    for ds in (on_device, one_by_one):
        ds.set_epoch(2)
    collate = make_collate(_Tok())
    idx = range(len(on_device))
    deferred = collate([on_device[i] for i in idx])
    assert deferred["images"].dtype == torch.uint8 and "pixel_values" not in deferred
    finished = finish_batch(deferred)
    direct = collate([one_by_one[i] for i in idx])
    torch.testing.assert_close(finished["pixel_values"], direct["pixel_values"], atol=1e-5, rtol=0)
    torch.testing.assert_close(finished["labels"], direct["labels"], atol=1e-6, rtol=0)
    assert finished["prompts"] == direct["prompts"]


def test_train_validate_and_gradient_report_put_batches_on_the_model_device(
    monkeypatch, tmp_path
) -> None:
    import helpers.train.gradcheck as gradcheck
    import helpers.train.loop as loop
    import helpers.train.validate as validate
    from helpers.core.runtime import get_runtime, model_device
    from helpers.demo.tiny_model import build_tiny_model
    from helpers.model.modes import apply_mode

    seen: list[tuple[str, torch.device]] = []
    real = validate.device_batch

    def spy(where: str):
        def device_batch(batch, device):
            seen.append((where, device))
            out = real(batch, device)
            assert all(v.device == device for v in out.values() if isinstance(v, torch.Tensor))
            return out
        return device_batch

    monkeypatch.setattr(loop, "device_batch", spy("train"))
    monkeypatch.setattr(validate, "device_batch", spy("validate"))
    monkeypatch.setattr(gradcheck, "device_batch", spy("gradient"))
    rt = get_runtime("auto", "fp32")
    base, processor = build_tiny_model()
    model = apply_mode(base, "decoder").to(rt.device)
    images = torch.randint(0, 255, (4, 3, 352, 352), dtype=torch.uint8)
    labels = (torch.rand(4, 352, 352) > 0.7).float()

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i):
            return {"image": images[i], "labels": labels[i], "augment": no_augment(),
                    "image_mean": torch.tensor(processor.image_processor.image_mean),
                    "image_std": torch.tensor(processor.image_processor.image_std),
                    "prompt": "segment crack", "dataset": "cracks", "is_negative": False,
                    "index": i}

    collate = make_collate(processor.tokenizer)
    cfg = loop.TrainConfig(mode="decoder", epochs=1, batch_size=2, patience=None,
                           precision="fp32")
    loop.train(model, Data(), Data(), cfg, tmp_path, collate, progress=False)
    batch = collate([Data()[i] for i in range(2)])
    gradcheck.gradient_report(model, batch, "course")
    assert {w for w, _ in seen} == {"train", "validate", "gradient"}
    assert all(device == model_device(model) for _, device in seen)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gradient_report_on_cuda_takes_a_cpu_batch() -> None:
    from helpers.demo.tiny_model import build_tiny_model
    from helpers.model.modes import LoraSettings, apply_mode
    from helpers.train.gradcheck import gradient_report

    base, processor = build_tiny_model()
    model = apply_mode(base, "lora", LoraSettings(r=2, alpha=4)).to("cuda")
    tokens = processor.tokenizer(["segment crack"] * 2, padding=True, return_tensors="pt")
    batch = {"pixel_values": torch.randn(2, 3, 352, 352), "labels": torch.rand(2, 352, 352),
             **tokens}
    table = gradient_report(model, batch, "course")
    assert (table["with_gradient"] > 0).any()
