"""Summaries of the data notebooks: 01 (exports), 02 (masks), 03 (split and prompts)."""

from __future__ import annotations

from helpers.course.records import DataInspection, JointDataset, MaskRendering
from helpers.course.summaries.registry import summary_for
from helpers.data.split import SMALL_SPLIT


def _totals(rows: list[dict], keys: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Per dataset, the sums of `keys` over a table's rows (a missing key counts 0)."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        t = totals.setdefault(row["dataset"], dict.fromkeys(keys, 0))
        for key in keys:
            t[key] += int(row.get(key) or 0)
    return totals


@summary_for(DataInspection)
def summary_01(m: DataInspection) -> list[str]:
    """Images, objects and label types per export, copies per photo, problems, and the
    export's own split leakage."""
    keys = ("images", "objects", "polygons", "boxes", "empty_segmentation")
    out = []
    for name, t in _totals(m.summary, keys).items():
        out.append(
            f"{name} export: {t['images']} images with {t['objects']} objects, {t['polygons']} of "
            f"them with a polygon and {t['boxes']} with a box only."
        )
        if t["empty_segmentation"] and t["polygons"]:  # a box-only export has no polygon to lose
            out.append(
                f"{name}: {t['empty_segmentation']} objects have an empty polygon, so only their "
                "box is left (rendered as a filled rectangle)."
            )
    for name, v in m.median_variants_per_source.items():
        out.append(
            f"{name}: a source photo appears as a median of {v:g} exported images (matched by "
            "file stem)."
        )
    out.append(
        f"{m.problems} files or labels could not be used"
        + (" (each is listed with its reason)." if m.problems else ".")
    )
    leaks = [r for r in m.leakage if r["n_shared"] > 0 and r.get("key", "source_id") == "source_id"]
    out.append(
        "The exports' own splits share no source photo (matched by file stem)."
        if not leaks
        else "The exports' own splits leak (a photo in both splits counts; matched by file stem, "
        "so copies exported under another name are missed): " + "; ".join(
            f"{r['dataset']}: {r['n_shared']} of {r['n_b']} {r['split_b']} source photos are also "
            f"in {r['split_a']}" for r in leaks) + "."
    )
    return out


@summary_for(MaskRendering)
def summary_02(m: MaskRendering) -> list[str]:
    """Masks rendered, box fallbacks, foreground share and what predicting nothing scores, and
    the rectangles' IoU with the true seams."""
    out = []
    for name in m.images:
        share = m.mean_mask_fraction[name]
        empty = m.images_without_foreground.get(name)
        out.append(
            f"{name}: {m.images[name]} masks"
            + (f" ({empty} without foreground)" if empty is not None else "")
            + f", {m.box_fallbacks.get(name, 0)} objects rendered from their box; foreground "
            f"covers {share:.2%} of an image on average, so predicting nothing would already "
            f"score {1 - share:.2%} pixel accuracy (and foreground IoU 0)."
        )
    rect = m.rectangle_vs_true_seam_iou or {}
    if rect.get("n_images"):
        out.append(
            f"A taping rectangle scores a mean IoU of {rect['mean']:.3f} against its true seam "
            f"({rect['n_images']} images with a true seam mask): a model that drew the seams "
            "exactly would be scored about this against the rectangles."
        )
    return out


def _split_sentence(cls: str, splits: dict[str, int], photos: dict[str, int]) -> str:
    parts, flagged = [], False
    for split, n in splits.items():
        if split not in photos:
            parts.append(f"{split} {n} images")
            continue
        small = ": too few" if photos[split] < SMALL_SPLIT else ""
        flagged = flagged or bool(small)
        parts.append(f"{split} {n} images ({photos[split]} photos{small})")
    note = f" (too few: under {SMALL_SPLIT} photos to trust alone)" if flagged else ""
    return f"{cls}: " + "; ".join(parts) + note + "."


@summary_for(JointDataset)
def summary_03(m: JointDataset) -> list[str]:
    """Split sizes in images and photos, leakage of the export's split and of ours, and what
    epoch 0's items hold (negative pairs, empty positive targets)."""
    out = [
        _split_sentence(cls, splits, m.split_photos.get(cls, {}))
        for cls, splits in m.split_images.items()
    ]
    out.append(
        f"{m.groups_in_several_splits} photo groups lie in more than one split"
        + (" (no leakage that stems and the hash can find)." if m.groups_in_several_splits == 0
           else ".")
    )
    if m.export_leakage:
        theirs, ours = (
            sum(r["n_shared"] for r in rows if r.get("key") == "group_id")
            for rows in (m.export_leakage, m.split_leakage)
        )
        out.append(
            f"Counted by photo group, the export's own splits share {theirs} groups between "
            f"pairs of splits; this course's split shares {ours}."
        )
    t = m.item_targets_epoch0
    if t:
        positives = sum(v for k, v in t.items() if k != "negative pair")
        empty = positives - t.get("object", 0)
        out.append(
            f"Epoch 0 shows {positives} positive items and {t.get('negative pair', 0)} negative "
            f"pairs (negative_rate {m.negative_rate:g}); {empty} positive items have an empty "
            f"target ({t.get('no object in the image', 0)} images without an object, "
            f"{t.get('object cropped out', 0)} with the object cropped out)."
        )
    return out
