"""Training modes: decoder only, LoRA adapters, or full fine-tuning; counting and saving them.

- "decoder": only `model.decoder` learns (the CLIP towers stay frozen).
- "lora": peft LoRA adapters learn; every base weight is frozen.
- "full": every weight that influences the segmentation logits learns.

Train every mode with `helpers.model.forward.segment`: the stock forward keeps the towers
under `torch.no_grad()`, so tower weights or adapters would never receive a gradient.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

from helpers.core.io import atomic_folder
from helpers.core.paths import PROJECT_ROOT, shown
from helpers.model.forward import unwrap

MODES: tuple[str, ...] = ("decoder", "lora", "full")
PARTS: tuple[str, ...] = ("vision", "text", "decoder")
MODE_FILE = "trainable.json"
DECODER_FILE = "decoder.safetensors"


@dataclass(frozen=True)
class LoraSettings:
    """Where LoRA adapters go and how large they are.

    `vision_layers`: "feeding" (layers 0 .. last extract layer: the only ones that influence
    the logits), "all", or explicit layer indices. `parts` picks among vision, text, decoder.
    With every part and every vision layer, the bare `target_modules` names are given to peft
    (so the adapter config reads like the common `target_modules=["q_proj", "v_proj"]`
    one); otherwise the exact module names are listed.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    parts: tuple[str, ...] = PARTS
    vision_layers: str | tuple[int, ...] = "feeding"
    bias: str = "none"

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown or not self.parts:
            raise ValueError(f"LoRA parts must be a non-empty subset of {PARTS}, got {self.parts}")
        if isinstance(self.vision_layers, str) and self.vision_layers not in ("feeding", "all"):
            raise ValueError(
                f"vision_layers must be 'feeding', 'all' or indices, got {self.vision_layers!r}"
            )
        if self.r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {self.r}")

    def vision_layer_indices(self, model: nn.Module) -> list[int]:
        """Indices of the vision layers that receive adapters."""
        base = unwrap(model)
        return self.vision_layers_for(
            len(base.clip.vision_model.encoder.layers), base.extract_layers
        )

    def vision_layers_for(self, n_layers: int, extract_layers: Sequence[int]) -> list[int]:
        """Indices of the vision layers that receive adapters in a tower of `n_layers` whose
        `extract_layers` feed the decoder (e.g. from a `CLIPSegConfig`, without a model)."""
        if self.vision_layers == "all":
            return list(range(n_layers))
        if self.vision_layers == "feeding":
            return list(range(max(extract_layers) + 1))
        bad = [i for i in self.vision_layers if not 0 <= i < n_layers]
        if bad:
            raise ValueError(f"vision layers {bad} out of range 0..{n_layers - 1}")
        return sorted(set(self.vision_layers))

    def module_names(self, model: nn.Module) -> list[str]:
        """Full names (in the plain CLIPSeg model) of every module that gets an adapter."""
        base = unwrap(model)
        names: list[str] = []
        for name, module in base.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in self.target_modules or not isinstance(module, nn.Linear):
                continue
            part = part_of(name)
            if part not in self.parts:
                continue
            if part == "vision":
                layer = _layer_index(name, "clip.vision_model.encoder.layers.")
                if layer is None or layer not in self.vision_layer_indices(base):
                    continue
            names.append(name)
        if not names:
            raise ValueError(f"no module named {self.target_modules} in parts {self.parts}")
        return names

    def peft_target_modules(self, model: nn.Module) -> list[str]:
        """peft's `target_modules`: the bare names when they select exactly the same modules."""
        names = self.module_names(model)
        bare = [
            n
            for n, m in unwrap(model).named_modules()
            if n.rsplit(".", 1)[-1] in self.target_modules and isinstance(m, nn.Linear)
        ]
        return list(self.target_modules) if names == bare else names

    def lora_config(self, model: nn.Module) -> LoraConfig:
        """The peft `LoraConfig` for `model`."""
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.peft_target_modules(model),
            bias=self.bias,
        )


# The default places no adapter in vision layers 10 and 11, which never reach the logits.
# `LoraSettings(vision_layers="all")` is the usual `target_modules=["q_proj", "v_proj"]`
# placement: every q_proj / v_proj in all three parts (995,328 parameters on the full-size
# model, 98,304 of them in those two layers).
DEFAULT_LORA = LoraSettings()


def _layer_index(name: str, prefix: str) -> int | None:
    if prefix not in name:
        return None
    rest = name.split(prefix, 1)[1]
    head = rest.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def part_of(name: str) -> str:
    """'vision', 'text', 'decoder' or 'other' (logit_scale) for a parameter or module name."""
    if "clip.vision_model." in name or "clip.visual_projection" in name:
        return "vision"
    if "clip.text_model." in name or "clip.text_projection" in name:
        return "text"
    if name.startswith("decoder.") or ".decoder." in name or name == "decoder":
        return "decoder"
    return "other"


