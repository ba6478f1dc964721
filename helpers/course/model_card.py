"""A model card for every trained model, generated from its run's metrics.

`write_model_card(run_folder)` writes `<run folder>/best/README.md` (the folder that
`python -m helpers.predict --model` takes), following the Hugging Face model card conventions:
YAML metadata, then sections. Every number in it is a value of the run's records (`run.json`,
`predict_settings.json`, the notebooks' metrics files), rounded; a section whose notebook has not
run yet says so. No machine path appears in it: the base model is named by its Hub id (or as the
course's tiny demo model) and the checkpoint by its path inside the repository.

`write_model_cards(out_dir)` refreshes the card of every finished run under `outputs/<run>/models/`
(the report does this, so the cards hold the scores of 05 and 06 once they ran). It also points a
LoRA adapter's `adapter_config.json` at the base model's name instead of the folder it was loaded
from, so the adapter can be shared as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from helpers.core.io import read_json, write_json, write_text
from helpers.core.paths import PROJECT_ROOT
from helpers.data.prompts import DEFAULT_PROMPT, PROMPTS
from helpers.data.split import SMALL_SPLIT
from helpers.demo.full_size_random import FULL_SIZE_RANDOM
from helpers.demo.tiny_model import TINY
from helpers.evaluate.sensitivity import sensitivity_band
from helpers.inference.segmenter import SETTINGS_FILE

CARD_FILE = "README.md"
RUN_FILE = "run.json"
CLASSES = ("cracks", "taping")
MODE_TEXT = {
    "decoder": "decoder-only fine-tuning (the CLIP towers frozen)",
    "lora": "LoRA adapters on the attention query and value projections",
    "full": "full fine-tuning (decoder and both CLIP towers)",
}
REFERENCES = (
    "- CLIPSeg: T. Lüddecke and A. Ecker, *Image Segmentation Using Text and Image Prompts*, "
    "CVPR ([arXiv](https://arxiv.org/abs/2112.10003)).\n"
    "- LoRA: E. Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR "
    "([arXiv](https://arxiv.org/abs/2106.09685)).\n"
    "- Dice loss: F. Milletari et al., *V-Net*, 3DV ([arXiv](https://arxiv.org/abs/1606.04797))."
)


def num(value: Any, digits: int = 4) -> str:
    """How the card prints a number: integers as they are, floats rounded to `digits`."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{round(float(value), digits):g}"


def base_model_text(name: str) -> tuple[str | None, str]:
    """(Hub id for the metadata or None, how the card names the base model)."""
    if name == TINY:
        return None, "the course's tiny demo model (a small CLIPSeg pretrained on prompted shapes)"
    if name == FULL_SIZE_RANDOM:
        return None, "the real checkpoint's architecture with random weights (a smoke test)"
    if Path(name).is_absolute() or Path(name).exists():
        return None, "a CLIPSeg model saved on the training machine"
    return name, f"`{name}`"


def repo_path(path: Path) -> str:
    """`path` relative to the repository (the card never names a machine path)."""
    try:
        return Path(os.path.relpath(path.resolve(), PROJECT_ROOT)).as_posix()
    except ValueError:  # another drive
        return path.name


