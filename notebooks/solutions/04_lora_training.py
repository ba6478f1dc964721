"""Solutions to the exercises of notebook 04 (LoRA training).

Each `exercise_N(course)` takes the `course` the notebook opened (`open_course(...)`), computes
its answer with the course's helpers, prints a sentence written from the numbers (with the
cut-off it judges by) and returns the table it read. The notebook's own LoRA run and its
evaluation are loaded from the cache; an exercise that trains keeps its run beside the
notebook's, under a name of its own, at the course's settings otherwise.

    python notebooks/solutions/04_lora_training.py   # all of them, on the demo profile
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from helpers.course.toolkit import (
    DEFAULT_PROMPT,
    HELD_OUT_PROMPTS,
    choose_thresholds,
    distinct_photos,
    evaluate_model,
    explore,
    load_rgb,
    negative_pair_foreground,
    read_mask,
    threshold_curve,
    train_config,
    trained_model,
)

SAME = 0.02  # scores closer than this read as the same
FACTOR = 1.25  # foreground shares within this factor of each other read as the same


def _compare(a: float, b: float) -> str:
    """How `a` stands to `b`, with the cut-off `SAME`."""
    if abs(a - b) <= SAME:
        return f"about the same (within {SAME:g})"
    return "higher" if a > b else "lower"


def _lora(course, name: str | None = None, **changes):
    """The course's LoRA run, or one with `changes` to the profile under its own `name`."""
    cfg = dataclasses.replace(course.cfg, **changes) if changes else course.cfg
    return trained_model(cfg, "lora", course.manifest, course.out_name, name=name,
                         progress=False)


def _evaluation(course, run) -> pd.DataFrame:
    """The notebook's sweep table of `run` (val and test, every prompt of each class)."""
    cfg = course.cfg
    table, _ = evaluate_model(run.segmenter(), course.manifest,
                              course.out_dir / "predictions" / "lora", key=run.evaluation_key,
                              batch_size=cfg.eval_batch_size or cfg.batch_size, progress=False)
    return table


def exercise_1(course) -> pd.DataFrame:
    """Rank 4 (alpha 8) against the course's rank: trainable parameters and best val mIoU."""
    runs = {course.cfg.lora_r: _lora(course), 4: _lora(course, "lora-r4", lora_r=4, lora_alpha=8)}
    table = pd.DataFrame([
        {"rank": r, "alpha": run.info["lora"]["alpha"],
         "trainable": run.info["parameters"]["trainable"],
         "best_val_miou": run.info["best_val_miou"], "best_epoch": run.info["best_epoch"]}
        for r, run in runs.items()
    ])
    big, small = table.to_dict("records")
    print(f"Rank {big['rank']} trains {big['trainable']:,} parameters and reaches best "
          f"validation mIoU {big['best_val_miou']:.3f}; rank 4 trains {small['trainable']:,} "
          f"({small['trainable'] / big['trainable']:.2f} times as many: each adapter holds "
          f"r x (d_in + d_out) numbers) and reaches {small['best_val_miou']:.3f}, "
          f"{_compare(small['best_val_miou'], big['best_val_miou'])}.")
    return table


def exercise_2(course) -> pd.DataFrame:
    """One validation crack photo under the trained prompt, unseen phrasings, the other
    class's prompt and a prompt for nothing on a wall: foreground share and IoU each."""
    run = _lora(course)
    chosen = choose_thresholds(_evaluation(course, run), split="val")
    row = distinct_photos(course.manifest, "val", per_class=1, classes=("cracks",)).iloc[0]
    image, label = load_rgb(row.image_path), read_mask(row.mask_path) > 0
    prompts = [DEFAULT_PROMPT["cracks"], "crack", *HELD_OUT_PROMPTS["cracks"],
               DEFAULT_PROMPT["taping"], "segment window"]
    result = explore(run.segmenter(), image, prompts, chosen["cracks"], label)
    table = pd.DataFrame({"prompt": prompts, "foreground_share": result.foreground,
                          "iou": result.ious})
    trained = table.iloc[0]
    alike = table.prompt[(table.iou - trained.iou).abs() <= SAME].tolist()[1:]
    print(f'On a validation crack photo (label {label.mean():.2%} of the image, threshold '
          f'{chosen["cracks"]:.2f}) "{trained.prompt}" marks {trained.foreground_share:.2%} '
          f"(IoU {trained.iou:.3f}). Within {SAME:g} IoU of it: "
          f"{', '.join(repr(p) for p in alike) or 'no other prompt'}; the rest score "
          + ", ".join(f"{r.prompt!r} {r.iou:.3f}" for r in table.iloc[1:].itertuples()
                      if r.prompt not in alike) + ".")
    return table


def exercise_3(course) -> pd.DataFrame:
    """Validation IoU per class at the loop's threshold and at the one chosen on validation,
    from one evaluation table (full resolution, every prompt of the class)."""
    table = _evaluation(course, _lora(course))
    chosen = choose_thresholds(table, split="val")
    loop = train_config(course.cfg, "lora").threshold
    curve = threshold_curve(table, split="val").set_index(["dataset", "threshold"])["iou"]
    rows = pd.DataFrame([
        {"dataset": cls, "loop_threshold": loop, "iou_at_loop_threshold": curve[(cls, loop)],
         "chosen_threshold": t, "iou_at_chosen": curve[(cls, t)]}
        for cls, t in chosen.items()
    ])
    for r in rows.itertuples():
        print(f"{r.dataset}: validation IoU {r.iou_at_loop_threshold:.3f} at the loop's "
              f"threshold {r.loop_threshold:g}, {r.iou_at_chosen:.3f} at {r.chosen_threshold:.2f} "
              f"chosen on validation ({r.iou_at_chosen - r.iou_at_loop_threshold:+.3f}: what the "
              "threshold alone adds, before any change of resolution or prompts).")
    return rows


def exercise_4(course) -> pd.DataFrame:
    """With and without negative pairs: the share of the image each model marks when every
    validation photo is shown with the other class's prompt (right answer: nothing)."""
    cfg = course.cfg
    runs = {cfg.negative_rate: _lora(course),
            0.0: _lora(course, "lora-no-negatives", negative_rate=0.0)}
    threshold = train_config(cfg, "lora").threshold
    rows = []
    for rate, run in runs.items():
        marked = negative_pair_foreground(run.model, cfg, course.manifest, run.processor,
                                          threshold)
        rows.append({"negative_rate": rate, **marked, "best_val_miou": run.info["best_val_miou"]})
    table = pd.DataFrame(rows)
    with_neg, without = table.to_dict("records")
    factor = without["all"] / with_neg["all"] if with_neg["all"] > 0 else float("inf")
    if 1 / FACTOR <= factor <= FACTOR:
        words = f"about as much (within a factor {FACTOR:g})"
    else:
        words = f"{factor:.2f} times as much"
    score = _compare(without["best_val_miou"], with_neg["best_val_miou"])
    print(f"Shown the wrong class's prompt, the model trained with negative_rate "
          f"{with_neg['negative_rate']:g} marks {with_neg['all']:.2%} of a validation image, the "
          f"one trained without negatives {without['all']:.2%} (threshold {threshold:g}): "
          f"{words}. Their best validation mIoU: {with_neg['best_val_miou']:.3f} and "
          f"{without['best_val_miou']:.3f}: {score}.")
    return table


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
