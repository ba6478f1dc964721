"""CLIPSeg drawn from its config: the two CLIP towers, the decoder, FiLM, and where LoRA goes.

Everything in the figure is read from a `CLIPSegConfig` (number of layers, the vision layers
the decoder reads, `extract_layers`) and from `helpers.model.modes.LoraSettings` (which parts
and which vision layers get adapters), so it is right for the tiny demo model and for the
real checkpoint alike. Vision layers after the last extracted one never reach the output.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from helpers.model.modes import DEFAULT_LORA, LoraSettings

COLOURS = {
    "extracted": "#f4a259",  # a vision layer the decoder reads
    "feeding": "#bcd4e6",  # a vision layer on the way to an extracted one
    "unused": "#e0e0e0",  # after the last extracted layer: never reaches the output
    "text": "#c7e9c0",
    "decoder": "#d9c2e9",
    "film": "#fde68a",
    "io": "#ffffff",
    "lora": "#2e8b57",
}


def _box(ax, x, y, w, h, text, colour, **kwargs):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=colour,
                                edgecolor=kwargs.pop("edgecolor", "#333333"), **kwargs))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8, gid="label")


def _arrow(ax, start, end, colour="#333333", style="-|>", **kwargs):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=colour,
                                 linewidth=1, **kwargs))


def _lora(ax, x, y, h, targets):
    ax.text(x, y + h / 2, f"LoRA {'/'.join(targets)}", ha="left", va="center", fontsize=6.5,
            color="white", gid="lora", bbox={"boxstyle": "round,pad=0.2",
                                              "facecolor": COLOURS["lora"], "edgecolor": "none"})


def architecture_figure(config, lora: LoraSettings | None = DEFAULT_LORA):
    """A matplotlib figure of CLIPSeg as `config` builds it, with `lora`'s adapters marked.

    Vision layers are numbered from 0 as `extract_layers` numbers them; `lora=None` draws
    the model without adapters.
    """
    n_vision = config.vision_config.num_hidden_layers
    extract = list(config.extract_layers)
    parts = set(lora.parts) if lora is not None else set()
    adapted = set(lora.vision_layers_for(n_vision, extract)) if "vision" in parts else set()
    targets = list(lora.target_modules) if lora is not None else []

    top = 1.4 + n_vision * ROW
    fig, ax = plt.subplots(figsize=(11, max(4.5, 0.45 * top + 1.5)))
    ax.set_xlim(-0.2, 14)
    ax.set_ylim(0, top + 1.4)
    ax.axis("off")
    layer_ys = _draw_vision(ax, config, adapted, targets, top)
    emb_y = _draw_text(ax, config, "text" in parts, targets)
    _draw_decoder(ax, config, layer_ys, emb_y, top, targets if "decoder" in parts else None)

    where = ", ".join(p for p in ("vision", "text", "decoder") if p in parts) or "none"
    lora_text = (f"LoRA r={lora.r} on {'/'.join(targets)} in: {where}"
                 + (f" (vision layers {min(adapted)}-{max(adapted)})" if adapted else "")
                 if lora is not None else "no LoRA")
    ax.set_title(f"CLIPSeg: the decoder reads vision layers {extract}; {lora_text}", fontsize=10)
    return fig


ROW = 0.8  # height of one vision layer's row


def _draw_vision(ax, config, adapted: set[int], targets: list[str], top: float) -> dict:
    """The vision tower, one box per layer from the bottom; returns each layer's y."""
    n_vision, extract = config.vision_config.num_hidden_layers, list(config.extract_layers)
    last = max(extract)
    size, patch = config.vision_config.image_size, config.vision_config.patch_size
    grid = size // patch
    text = f"photo {size}x{size} -> {grid}x{grid}\npatches of {patch}x{patch} px"
    _box(ax, 0, 0.1, 3.2, 0.6, text, COLOURS["io"])
    ys = {}
    for i in range(n_vision):
        y = 1.0 + i * ROW
        ys[i] = y
        kind = "extracted" if i in extract else ("feeding" if i <= last else "unused")
        text = {"extracted": f"vision layer {i} -> decoder",
                "feeding": f"vision layer {i}",
                "unused": f"vision layer {i} (unused)"}[kind]
        _box(ax, 0, y, 3.2, ROW * 0.75, text, COLOURS[kind],
             hatch="//" if kind == "unused" else None)
        if i in adapted:
            _lora(ax, 3.3, y, ROW * 0.75, targets)
    if last < n_vision - 1:
        ax.text(3.3, ys[n_vision - 1] + ROW * 0.37, "never reaches the output", fontsize=7,
                style="italic", va="center", gid="label")
    ax.text(1.6, top + 0.2, f"CLIP vision transformer\n({n_vision} layers)", ha="center",
            fontsize=9, weight="bold")
    return ys


