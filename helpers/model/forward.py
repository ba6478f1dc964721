"""A CLIPSeg forward pass whose gradients reach the CLIP towers.

`CLIPSegForImageSegmentation.forward` runs the vision and text encoders under
`torch.no_grad()`, so adapters or unfrozen weights there never learn. The functions here
compute the same logits from the same modules, with gradients enabled in each part exactly
when that part has trainable parameters. They also skip the vision layers after the last
extract layer (they never influence the logits), and let several prompts share one vision
pass. Plain models and peft-wrapped models are both accepted.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor, nn
from transformers import CLIPSegForImageSegmentation


def unwrap(model: nn.Module) -> CLIPSegForImageSegmentation:
    """The `CLIPSegForImageSegmentation` inside a (possibly peft-wrapped) model."""
    if isinstance(model, CLIPSegForImageSegmentation):
        return model
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        base = get_base()
        if isinstance(base, CLIPSegForImageSegmentation):
            return base
    raise TypeError(
        f"expected a CLIPSegForImageSegmentation (or a peft wrapper), got {type(model)}"
    )


def _has_trainable(modules: Sequence[nn.Module]) -> bool:
    return any(p.requires_grad for m in modules for p in m.parameters())


def _device(model: CLIPSegForImageSegmentation) -> torch.device:
    return next(model.parameters()).device


def _vision_parts(base: CLIPSegForImageSegmentation) -> list[nn.Module]:
    vision = base.clip.vision_model
    n = max(base.extract_layers) + 1
    return [vision.embeddings, vision.pre_layrnorm, *vision.encoder.layers[:n]]


def _text_parts(base: CLIPSegForImageSegmentation) -> list[nn.Module]:
    return [base.clip.text_model, base.clip.text_projection]


def vision_trainable(model: nn.Module) -> bool:
    """True when a vision parameter that influences the logits has `requires_grad`."""
    return _has_trainable(_vision_parts(unwrap(model)))


def text_trainable(model: nn.Module) -> bool:
    """True when the text tower or its projection has a parameter with `requires_grad`."""
    return _has_trainable(_text_parts(unwrap(model)))


def decoder_trainable(model: nn.Module) -> bool:
    """True when the decoder has a parameter with `requires_grad`."""
    return _has_trainable([unwrap(model).decoder])


def _run_layer(layer: nn.Module, hidden: Tensor) -> Tensor:
    # transformers 4.x encoder layers take a causal mask and return a tuple; 5.x return a tensor.
    if "causal_attention_mask" in inspect.signature(layer.forward).parameters:
        out = layer(hidden, None, None)
    else:
        out = layer(hidden, None)
    return out[0] if isinstance(out, tuple) else out


def vision_activations(model: nn.Module, pixel_values: Tensor) -> list[Tensor]:
    """Vision hidden states after each extract layer (`hidden_states[i + 1]` of the stock model).

    Runs only the layers up to the last extract layer. Position embeddings are interpolated
    when the input size differs from the config's (352 input on the 224 checkpoint).
    """
    base = unwrap(model)
    vision = base.clip.vision_model
    if pixel_values.dim() == 3:
        pixel_values = pixel_values.unsqueeze(0)
    pixel_values = pixel_values.to(_device(base))
    wanted = set(base.extract_layers)
    grad = torch.is_grad_enabled() and vision_trainable(base)
    activations: list[Tensor] = []
    with torch.set_grad_enabled(grad):
        hidden = vision.embeddings(pixel_values, interpolate_pos_encoding=True)
        hidden = vision.pre_layrnorm(hidden)
        for index, layer in enumerate(vision.encoder.layers[: max(wanted) + 1]):
            hidden = _run_layer(layer, hidden)
            if index in wanted:
                activations.append(hidden)
    return [activations[sorted(wanted).index(i)] for i in base.extract_layers]


def text_embeddings(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Conditional embeddings (B, projection_dim) as `get_conditional_embeddings` computes them."""
    base = unwrap(model)
    device = _device(base)
    input_ids = input_ids.to(device)
    attention_mask = attention_mask.to(device) if attention_mask is not None else None
    grad = torch.is_grad_enabled() and text_trainable(base)
    with torch.set_grad_enabled(grad):
        out = base.clip.get_text_features(input_ids, attention_mask=attention_mask)
    # transformers 5 returns an output object, 4.x a tensor
    return out.pooler_output if hasattr(out, "pooler_output") else out