def _metrics(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / "metrics" / f"{name}.json"
    return read_json(path) if path.is_file() else None


def _sizes_table(images: dict, photos: dict) -> list[str]:
    rows = ["| split | class | images | photos |", "|---|---|---|---|"]
    flags = []
    for split in ("train", "val", "test"):
        for cls in CLASSES:
            n_img = images.get(split, {}).get(cls)
            if n_img is None:
                continue
            n_ph = photos.get(split, {}).get(cls)
            shown = num(n_ph) if n_ph is not None else ""
            rows.append(f"| {split} | {cls} | {num(n_img)} | {shown} |")
            if split != "train" and n_ph is not None and n_ph < SMALL_SPLIT:
                flags.append(f"{split} {cls} ({num(n_ph)} photos)")
    if flags:
        rows += ["", f"Small splits (fewer than {num(SMALL_SPLIT)} photos): "
                 + ", ".join(flags) + "; their scores are rough."]
    return rows + [""]


def card_text(run_folder: Path) -> str:
    """The model card of the run in `run_folder` (`outputs/<run>/models/<mode>/`)."""
    info = read_json(run_folder / RUN_FILE)
    out_dir = run_folder.parents[1]
    mode = info["mode"]
    hub_id, base_text = base_model_text(str(info["base_model"]))
    m04, m05, m06 = (_metrics(out_dir, n) for n in
                     ("04_lora_training", "05_threshold_sweep", "06_full_vs_lora"))
    # the notebooks' tables score the runs named by their mode (models/lora, ...); a variant
    # (e.g. models/lora-refined-lines) shares its mode but not those scores
    scored = run_folder.name == mode
    settings_file = run_folder / "best" / SETTINGS_FILE
    settings = read_json(settings_file) if settings_file.is_file() else None
    cfg = info["train_config"]
    checkpoint = repo_path(run_folder / "best")
    variant = _variant_record(out_dir, run_folder.name)
    method = (variant or {}).get("refine_method")
    title = f"{mode}, trained on {method}-refined taping masks" if variant else mode
    lines = [f"# CLIPSeg for drywall quality assurance: {title}", ""]
    lines += [
        "A text-prompted segmentation model: a photo and a prompt (\"segment crack\", "
        "\"segment taping area\") go in, a probability map comes out, and a per-class threshold "
        "turns it into a binary mask. " + _switch_sentence(
            ((m06 or {}).get("prompt_sensitivity_test") or {}).get(mode) if scored else None),
        "",
        "## Model details",
        "",
        f"- **Base model:** {base_text}.",
        f"- **Adaptation:** {MODE_TEXT.get(mode, mode)}; "
        f"{num(info['parameters']['trainable'])} trainable of "
        f"{num(info['parameters']['total'])} parameters.",
    ]
    if info.get("lora"):
        lora = info["lora"]
        lines.append(f"- **LoRA:** rank {num(lora['r'])}, alpha {num(lora['alpha'])}, dropout "
                     f"{num(lora['dropout'])}.")
    lines += [
        f"- **Training:** profile `{info['profile']}`, up to {num(cfg['epochs'])} epochs at batch "
        f"{num(cfg['batch_size'])}, learning rate {num(cfg['lr'])}, loss "
        f"{num(cfg['bce_weight'])} x BCE + {num(cfg['dice_weight'])} x Dice, seed "
        f"{num(cfg['seed'])}; best epoch {num(info['best_epoch'])} by validation mIoU "
        f"(threshold {num(cfg['threshold'])}, at the model's input size); "
        f"{num(info['seconds'], 1)} s of training on {info['runtime']['device']}.",
        "",
        "## Training data",
        "",
    ]
    data = (m06 or m05 or {}).get("data")
    if data == "demo":
        lines.append("The course's generated demo exports: synthetic walls with thin branching "
                     "cracks (polygon labels) and taped seams (box labels). Not real photos.")
    else:
        lines.append("Two Roboflow exports: wall cracks (polygon labels) and drywall "
                     "joints/taping (box labels only), split by source photo so that augmented "
                     "copies of one photo never straddle two splits.")
    if variant:
        lines.append(f"For this model the taping boxes were first refined into seam masks by "
                     f"the `{method}` refiner (notebook 07); it trained on those masks, not on "
                     "the filled rectangles.")
    lines.append("")
    sizes = m06 or m05
    if sizes is not None:
        lines += ["Split sizes (a photo is a group of near-duplicate images):", ""]
        lines += _sizes_table(sizes["split_images"], sizes.get("split_photos", {}))
    else:
        lines += [f"{num(info['train_images'])} training and {num(info['val_images'])} validation "
                  "items (the per-split counts appear once notebook 05 or 06 has run).", ""]
    lines += ["Prompts seen in training (one drawn per item and epoch):", ""]
    lines += [f"- {cls}: " + ", ".join(f'"{p}"' for p in PROMPTS[cls]) for cls in CLASSES]
    saved = (settings or {}).get("threshold") or None
    unsaved = None if saved else _unsaved_thresholds(m06, variant, mode if scored else None)
    lines += ["", "## Thresholds", ""]
    lines += _threshold_lines(saved, unsaved)
    lines += ["", "## Evaluation", ""]
    if scored:
        lines += _evaluation(mode, m04, m06)
    elif variant:
        lines += _variant_evaluation(variant)
    else:
        lines.append(f"This run (`{run_folder.name}`) is a variant of the `{mode}` run, trained "
                     "by the notebook that studies it and scored there; the course's evaluation "
                     "tables do not cover it.")
    lines += ["", "## Limitations and intended use", ""]
    m07 = _metrics(out_dir, "07_failure_analysis")
    bias = (m07 or {}).get("rectangle_bias") if scored and (m07 or {}).get("mode") == mode else None
    lines += _limitations(data, sizes, bias, variant)
    lines += ["", "## How to use", ""]
    lines += _usage(checkpoint, unsaved)
    lines += [
        "## References",
        "",
        REFERENCES,
        "",
    ]
    meta = ModelCardData(
        library_name="peft" if mode == "lora" else "transformers",
        base_model=hub_id,
        pipeline_tag="image-segmentation",
        tags=["clipseg", "text-prompted-segmentation", "drywall", mode],
    )
    return f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines)


