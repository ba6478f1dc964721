"""Source code a notebook shows as text: the stock CLIPSeg forward beside the course's.

The excerpts are read from the installed code (`inspect`), so what a student reads is what
runs: the lines of `CLIPSegForImageSegmentation` that compute the two CLIP towers under
`torch.no_grad()`, and the lines of `helpers.model.forward` that compute them with gradients
whenever they hold trainable weights.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable


def excerpt(func: Callable, start: str, end: str) -> str:
    """The lines of `func`'s source from the first containing `start` to the next containing
    `end`, dedented, under a comment naming the function and its line numbers."""
    lines, first = inspect.getsourcelines(func)
    try:
        i = next(n for n, line in enumerate(lines) if start in line)
        j = next(n for n in range(i, len(lines)) if end in lines[n])
    except StopIteration:
        raise ValueError(
            f"{func.__qualname__} has no lines from {start!r} to {end!r}: the code changed"
        ) from None
    name = f"{func.__module__}.{func.__qualname__}"
    header = f"# {name}, lines {first + i}-{first + j}\n"
    return header + textwrap.dedent("".join(lines[i:j + 1]))


def forward_listings() -> dict[str, str]:
    """{"stock": ..., "course": ...}: how each forward computes the vision and text towers."""
    from transformers import CLIPSegForImageSegmentation

    from helpers.model.forward import text_embeddings, vision_activations

    stock = CLIPSegForImageSegmentation
    return {
        "stock": "\n".join([
            excerpt(stock.forward, "with torch.no_grad():", "activations = ["),
            excerpt(stock.get_conditional_embeddings, "with torch.no_grad():", "pooler_output"),
        ]),
        "course": "\n".join([
            excerpt(vision_activations, "grad = torch.is_grad_enabled()", "activations.append("),
            excerpt(text_embeddings, "grad = torch.is_grad_enabled()", "get_text_features("),
        ]),
    }
