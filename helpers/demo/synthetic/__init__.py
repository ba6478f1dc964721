"""Seeded synthetic stand-ins for the two Roboflow COCO exports of the course.

`generate_demo_exports` writes, under one folder:

- `cracks/{train,valid,test}/`: polygon annotations of thin, branching cracks on painted
  wall, plaster and concrete, outlined loosely as annotators do (a margin of 1-4 px on each
  side, so annotated widths match the real export's: a median of about 10 px at the model's
  352 px input, where the drawn cracks alone are about 4 px), with unannotated look-alikes
  (scratches, stains, shadows, straight seams), images without any crack and a few
  annotations whose `segmentation` is empty (a quirk of the real export);
- `drywall-join/{train,valid}/`: box-only annotations (`segmentation: []`) over taped and
  mudded drywall seams;
- `drywall-join-seams/{train,valid}/<image stem>.png`: the true pixel masks of those seams,
  which a real export does not have (used to measure box-to-mask refinement).

The exports copy the real layout: compact JSON with `info`, `licenses`, `categories`
(id 0 is the placeholder supercategory, the class is id 1), `images`, `annotations`
(`area` is the box area, as Roboflow writes it), file names `<source>_jpg.rf.<32 hex>.jpg`
and each source photo exported 2-4 times as augmented variants (flip, 90-degree rotation,
colour jitter) spread over the export splits, so that the export's own split leaks. A couple
of photos are re-uploaded under another name with (near-)identical pixels.

Everything comes from `numpy.random.Generator`s derived from the seed: the same seed gives
byte-identical JSON and images.

The code is split by job: `surfaces` (wall textures and look-alikes), `defects` (cracks and
seams, with their masks) and `export` (plans, variants, the COCO files and the build of the
demo folder).
"""

from helpers.demo.synthetic.export import (
    STAMP_NAME,
    DemoPaths,
    demo_paths,
    generate_demo_exports,
    generation_parameters,
)

__all__ = [
    "STAMP_NAME",
    "DemoPaths",
    "demo_paths",
    "generate_demo_exports",
    "generation_parameters",
]
