"""A small CLIP-style BPE tokenizer for the tiny model (CLIP's own vocabulary is not shipped).

It follows CLIP's scheme exactly - lower-cased text, byte-level characters, words ending in
`</w>`, `<|startoftext|>` / `<|endoftext|>` around every prompt, padding with `<|endoftext|>`,
77 tokens at most - but with a vocabulary of about a thousand tokens whose merges build the
words of the course prompts (and a few hundred common English words) as single tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache

from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MAX_LENGTH = 77

# Words of the course prompts (helpers.data.prompts) and of prompts a reader is likely to try.
PROMPT_WORDS = (
    "segment crack wall surface drywall fracture taping area joint tape seam line "
    "cracks walls joints seams lines tapes tapings fractures surfaces areas"
)
COMMON_WORDS = (
    "a an the of and or in on at to for with from by as is are was be this that it its "
    "photo image picture region mask object thing part piece spot area zone "
    "hole holes damage damaged paint painted dent stain mark marks scratch gap gaps "
    "window door floor ceiling corner edge edges screw screws nail nails patch patches "
    "mud compound plaster board boards gypsum sheet panel panels defect defects fault "
    "split break broken hairline thin thick long short wide narrow small large big "
    "dark light white black grey gray brown blue red green yellow "
    "tile tiles brick bricks concrete wood wooden metal water mold moisture "
    "background foreground room house building interior exterior construction site "
    "vertical horizontal straight curved diagonal join joined taped tiled "
    "person people dog cat car tree sky road grass "
    "segmentation detect find show highlight locate all every some any no not "
    "inspection quality check repair finish finished unfinished rough smooth texture"
)
# Words of the tiny model's pretraining prompts (helpers.demo.shapes.SHAPE_PROMPTS).
SHAPE_WORDS = "band bands stripe stripes blob blobs round square squares box boxes shape circle"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from the 256 bytes to printable unicode characters."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _bpe(word: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one pre-tokenised word (the last symbol already carries `</w>`)."""
    parts = list(word)
    while len(parts) > 1:
        pairs = [
            (ranks.get((a, b)), i)
            for i, (a, b) in enumerate(zip(parts[:-1], parts[1:], strict=True))
        ]
        known = [(r, i) for r, i in pairs if r is not None]
        if not known:
            break
        best = min(known)[0]
        a, b = next((parts[i], parts[i + 1]) for r, i in known if r == best)
        merged: list[str] = []
        i = 0
        while i < len(parts):
            if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def _word_symbols(word: str) -> tuple[str, ...]:
    table = bytes_to_unicode()
    chars = [table[b] for b in word.encode("utf-8")]
    chars[-1] = chars[-1] + END_OF_WORD
    return tuple(chars)


def build_vocab_and_merges(
    extra_words: tuple[str, ...] = (),
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (bytes, bytes + `</w>`, merged words, specials last) and the merge list.

    Each word gets merges that join its current BPE pieces left to right, appended after every
    earlier merge, so adding a word never changes how earlier words are split.
    """
    table = bytes_to_unicode()
    base = list(table.values())
    vocab_list = base + [c + END_OF_WORD for c in base]
    known = set(vocab_list)
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    words = dict.fromkeys(
        w
        for text in (PROMPT_WORDS, COMMON_WORDS, SHAPE_WORDS, " ".join(extra_words))
        for w in re.findall(r"[a-z]+", text.lower())
    )
    for word in words:
        parts = _bpe(_word_symbols(word), ranks)
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
            joined = parts[0] + parts[1]
            if joined not in known:
                known.add(joined)
                vocab_list.append(joined)
            parts = [joined, *parts[2:]]
    vocab_list += [BOS_TOKEN, EOS_TOKEN]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def build_tiny_tokenizer(extra_words: tuple[str, ...] = ()) -> CLIPTokenizer:
    """A CLIPTokenizer with the small vocabulary; pad = unk = eos, 77 tokens at most."""
    vocab, merges = build_vocab_and_merges(extra_words)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=MAX_LENGTH,
    )
