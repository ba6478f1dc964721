"""Summaries of the data notebooks: 01 (exports), 02 (masks), 03 (split and prompts)."""

from __future__ import annotations

from helpers.course.records import DataInspection, JointDataset, MaskRendering
from helpers.course.summaries.registry import summary_for


@summary_for(DataInspection)
def summary_01(m: DataInspection) -> list[str]:
    """Images, objects and label types per export, and the export's own split leakage."""
    totals: dict[str, dict[str, int]] = {}
    for row in m.summary:
        zero = {"images": 0, "objects": 0, "polygons": 0, "boxes": 0}
        t = totals.setdefault(row["dataset"], zero)
        for key in t:
            t[key] += int(row[key])
    out = [
        f"{name} export: {t['images']} images with {t['objects']} objects, {t['polygons']} of "
        f"them with a polygon and {t['boxes']} with a box only."
        for name, t in totals.items()
    ]
    leaks = [r for r in m.leakage if r["n_shared"] > 0]
    out.append(
        "The exports' own splits share no source photo."
        if not leaks
        else "The exports' own splits leak: " + "; ".join(
            f"{r['dataset']}: {r['n_shared']} of {r['n_b']} {r['split_b']} source photos are also "
            f"in {r['split_a']}" for r in leaks) + "."
    )
    return out


@summary_for(MaskRendering)
def summary_02(m: MaskRendering) -> list[str]:
    """Masks rendered, box fallbacks, foreground share, and the rectangles' IoU with seams."""
    out = [
        f"{name}: {m.images[name]} masks, {m.box_fallbacks.get(name, 0)} objects rendered from "
        f"their box; foreground covers {m.mean_mask_fraction[name]:.2%} of an image on average."
        for name in m.images
    ]
    rect = m.rectangle_vs_true_seam_iou or {}
    if rect.get("n_images"):
        out.append(
            f"A taping rectangle scores a mean IoU of {rect['mean']:.3f} against its true seam "
            f"({rect['n_images']} images with a true seam mask)."
        )
    return out


@summary_for(JointDataset)
def summary_03(m: JointDataset) -> list[str]:
    """Split sizes in images and photos, and whether any photo crosses splits."""
    out = []
    for cls, splits in m.split_images.items():
        photos = m.split_photos.get(cls, {})
        parts = ", ".join(
            f"{split} {n} images" + (f" ({photos[split]} photos)" if split in photos else "")
            for split, n in splits.items()
        )
        out.append(f"{cls}: {parts}.")
    out.append(
        f"{m.groups_in_several_splits} photo groups lie in more than one split"
        + (" (the split is leakage-free)." if m.groups_in_several_splits == 0 else ".")
    )
    return out