def _evaluation(mode: str, m04: dict | None, m06: dict | None) -> list[str]:
    lines: list[str] = []
    if m06 is not None:
        rows = [r for r in m06["test_iou_photo_bootstrap"] if r["mode"] == mode]
        if rows:
            level = rows[0]["level"]
            chosen = (m06.get("thresholds") or {}).get(mode)
            at = f" ({_per_class(chosen)}: notebook 06's choice)" if chosen else ""
            lines += [f"Test IoU per image and training prompt (each prompt of the class in "
                      f"turn), at the thresholds chosen on validation{at} and each photo's full "
                      f"resolution, with a {num(level)} interval from resampling the test photos:",
                      "", "| class | test IoU | interval | photos |", "|---|---|---|---|"]
            lines += [f"| {r['dataset']} | {num(r['iou'])} | {num(r['iou_low'])} to "
                      f"{num(r['iou_high'])} | {num(r['photos'])} |" for r in rows]
            lines.append("")
        lines += _zero_shot_lines(mode, m06)
        sens = m06["prompt_sensitivity_test"].get(mode)
        if sens:
            lines.append(f"Prompt sensitivity on test (1: only the right prompt marks anything; "
                         f"0: the prompt is ignored): {num(sens['all'])} (crack images "
                         f"{num(sens['cracks'])}, taping images {num(sens['taping'])}).")
            lines.append("")
    else:
        lines += ["Test scores appear here once notebook 06 has run.", ""]
    if m04 is not None:
        untrained = m04["val_iou_untrained"]
        lines.append("Untrained base model on validation (the training loop's protocol: "
                     f"threshold {num(m04['val_threshold'])}, {num(m04['image_size'])} px, one "
                     "prompt per image): " + ", ".join(f"{c} {num(v)}"
                                                      for c, v in sorted(untrained.items())) + ".")
        if mode == "lora":
            lines.append("The LoRA model at its best epoch under the same protocol: " + ", ".join(
                f"{c} {num(v)}" for c, v in sorted(m04["val_iou_lora"].items())) + ".")
    else:
        lines.append("The untrained baseline appears here once notebook 04 has run.")
    return lines


def _zero_shot_lines(mode: str, m06: dict) -> list[str]:
    """The untrained base model under the same protocol, and this mode's paired gain over it."""
    if m06.get("bootstrap_reference") != "none":
        return []
    rows = m06["test_iou_photo_bootstrap"]
    base = [r for r in rows if r["mode"] == "none"]
    mine = {r["dataset"]: r for r in rows if r["mode"] == mode}
    if not base or not mine:
        return []
    lines = ["Zero-shot baseline: the base model without training, under the same protocol "
             "(thresholds chosen on validation), and this model's gain over it on the same test "
             "photos (paired resamples):", "",
             "| class | zero-shot test IoU | interval | gain | gain interval |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {num(r['iou'])} | {num(r['iou_low'])} to "
              f"{num(r['iou_high'])} | {num(mine[r['dataset']]['diff'])} | "
              f"{num(mine[r['dataset']]['diff_low'])} to {num(mine[r['dataset']]['diff_high'])} |"
              for r in base if r["dataset"] in mine]
    return [*lines, ""]


def _switch_sentence(sensitivity: dict | None) -> str:
    """Whether the prompt switches between the tasks, as this model's test sensitivity says."""
    if not sensitivity or sensitivity.get("all") is None:
        return ("One model serves both tasks, and the prompt is meant to be the switch (this "
                "card holds no test measure of how well it switches).")
    value = sensitivity["all"]
    name, _ = sensitivity_band(value)
    if name == "prompt-aware":
        return (f"One model serves both tasks; the prompt is the switch (prompt sensitivity on "
                f"test {num(value)}: prompt-aware by notebook 06's criterion).")
    if name == "partly prompt-aware":
        return (f"One model serves both tasks and the prompt is meant to be the switch; on test "
                f"this model is only partly prompt-aware (prompt sensitivity {num(value)}, by "
                "notebook 06's criterion): the wrong prompt still marks part of what the right "
                "one does.")
    return (f"The prompt is meant to be the switch between the two tasks, but on test this "
            f"model is {name} (prompt sensitivity {num(value)}, by notebook 06's criterion): "
            + ("its mask barely depends on the prompt, so only the per-class threshold tells "
               "the tasks apart." if name == "prompt-blind" else
               "the wrong prompt marks more than the right one."))


