"""Training runs as the notebooks use them: one call per mode, cached on disk.

`trained_model(profile, mode, manifest, run)` trains once under the course protocol (same
split, epochs, seed and evaluation for every mode) and afterwards loads the best checkpoint,
so notebooks 05-07 can start from a trained model without "run 04 first", and 06 reuses the
LoRA run of 04 when their settings agree. Runs live in `outputs/<run>/models/<mode>/`.

The profile's device, precision and workers decide where the run goes (`helpers.core.runtime`):
the model is moved there, trained there and returned there.

A run folder is a `helpers.core.cache` output built in place: its `cache_key.json` records the
run's key (`run_key`: model, data, split and every training setting) as started when training
begins and as done once it completes, so an interrupted run with the same key resumes and a
finished one is loaded. `run.json` describes the run; its "fingerprint" is the key's hash.
A folder started with another key, or one from before the key record, is kept aside as
`<name>.settings-<fingerprint>` (`-unrecorded` without a record), never deleted.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.cache import is_current, key_hash, read_record, record_key
from helpers.core.io import folder_lock, read_json, write_json
from helpers.core.paths import profile_dir, shown
from helpers.course.profiles import Profile

RUN_FILE = "run.json"


# The loop's settings that no profile holds: they keep `TrainConfig`'s defaults.
LOOP_ONLY = frozenset(
    {"mode", "grad_clip", "min_delta", "eval_every", "threshold", "restore_best", "deterministic"}
)


def train_config(profile: Profile, mode: str, **overrides: Any):
    """The `TrainConfig` of the course protocol for one mode (overrides win).

    Every other field is read from the profile under its own name, so a field of both cannot
    be left behind (a loop field the profile lacks fails here, by name); the learning rates
    depend on the mode: full fine-tuning trains at `full_lr`, its towers at `tower_lr`.
    """
    from helpers.train.config import TrainConfig

    values = {
        f.name: getattr(profile, f.name) for f in fields(TrainConfig) if f.name not in LOOP_ONLY
    }
    full = mode == "full"
    values.update(
        mode=mode,
        lr=profile.full_lr if full else profile.lr,
        tower_lr=profile.tower_lr if full else None,
    )
    values.update(overrides)
    return TrainConfig(**values)


def lora_settings(profile: Profile):
    """The profile's LoRA settings (default placement: layers that feed the decoder)."""
    from helpers.model.modes import LoraSettings

    return LoraSettings(r=profile.lora_r, alpha=profile.lora_alpha, dropout=profile.lora_dropout)


def run_folder(run: str, mode: str) -> Path:
    """`outputs/<run>/models/<mode>/`."""
    return profile_dir(run) / "models" / mode


def run_key(profile: Profile, cfg, manifest: pd.DataFrame, lora) -> dict[str, Any]:
    """What makes two runs the same: model, data, split and every training setting.

    The data part covers the masks' content through `mask_fraction`, so regenerated data under
    the same file names is not mistaken for the old; `tiny` counts with its recipe version.
    Its `helpers.core.cache.key_hash` is the run's fingerprint.
    """
    from helpers.core.distributed import world
    from helpers.demo.tiny_model import TINY, TINY_VERSION
    from helpers.inference.loading import base_model_key

    columns = ["image_path", "mask_path", "split", "dataset", "mask_fraction"]
    processes = world()[1]  # the global batch and data order depend on it
    return ({"processes": processes} if processes > 1 else {}) | {
        "model": profile.model,
        "base": base_model_key(profile.model),  # a rebuilt tiny or random base: a new run
        "tiny_version": TINY_VERSION if profile.model == TINY else None,
        "image_size": profile.image_size,
        "negative_rate": profile.negative_rate,
        "train": {k: v for k, v in cfg.to_dict().items() if k != "num_workers"},
        "lora": repr(lora) if lora is not None else None,
        "data": manifest[[c for c in columns if c in manifest.columns]].to_csv(index=False),
    }


