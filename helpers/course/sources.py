"""Which exports a profile uses, prepared on demand (masks + manifest + split), cached.

Every notebook calls `prepared_data(...)` instead of relying on an earlier notebook having run.
The prepared folder of exports of one's own is `custom-<hash of their paths>` (the hash of
`helpers.core.cache.key_hash`; folders named by an earlier hash are prepared again once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers.core.cache import key_hash
from helpers.core.paths import prepared_dir, resolve
from helpers.course.profiles import Profile


@dataclass(frozen=True)
class DataSources:
    """The exports one run reads, and where their prepared form lives."""

    name: str  # "demo" or "custom-<hash>"
    cracks: Path | None
    taping: Path | None
    seam_masks: Path | None  # true seam masks (demo data only)
    prepared: Path

    @property
    def is_demo(self) -> bool:
        return self.name == "demo"


def resolve_sources(profile: Profile) -> DataSources:
    """Pick the exports: the profile's paths, or the generated demo exports when both are empty."""
    if not profile.cracks_export and not profile.taping_export:
        from helpers.demo.exports import ensure_demo_data

        demo = ensure_demo_data()
        return DataSources("demo", demo.cracks, demo.taping, demo.seam_masks, prepared_dir("demo"))
    cracks = resolve(profile.cracks_export) if profile.cracks_export else None
    taping = resolve(profile.taping_export) if profile.taping_export else None
    for label, path in (("cracks_export", cracks), ("taping_export", taping)):
        if path is not None and not path.is_dir():
            raise FileNotFoundError(
                f"{label} = {path} is not a folder; put a Roboflow export (COCO or YOLOv8) there "
                "or change the notebook parameter"
            )
    key = key_hash({"cracks": cracks, "taping": taping})[:10]
    return DataSources(f"custom-{key}", cracks, taping, None, prepared_dir(f"custom-{key}"))


def prepared_data(profile: Profile, box_masks: str = "rectangle"):
    """Masks, manifest (with the leakage-free split) and problems for the profile, cached.

    `box_masks` other than "rectangle" refines box annotations into seam masks
    (`helpers.data.refine`); that variant is prepared into its own folder.
    """
    from helpers.data.preparation import ensure_prepared

    src = resolve_sources(profile)
    out = (
        src.prepared
        if box_masks == "rectangle"
        else src.prepared.with_name(f"{src.prepared.name}-{box_masks}")
    )
    return ensure_prepared(
        cracks=src.cracks,
        taping=src.taping,
        out=out,
        seed=profile.seed,
        seam_masks=src.seam_masks,
        box_masks=box_masks,
    )