def unused_parameter_names(model: nn.Module) -> list[str]:
    """Base parameters that never influence the segmentation logits.

    The vision layers after the last extract layer, the vision post-layernorm and projection
    (pooled image features), and the contrastive `logit_scale`.
    """
    base = unwrap(model)
    last = max(base.extract_layers)
    unused = []
    for name, _ in base.named_parameters():
        layer = _layer_index(name, "clip.vision_model.encoder.layers.")
        if (
            (layer is not None and layer > last)
            or name.startswith("clip.vision_model.post_layernorm.")
            or name.startswith("clip.visual_projection.")
            or name == "clip.logit_scale"
        ):
            unused.append(name)
    return unused


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft asks transformers a question transformers has deprecated: keep that out of the
    notebooks (it says nothing about this course's code)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        yield


def apply_mode(model: nn.Module, mode: str, lora: LoraSettings | None = None) -> nn.Module:
    """Set which weights learn; returns the model (a `PeftModel` for "lora")."""
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; expected one of {MODES}")
    if isinstance(model, PeftModel):
        raise ValueError(
            "model already carries LoRA adapters; apply a mode to a plain CLIPSeg model"
        )
    if not isinstance(model, CLIPSegForImageSegmentation):
        raise TypeError(f"expected CLIPSegForImageSegmentation, got {type(model)}")
    if lora is not None and mode != "lora":
        raise ValueError(f"LoRA settings given for mode {mode!r}")
    if mode == "decoder":
        model.requires_grad_(False)
        model.decoder.requires_grad_(True)
        return model
    if mode == "full":
        model.requires_grad_(True)
        unused = set(unused_parameter_names(model))
        for name, param in model.named_parameters():
            if name in unused:
                param.requires_grad_(False)
        return model
    settings = lora if lora is not None else DEFAULT_LORA
    with _quiet_peft():
        return get_peft_model(model, settings.lora_config(model))


def count_parameters(model: nn.Module) -> dict:
    """Parameter totals (total, trainable, frozen, per part) and trainable ones per part."""
    counts = {
        "total": 0,
        "trainable": 0,
        "frozen": 0,
        "vision": 0,
        "text": 0,
        "decoder": 0,
        "other": 0,
    }
    by_part = dict.fromkeys(("vision", "text", "decoder", "other"), 0)
    for name, param in model.named_parameters():
        n = param.numel()
        part = part_of(name)
        counts["total"] += n
        counts[part] += n
        if param.requires_grad:
            counts["trainable"] += n
            by_part[part] += n
        else:
            counts["frozen"] += n
    counts["trainable_by_part"] = by_part
    return counts


def mode_sizes(config: CLIPSegConfig, lora: LoraSettings | None = None) -> list[dict]:
    """What each mode trains and what `save_trainable` stores, for an architecture.

    Counted on a model without weights (torch's meta device), so the real checkpoint's
    architecture costs nothing to build. `stored_mb` is the stored weights at 4 bytes each
    (fp32, 1 MB = 10^6 bytes, as `folder_size_mb`), without the small config files.
    """
    rows = []
    for mode in MODES:
        with torch.device("meta"):
            model = apply_mode(
                CLIPSegForImageSegmentation(config), mode, lora if mode == "lora" else None
            )
        counts = count_parameters(model)
        stored = {
            "decoder": counts["decoder"],
            "lora": counts["trainable"],  # the adapters only
            "full": counts["total"],  # the whole model, as `save_pretrained` writes it
        }[mode]
        rows.append({
            "mode": mode,
            "trainable_parameters": counts["trainable"],
            "stored_parameters": stored,
            "stored_mb": round(stored * 4 / 1e6, 3),
        })
    return rows


def parameter_groups(
    model: nn.Module,
    mode: str,
    lr: float,
    tower_lr: float | None = None,
    weight_decay: float = 0.01,
) -> list[dict]:
    """AdamW parameter groups over trainable weights.

    Full fine-tuning gives the CLIP towers `tower_lr` (default `lr / 10`) and the decoder
    `lr`; other modes use `lr` throughout. Biases, norms, embeddings and other 1-D weights get
    no weight decay.
    """
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; expected one of {MODES}")
    tower_lr = lr / 10 if tower_lr is None else tower_lr
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_tower = mode == "full" and part_of(name) != "decoder"
        no_decay = param.ndim < 2 or "embedding" in name or "norm" in name
        groups.setdefault(("towers" if is_tower else "main", no_decay), []).append(param)
    result = []
    for (kind, no_decay), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": tower_lr if kind == "towers" else lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{kind}{'-no-decay' if no_decay else ''}",
            }
        )
    if not result:
        raise ValueError("model has no trainable parameters")
    return result