def _bring_back(folder: Path, key: dict[str, Any]) -> bool:
    """Swap a finished run of `key` that was kept aside back into `folder` (keeping what is
    there aside in turn); True if one was brought back."""
    aside = folder.with_name(f"{folder.name}.settings-{key_hash(key)}")
    if is_current(folder, key) or not is_current(aside, key):
        return False
    if folder.is_dir() and any(folder.iterdir()):
        started = read_record(folder)
        _keep_aside(folder, started.key if started else "unrecorded")
    elif folder.is_dir():
        folder.rmdir()
    os.replace(aside, folder)
    print(f"{folder}: brought back the finished run with these settings")
    return True


def _keep_aside(folder: Path, key: str) -> Path:
    """Move a run folder to `<name>.settings-<key>` beside it (never over another)."""
    target = folder.with_name(f"{folder.name}.settings-{key}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.settings-{key}-{n}")
    os.replace(folder, target)
    return target


@dataclass
class TrainedModel:
    """A trained (or loaded) model with everything a notebook reports about it."""

    mode: str
    model: Any
    processor: Any
    folder: Path
    log: pd.DataFrame
    info: dict[str, Any]
    runtime: Any = None  # the helpers.core.runtime.Runtime the model lives on
    from_cache: bool = False  # loaded from a finished run with the same settings

    @property
    def evaluation_key(self) -> str:
        """What identifies this model's predictions: the run's settings and its best
        checkpoint (epoch and score), so a run trained again gets evaluated again."""
        best = self.checkpoint / "checkpoint.json"
        meta = read_json(best) if best.is_file() else None
        return key_hash({"run": self.info["fingerprint"], "best": meta})

    def describe(self) -> str:
        """One line: how the model came to be (trained now, or loaded from which run)."""
        how = "trained now"
        if self.from_cache:
            how = f"loaded from the finished run in {shown(self.folder)}"
        threshold = self.info["train_config"]["threshold"]
        return (
            f"{self.mode}: {how}; best epoch {self.info['best_epoch']} by the loop's validation "
            f"mIoU {self.info['best_val_miou']:.4f} (threshold {threshold}, at the model's input "
            "size, one prompt per image: not the tuned, full-resolution scores), training took "
            f"{self.info['seconds']:.0f} s"
        )

    @property
    def checkpoint(self) -> Path:
        """The best checkpoint folder (what `helpers.inference.mask_files --model` takes)."""
        return self.folder / "best"

    def segmenter(self):
        """A `helpers.inference.Segmenter` for this model, at the precision it was trained at."""
        from helpers.inference.segmenter import Segmenter

        precision = self.runtime.precision if self.runtime is not None else "auto"
        return Segmenter(self.model, self.processor, precision=precision)


def datasets(profile: Profile, manifest: pd.DataFrame, image_processor):
    """Training (augmented, prompt-sampled, negatives) and validation datasets.

    Their items are finished on the model's device (`finish_on_device=True`): batches made
    with `make_collate` go through `helpers.data.augment.finish_batch`, which `train`,
    `evaluate_segmentation` and `gradient_report` do.
    """
    from helpers.data.dataset import JointSegmentationDataset

    train_ds = JointSegmentationDataset(
        manifest,
        "train",
        image_processor,
        size=profile.image_size,
        augment=True,
        negative_rate=profile.negative_rate,
        seed=profile.seed,
        finish_on_device=True,
    )
    val_ds = JointSegmentationDataset(
        manifest,
        "val",
        image_processor,
        size=profile.image_size,
        augment=False,
        negative_rate=0.0,
        seed=profile.seed,
        finish_on_device=True,
    )
    return train_ds, val_ds