def _unsaved_thresholds(
    m06: dict | None, variant: dict | None, scored_mode: str | None
) -> tuple[dict | None, str]:
    """Thresholds chosen on validation for a run without saved settings, and the notebook."""
    if variant:
        return variant.get("refined_thresholds_chosen_on_val"), "07"
    if scored_mode:
        return ((m06 or {}).get("thresholds") or {}).get(scored_mode), "06"
    return None, ""


def _usage(checkpoint: str, unsaved: tuple[dict | None, str] | None) -> list[str]:
    """How to run the model: at its saved thresholds (`unsaved` None), or at the ones chosen
    for it but not saved beside it (`unsaved`: (thresholds or None, notebook))."""
    chosen = unsaved[0] if unsaved else None
    load = [f'segmenter = Segmenter.from_pretrained("{checkpoint}")',
            'rgb_array = load_rgb("photo.jpg")  # an RGB photo as a uint8 array']
    call = 'masks = segmenter.masks(rgb_array, ["segment crack", "segment taping area"], settings)'
    if not chosen:
        bash = [f'python -m helpers.predict photos/ --prompt "segment crack" '
                f'--prompt "segment taping area" --model {checkpoint} --out masks/']
        settings = (f'settings = PredictSettings.read("{checkpoint}")  # the saved thresholds'
                    if unsaved is None else "settings = PredictSettings()  # 0.5 for every prompt")
        intro = ([] if unsaved is None else
                 ["No thresholds were chosen for this model yet, so these run at 0.5.", ""])
    else:
        bash = [f'python -m helpers.predict photos/ --prompt "{DEFAULT_PROMPT[c]}" '
                f"--threshold {num(t)} --model {checkpoint} --out masks/{c}/"
                for c, t in sorted(chosen.items()) if c in DEFAULT_PROMPT]
        per_class = ", ".join(f"{c!r}: {num(t)}" for c, t in sorted(chosen.items()))
        settings = f"settings = PredictSettings(threshold={{{per_class}}})"
        intro = [f"This folder saves no thresholds, so pass the ones notebook {unsaved[1]} chose "
                 "on validation (`--threshold` applies one value to every prompt of a call: one "
                 "call per class, each with its own output folder and run record):", ""]
    return [*intro, "```bash", *bash, "```", "", "```python",
            "from helpers.data.images import load_rgb",
            "from helpers.inference.segmenter import PredictSettings, Segmenter",
            *load, settings, call, "```", ""]


def _threshold_lines(saved: dict | None, unsaved: tuple[dict | None, str] | None) -> list[str]:
    """Which thresholds were chosen on validation, by which notebook, and what `predict` does:
    `saved` beside the weights, else `unsaved` (`_unsaved_thresholds`)."""
    if saved:
        return ["Chosen on validation, per prompt class, by notebook 05 (its threshold rule), "
                f"saved beside the weights (`{SETTINGS_FILE}`) and applied by `predict`: "
                + _per_class(saved) + "."]
    chosen, notebook = unsaved or (None, "")
    unsaved = (f"This folder holds no `{SETTINGS_FILE}` (notebook 05 writes one for the run it "
               "tunes), so `predict` applies 0.5 to every prompt unless given `--threshold`.")
    if chosen:
        return [f"Chosen on validation by notebook {notebook}, per prompt class: "
                + _per_class(chosen) + ". " + unsaved]
    return ["Not chosen yet for this model (notebooks 05, 06 and 07 choose them on "
            "validation). " + unsaved]


def _per_class(values: dict) -> str:
    return ", ".join(f"{cls} {num(t)}" for cls, t in sorted(values.items()))


def _variant_record(out_dir: Path, name: str) -> dict | None:
    """07's record when this run is the refined-label variant that 07 trained, else None."""
    m07 = _metrics(out_dir, "07_failure_analysis")
    return m07 if m07 and m07.get("refined_run") == name else None