@dataclass
class SavedTrainable:
    """What `save_trainable` records beside the weights."""

    mode: str
    counts: dict = field(default_factory=dict)


def save_trainable(model: nn.Module, mode: str, folder: str | os.PathLike[str]) -> Path:
    """Save what a mode trains (atomically): adapters, the decoder, or the whole model."""
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; expected one of {MODES}")
    folder = Path(folder)
    counts = count_parameters(model)
    with atomic_folder(folder) as tmp:
        if mode == "lora":
            if not isinstance(model, PeftModel):
                raise ValueError("mode 'lora' needs a model returned by apply_mode(model, 'lora')")
            model.save_pretrained(tmp, save_embedding_layers=False)  # no embedding adapters
            _portable_adapter(tmp)
        elif mode == "decoder":
            state = {
                k: v.detach().cpu().contiguous()
                for k, v in unwrap(model).decoder.state_dict().items()
            }
            save_file(state, str(tmp / DECODER_FILE))
        else:
            unwrap(model).save_pretrained(tmp)
        meta = asdict(SavedTrainable(mode=mode, counts=counts))
        (tmp / MODE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def _portable_adapter(folder: Path) -> None:
    """Name a base model of the repository (the tiny model) relative to it in peft's adapter
    config (peft writes the folder it was loaded from) and drop peft's empty model-card
    template: the course writes a card of its own (`helpers.course.model_card`)."""
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if base and PROJECT_ROOT in Path(base).resolve().parents:  # a folder of the repository
        config["base_model_name_or_path"] = shown(base)
        config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").unlink(missing_ok=True)


def saved_mode(folder: str | os.PathLike[str]) -> str:
    """The mode recorded by `save_trainable` in `folder`."""
    path = Path(folder) / MODE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} was not written by save_trainable")
    return json.loads(path.read_text(encoding="utf-8"))["mode"]


def _checked(folder: str | os.PathLike[str], mode: str) -> Path:
    """`folder` as a Path, after checking that `save_trainable` wrote a `mode` checkpoint there."""
    folder = Path(folder)
    recorded = saved_mode(folder)
    if recorded != mode:
        raise ValueError(f"{folder} holds a '{recorded}' checkpoint, not '{mode}'")
    return folder


def load_trainable(
    base_model: CLIPSegForImageSegmentation,
    mode: str,
    folder: str | os.PathLike[str],
    is_trainable: bool = False,
) -> nn.Module:
    """Put what `save_trainable` wrote back onto `base_model` (changed in place for LoRA and
    decoder modes); returns the model in eval mode (a `PeftModel` for "lora")."""
    folder = _checked(folder, mode)
    if isinstance(base_model, PeftModel):
        raise ValueError("load_trainable needs the plain base model, not one with adapters")
    if mode == "lora":  # the adapters' own config (rank, targets) comes from the folder
        with _quiet_peft():
            model: nn.Module = PeftModel.from_pretrained(
                base_model, folder, is_trainable=is_trainable
            )
    else:
        restore_trainable(base_model, mode, folder)
        model = base_model.requires_grad_(False)
        if is_trainable:
            model = apply_mode(model, mode)
    model.eval()
    return model


def _read_weights(path: Path) -> dict:
    """The tensors of one safetensors file; a missing or damaged file is named in the error."""
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # truncated or overwritten: safetensors says little else
        raise ValueError(f"{path} is damaged ({err})") from err


def restore_trainable(model: nn.Module, mode: str, folder: str | os.PathLike[str]) -> None:
    """Copy what `save_trainable` wrote in `folder` back into `model`, in place and exactly.

    `model` is the one being trained (a `PeftModel` for "lora"); it stays on its device. This
    is how a run resumes and restores its best epoch, so a checkpoint stores its weights once.
    """
    folder = _checked(folder, mode)
    if mode == "lora":
        from peft import set_peft_model_state_dict

        path = folder / "adapter_model.safetensors"
        result = set_peft_model_state_dict(model, _read_weights(path))
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path} does not match the model: missing {missing[:3]}, unexpected "
                f"{list(result.unexpected_keys)[:3]}; was it trained with the same LoRA settings?"
            )
    elif mode == "decoder":
        unwrap(model).decoder.load_state_dict(_read_weights(folder / DECODER_FILE), strict=True)
    else:
        files = sorted(folder.glob("model*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no model*.safetensors in {folder}")
        state: dict = {}
        for path in files:
            state.update(_read_weights(path))
        unwrap(model).load_state_dict(state, strict=True)