def trained_model(
    profile: Profile,
    mode: str,
    manifest: pd.DataFrame,
    run: str,
    retrain: bool = False,
    progress: bool = True,
    name: str | None = None,
    **overrides: Any,
) -> TrainedModel:
    """Train `mode` under the course protocol, or load the finished run with the same settings.

    The run lives in `outputs/<run>/models/<name or mode>/`. The model is trained and
    returned on `get_runtime(profile.device, profile.precision, profile.num_workers)`.
    Under torchrun every rank trains its share and only rank 0 writes (`helpers.train`).
    """
    from helpers.core import distributed
    from helpers.core.runtime import get_runtime
    from helpers.inference.loading import load_model
    from helpers.model.modes import load_trainable

    rt = get_runtime(profile.device, profile.precision, profile.num_workers)
    overrides = {"precision": rt.precision, "num_workers": rt.num_workers, **overrides}
    cfg = train_config(profile, mode, **overrides)
    lora = lora_settings(profile) if mode == "lora" else None
    folder = run_folder(run, name or mode)
    key = run_key(profile, cfg, manifest, lora)
    with folder_lock(folder) if distributed.is_main() else nullcontext():
        base, processor = load_model(profile.model)
        if distributed.is_main() and not retrain:
            _bring_back(folder, key)
        distributed.barrier()  # every rank sees what rank 0 brought back
        if not retrain and is_current(folder, key) and (folder / RUN_FILE).is_file():
            info = read_json(folder / RUN_FILE)
            model = load_trainable(base, mode, folder / "best").to(rt.device).eval()
            log = pd.read_csv(folder / "log.csv")
            return TrainedModel(mode, model, processor, folder, log, info, rt, from_cache=True)
        if distributed.is_main():
            _start_run(folder, key, profile.model, retrain)
        distributed.barrier()  # every rank sees the prepared folder
        return _train_run(profile, mode, manifest, cfg, lora, folder, key, (base, processor),
                          rt, progress)


def _start_run(folder: Path, key: dict[str, Any], model_name: str, retrain: bool) -> None:
    """Prepare `folder` for a run of `key`: resume ours, start over when asked to, keep a run
    with other settings aside; record the run as started."""
    fingerprint = key_hash(key)
    started = read_record(folder)
    ours = started is not None and started.key == fingerprint
    if folder.exists() and retrain and ours:
        shutil.rmtree(folder)  # asked to start this run over
    elif folder.is_dir() and any(folder.iterdir()) and not ours:
        # Other settings: a resumed run would mix two protocols. Keep the old run beside.
        kept = _keep_aside(folder, started.key if started else "unrecorded")
        print(f"{folder} was trained with other settings; kept it as {kept.name}")
    record_key(folder, key, done=False)  # an unfinished run of this key from now on
    info = {"fingerprint": fingerprint, "completed": False, "base_model": model_name}
    write_json(folder / RUN_FILE, info)


def _train_run(
    profile: Profile, mode: str, manifest: pd.DataFrame, cfg, lora, folder: Path,
    key: dict[str, Any], loaded: tuple[Any, Any], rt, progress: bool,
) -> TrainedModel:
    """Train the run in `folder` (resuming what is there) and record it as finished."""
    import torch

    from helpers.core import distributed
    from helpers.core.runtime import PeakMemory
    from helpers.data.dataset import make_collate
    from helpers.model.modes import apply_mode, count_parameters
    from helpers.train.loop import train

    base, processor = loaded
    torch.manual_seed(profile.seed)
    model = apply_mode(base, mode, lora).to(rt.device)
    peak = PeakMemory(rt.device)
    counts = count_parameters(model)
    train_ds, val_ds = datasets(profile, manifest, processor.image_processor)
    result = train(model, train_ds, val_ds, cfg, folder, make_collate(processor.tokenizer),
                   progress=progress)
    info = {
        "fingerprint": key_hash(key),
        "completed": True,
        "mode": mode,
        "base_model": profile.model,
        "profile": profile.name,
        "train_config": cfg.to_dict(),
        "lora": None if lora is None else {k: getattr(lora, k) for k in ("r", "alpha", "dropout")},
        "parameters": counts,
        "best_epoch": result.best_epoch,
        "best_val_miou": result.best_metric,
        "stopped_early": result.stopped_early,
        "seconds": result.seconds,
        "runtime": rt.describe(),
        "peak_memory_mb": round(peak.mb(), 1),
        "train_images": len(train_ds),
        "val_images": len(val_ds),
    }
    if distributed.is_main():
        processor.save_pretrained(folder / "best")  # the checkpoint is usable on its own
        write_json(folder / RUN_FILE, info)
        record_key(folder, key)  # last: the run is reused from now on
    distributed.barrier()
    model.eval()
    return TrainedModel(mode, model, processor, folder, result.log, info, rt)


def folder_size_mb(folder: str | Path) -> float:
    """Size on disk of a checkpoint folder in MB (weights and configs)."""
    total = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return round(total / 1e6, 3)
