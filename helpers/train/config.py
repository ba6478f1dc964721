"""`TrainConfig`: the hyperparameters of one training run, checked on creation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from helpers.core.runtime import PRECISIONS
from helpers.model.modes import MODES
from helpers.train.losses import BCEDiceLoss


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (checked on creation)."""

    mode: str = "lora"  # "decoder" | "lora" | "full": which parameters the model trains
    epochs: int = 10
    batch_size: int = 4  # per process; under torchrun the global batch is this x world size
    lr: float = 5e-4  # learning rate of the decoder and adapters
    tower_lr: float | None = None  # lr of CLIP tower weights in "full" mode; None: lr / 10
    weight_decay: float = 0.01  # AdamW, on weight matrices (not biases or norms)
    warmup_fraction: float = 0.1  # share of all steps with a linear warm-up
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    bce_pos_weight: float = 1.0  # weight of foreground pixels in the BCE term (> 0)
    patience: int | None = 5  # validations without a better mIoU before stopping; None: never
    min_delta: float = 0.0  # improvement needed to count as better
    seed: int = 42
    num_workers: int | None = None  # DataLoader workers; None: the runtime's choice
    precision: str = "auto"  # "auto" | "bf16" | "fp16" | "fp32"; autocast is used on CUDA only
    eval_every: int = 1  # validate every n epochs (and always after the last one)
    threshold: float = 0.5  # probability threshold for validation IoU / Dice
    max_steps_per_epoch: int | None = None  # cap on batches per epoch; None: the whole epoch
    eval_batch_size: int | None = None  # None: same as batch_size
    restore_best: bool = True  # load the best weights into the model when training ends
    deterministic: bool = False  # call seed.deterministic_cpu() before training

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; choose one of {PRECISIONS}"
            )
        for name in ("epochs", "batch_size", "eval_every"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.num_workers is not None:
            _check_int("num_workers", self.num_workers, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        for name in ("patience", "max_steps_per_epoch", "eval_batch_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.tower_lr is not None and not self.tower_lr >= 0:
            raise ValueError(f"tower_lr must be >= 0 or None, got {self.tower_lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if not self.bce_pos_weight > 0:
            raise ValueError(f"bce_pos_weight must be > 0, got {self.bce_pos_weight}")
        BCEDiceLoss(self.bce_weight, self.dice_weight)  # validates the weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        return cls(**data)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