class TextEmbeddingCache:
    """Text embeddings per prompt, computed once while the text tower is frozen.

    When the text tower (or its projection) has trainable parameters the cache is bypassed and
    every call recomputes the embeddings with gradients. Entries belong to one model; call
    `clear()` after changing that model's text weights by other means.
    """

    def __init__(self) -> None:
        self._store: dict[Hashable, Tensor] = {}
        self._owner: int | None = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget every cached embedding."""
        self._store.clear()
        self._owner = None

    def embeddings(
        self,
        model: nn.Module,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        keys: Sequence[Hashable] | None = None,
    ) -> Tensor:
        """Embeddings for each row; `keys` (e.g. prompt strings) default to the token ids."""
        base = unwrap(model)
        if text_trainable(base):
            return text_embeddings(base, input_ids, attention_mask)
        if self._owner != id(base):
            self.clear()
            self._owner = id(base)
        if keys is None:
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            keys = [tuple(row[m.bool()].tolist()) for row, m in zip(input_ids, mask, strict=True)]
        if len(keys) != len(input_ids):
            raise ValueError(f"{len(keys)} cache keys for {len(input_ids)} token rows")
        missing: dict[Hashable, int] = {}
        for row, key in enumerate(keys):
            if key not in self._store and key not in missing:
                missing[key] = row
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            rows = torch.tensor(list(missing.values()))
            mask = attention_mask[rows] if attention_mask is not None else None
            with torch.no_grad():
                new = text_embeddings(base, input_ids[rows], mask)
            for key, emb in zip(missing, new, strict=True):
                self._store[key] = emb.detach()
        return torch.stack([self._store[key] for key in keys]).to(_device(base))


def decode(model: nn.Module, activations: Sequence[Tensor], embeddings: Tensor) -> Tensor:
    """Decoder logits (B, H, W) from vision activations and conditional embeddings."""
    base = unwrap(model)
    batch = activations[0].shape[0]
    if embeddings.shape[0] != batch:
        raise ValueError(f"{embeddings.shape[0]} conditional embeddings for {batch} images")
    grad = torch.is_grad_enabled() and (
        decoder_trainable(base)
        or embeddings.requires_grad
        or any(a.requires_grad for a in activations)
    )
    with torch.set_grad_enabled(grad):
        logits = base.decoder(list(activations), embeddings).logits
    if logits.dim() == 2:  # older transformers squeeze a batch of one
        logits = logits.unsqueeze(0)
    return logits


def _embeddings(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    text_cache: TextEmbeddingCache | None,
    prompts: Sequence[str] | None,
) -> Tensor:
    if text_cache is not None:
        return text_cache.embeddings(model, input_ids, attention_mask, keys=prompts)
    return text_embeddings(model, input_ids, attention_mask)


def segment(
    model: nn.Module,
    pixel_values: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    text_cache: TextEmbeddingCache | None = None,
    prompts: Sequence[str] | None = None,
) -> Tensor:
    """Logits (B, H, W) for B images with one prompt each; gradients reach trainable towers."""
    activations = vision_activations(model, pixel_values)
    embeddings = _embeddings(model, input_ids, attention_mask, text_cache, prompts)
    return decode(model, activations, embeddings)


def segment_prompts(
    model: nn.Module,
    pixel_values: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    text_cache: TextEmbeddingCache | None = None,
    prompts: Sequence[str] | None = None,
) -> Tensor:
    """Logits (B, P, H, W): every one of P prompts on every one of B images.

    The vision tower runs once per image and the decoder once for all B x P pairs: the
    activations are repeated P times per image and the P conditional embeddings tiled B
    times, so row b * P + p of the decoder batch is image b under prompt p.
    """
    activations = vision_activations(model, pixel_values)
    embeddings = _embeddings(model, input_ids, attention_mask, text_cache, prompts)
    return decode_prompts(model, activations, embeddings)


def decode_prompts(model: nn.Module, activations: Sequence[Tensor], embeddings: Tensor) -> Tensor:
    """Decoder logits (B, P, H, W) for P conditional embeddings on each of B images, one call."""
    batch, count = activations[0].shape[0], embeddings.shape[0]
    repeated = [a.repeat_interleave(count, dim=0) for a in activations]
    tiled = embeddings.repeat(batch, 1)
    logits = decode(model, repeated, tiled)
    return logits.reshape(batch, count, *logits.shape[-2:])
