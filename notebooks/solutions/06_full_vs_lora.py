"""Solutions to the exercises of notebook 06 (modes compared).

Each function takes the `course` the notebook opened (`open_course(...)`) and returns what its
answer reads; the models and their evaluations are the notebook's own, loaded from the cache.
"""

from __future__ import annotations

import pandas as pd

from helpers.course.toolkit import (
    PROMPTS,
    apply_thresholds,
    class_of_prompt,
    describe_gains,
    evaluate_protocol,
    image_id,
    photo_bootstrap,
    trained_model,
    zero_shot_model,
)

MODES = ("decoder", "lora", "full")


def _runs(course, modes=MODES) -> dict:
    cfg = course.cfg
    runs = {"none": zero_shot_model(cfg)}
    runs.update({m: trained_model(cfg, m, course.manifest, course.out_name) for m in modes})
    return runs


def _scores(course, runs: dict, **kwargs) -> dict:
    cfg = course.cfg
    return {
        mode: evaluate_protocol(run.segmenter(), course.manifest,
                                course.out_dir / "predictions" / mode, run.evaluation_key,
                                batch_size=cfg.eval_batch_size or cfg.batch_size,
                                progress=False, **kwargs)
        for mode, run in runs.items()
    }


def _pairs(course):
    scores = _scores(course, _runs(course))
    return {mode: s.test_pairs() for mode, s in scores.items()}


def exercise_1(course) -> pd.DataFrame:
    """Gains over the zero-shot model resampled by photo and by image: interval widths and
    verdicts side by side."""
    pairs = _pairs(course)
    by_photo = {image_id(r): r.group_id for r in course.manifest.itertuples()}
    by_image = {i: i for i in by_photo}
    out = {}
    for name, photo_of in (("photos", by_photo), ("images", by_image)):
        boot = photo_bootstrap(pairs, photo_of, reference="none", seed=course.cfg.seed)
        boot = boot[boot["mode"] != "none"].set_index(["mode", "dataset"])
        out[name] = pd.DataFrame({"units": boot.photos, "diff": boot["diff"],
                                  "width": boot.diff_high - boot.diff_low,
                                  "resolved": (boot.diff_low > 0) | (boot.diff_high < 0)})
    return pd.concat(out, axis=1).round(4)


def exercise_2(course) -> list[str]:
    """The verdicts at 95 % against the zero-shot model and against LoRA."""
    pairs = _pairs(course)
    photo_of = {image_id(r): r.group_id for r in course.manifest.itertuples()}
    seeds = f"each mode was trained once (seed {course.cfg.seed})"
    out = []
    for reference in ("none", "lora"):
        boot = photo_bootstrap(pairs, photo_of, reference=reference, level=0.95,
                               seed=course.cfg.seed)
        keep = boot if reference == "none" else boot[boot["mode"] != "none"]
        out += describe_gains(keep, reference, seeds=seeds)
    return out


def exercise_3(course) -> pd.DataFrame:
    """Per trained mode and image class: the wrong prompt that marks the most pixels."""
    scores = _scores(course, _runs(course))
    rows = []
    for mode, s in scores.items():
        if mode == "none":
            continue
        both = apply_thresholds(s.cross_prompt(), s.chosen, split="test")
        both = both.assign(prompt_class=both.prompt.map(class_of_prompt))
        wrong = both[both.prompt_class != both.dataset]
        marked = (wrong.tp + wrong.fp).groupby([wrong.dataset, wrong.prompt]).mean()
        for cls, part in marked.groupby(level=0):
            prompt = part.idxmax()[1]
            # words it shares with the right class's prompts ("segment" is in every prompt)
            right_words = {w for p in PROMPTS[cls] for w in p.split()} - {"segment"}
            shared = sorted(set(prompt.split()) & right_words)
            rows.append({"mode": mode, "image_class": cls, "wrong prompt": prompt,
                         "mean predicted pixels": part.max(),
                         "words shared with the right class": ", ".join(shared) or "none"})
    for r in rows:
        print(f"{r['mode']} on {r['image_class']} images: the wrong prompt marking the most is "
              f"{r['wrong prompt']!r}; words it shares with the right class's prompts: "
              f"{r['words shared with the right class']}.")
    return pd.DataFrame(rows)


def exercise_4(course) -> pd.DataFrame:
    """LoRA's test IoU for phrasings of our own beside its training prompts."""
    mine = {"cracks": ["plaster crack", "wall gap"], "taping": ["seam line", "taped joint"]}
    lora = trained_model(course.cfg, "lora", course.manifest, course.out_name)
    scores = _scores(course, {"lora": lora}, held_out=mine)
    return scores["lora"].held_out(mine).round(4)


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