def _variant_evaluation(m07: dict) -> list[str]:
    """What 07 measured for the refined-label variant: taping test IoU against the true seams."""
    rows = {r["mode"]: r for r in m07.get("refined_gain") or []}
    mine, base = rows.get("refined"), rows.get("rectangles")
    if not mine or not base:
        return ["Notebook 07 trained this model; its scores appear here once 07 has compared it "
                "on the true seams."]
    level = num(mine["level"])
    return [
        f"Notebook 07 scores it on the {num(mine['pairs'])} taping test images "
        f"({num(mine['photos'])} photos) against the true seams, which the demo's generated "
        f"data keep beside the box labels, with the prompt \"{DEFAULT_PROMPT['taping']}\" at its "
        "own validation threshold: test IoU "
        f"{num(mine['iou'])} ({level} interval over photos {num(mine['iou_low'])} to "
        f"{num(mine['iou_high'])}), against {num(base['iou'])} for the same recipe trained on "
        f"the rectangles; paired gain {num(mine['diff'])} ({level} interval "
        f"{num(mine['diff_low'])} to {num(mine['diff_high'])}). Its crack scores are not "
        "measured.", "",
    ]


def _limitations(
    data: str | None, sizes: dict | None, bias: list | None = None, variant: dict | None = None
) -> list[str]:
    lines = [
        "- Taping is labelled with boxes only, so a taping IoU measures overlap with filled "
        "rectangles, not with the seams themselves.",
    ]
    quality = (variant or {}).get("refinement_iou_vs_true_seams") or {}
    if variant:
        lines[0] = ("- Taping is labelled with boxes only; this model trained on masks refined "
                    "from them, which are only as close to the seams as the refiner gets")
        if "refined_iou" in quality and "rectangle_iou" in quality:
            lines[0] += (f" (on the demo's generated seams, notebook 07 measured the refined "
                         f"masks at IoU {num(quality['refined_iou'])} against the true seams, the "
                         f"rectangles at {num(quality['rectangle_iou'])})")
        lines[0] += "."
    against = {r.get("scored_against"): r for r in bias or []}
    rect, seams = against.get("rectangle labels"), against.get("true seams")
    if rect and seams:
        lines[0] += (f" On the demo's generated seams, notebook 07 measured this model's taping "
                     f"test IoU at {num(rect['iou'])} against the rectangles and "
                     f"{num(seams['iou'])} against the true seams (one prompt, "
                     f"\"{DEFAULT_PROMPT['taping']}\", at threshold {num(rect['threshold'])}; "
                     "the evaluation above averages every training prompt).")
    if sizes is not None and any(
        n < SMALL_SPLIT for s in ("val", "test")
        for n in sizes.get("split_photos", {}).get(s, {}).values()
    ):
        lines.append("- The validation and test splits are small (see above): a threshold or a "
                     "score from them can move with another draw of photos.")
    if data == "demo":
        lines += ["- Trained on synthetic walls: it shows the pipeline end to end, not what "
                  "a model sees on real construction photos.",
                  "- Intended use: learning and teaching the method. Do not use it to inspect "
                  "walls; a model trained on the full profile is the one meant for marking cracks "
                  "and taped joints for a person to review."]
    else:
        lines.append("- Intended use: marking cracks and taped joints on drywall photos for a "
                     "person to review, not an automatic pass/fail decision.")
    return lines


def portable_adapter_config(run_folder: Path) -> None:
    """Name the base model in a LoRA adapter's config (not the folder it was loaded from)."""
    path = run_folder / "best" / "adapter_config.json"
    if not path.is_file():
        return
    config = read_json(path)
    base = str(read_json(run_folder / RUN_FILE)["base_model"])
    if config.get("base_model_name_or_path") != base:
        config["base_model_name_or_path"] = base
        write_json(path, config)


def write_model_card(run_folder: str | os.PathLike[str]) -> Path:
    """Write the card of one finished run into `<run_folder>/best/README.md`; returns its path."""
    run_folder = Path(run_folder)
    text = card_text(run_folder)
    ModelCard(text)  # parses, or raises before anything is written
    portable_adapter_config(run_folder)
    return write_text(run_folder / "best" / CARD_FILE, text)


def write_model_cards(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Refresh the card of every finished run under `<out_dir>/models/`."""
    written = []
    for run_file in sorted(Path(out_dir).glob(f"models/*/{RUN_FILE}")):
        info = read_json(run_file)
        if info.get("completed") and (run_file.parent / "best").is_dir():
            written.append(write_model_card(run_file.parent))
    return written