def _draw_text(ax, config, adapted: bool, targets: list[str]) -> float:
    """The text tower from prompt to embedding; returns the embedding box's y."""
    _box(ax, 5.2, 0.1, 3.0, 0.6, 'prompt, e.g. "segment crack"', COLOURS["io"])
    text_y = 1.2
    _box(ax, 5.2, text_y, 3.0, 1.4,
         f"CLIP text transformer\n({config.text_config.num_hidden_layers} layers)",
         COLOURS["text"])
    if adapted:
        _lora(ax, 5.3, text_y + 1.45, 0.3, targets)
    emb_y = text_y + 2.2
    _box(ax, 5.2, emb_y, 3.0, 0.6, f"text embedding ({config.projection_dim})", COLOURS["text"])
    _arrow(ax, (6.7, 0.7), (6.7, text_y))
    _arrow(ax, (6.7, text_y + 1.4), (6.7, emb_y))
    return emb_y


def _draw_decoder(ax, config, layer_ys: dict, emb_y: float, top: float,
                  targets: list[str] | None) -> None:
    """The decoder: the deepest extracted layer first, FiLM-conditioned by the text embedding;
    `targets` marks adapters on each block (None: no decoder adapters)."""
    dec_x, dec_h = 10.0, ROW * 0.75
    order = list(config.extract_layers)[::-1]
    prev = 0.0  # the previous decoder block's height
    for k, layer in enumerate(order):
        y = 1.0 + k * (top - 2.0) / max(len(order), 1)
        text = f"reduce to {config.reduce_dim}" + (" + FiLM" if k == 0 else " + add")
        _box(ax, dec_x, y, 2.8, dec_h, f"decoder block {k}\n{text}", COLOURS["decoder"])
        if targets is not None:
            _lora(ax, dec_x + 2.85, y, dec_h, targets)
        _arrow(ax, (3.2, layer_ys[layer] + ROW * 0.37), (dec_x, y + dec_h / 2),
               colour="#c0661d", connectionstyle="arc3,rad=-0.05")
        if k == 0:
            film_y = y + dec_h + 0.3
            _box(ax, 8.7, film_y, 1.2, 0.5, "FiLM\nscale, shift", COLOURS["film"])
            _arrow(ax, (8.2, emb_y + 0.3), (8.9, film_y + 0.5))
            _arrow(ax, (9.3, film_y), (dec_x + 0.3, y + dec_h))
        if k:
            _arrow(ax, (dec_x + 1.4, prev + dec_h), (dec_x + 1.4, y))
        prev = y
    out_y = top + 0.1
    _box(ax, dec_x, out_y, 2.8, 0.6, "upsample -> mask logits", COLOURS["io"])
    _arrow(ax, (dec_x + 1.4, prev + dec_h), (dec_x + 1.4, out_y))
    ax.text(dec_x + 1.4, out_y + 0.8, "CLIPSeg decoder", ha="center", fontsize=9, weight="bold")


def figure_labels(fig) -> list[str]:
    """Every box and adapter label of an `architecture_figure`, top axes first."""
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() in ("label", "lora")]
