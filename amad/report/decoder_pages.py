"""What the generative tasks' report pages share: example inputs spread over the validation split,
text made printable, the preprocessed image shown, the words whose attention is drawn, and a
decoder's cross-attention over the image through open_clip's attentional pooler."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

EXAMPLES = 6  # validation examples on a page
CHOSEN_WORDS = 3  # words whose cross-attention over the image is drawn
POOLER = "visual.attn_pool.attn"  # open_clip's attentional pooler: the decoder reads its outputs
# fmt: off
STOP_WORDS = frozenset({
    # English, then German articles and prepositions (translation targets): words no image decides
    "a", "an", "and", "are", "at", "by", "for", "from", "in", "is", "its", "of", "on", "or", "the", "to", "with",
    "der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "eines", "und", "ist",
    "sind", "von", "mit", "auf", "zu", "zum", "zur", "bei", "aus",
})
# fmt: on


def printable(text: str) -> str:
    """``text`` with control characters (an untrained model writes any byte) shown as ``·``."""
    return "".join(c if c.isprintable() else "·" for c in text)


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A ``summary.md`` section: ``## title`` and a table, each cell made printable, ``|`` as ``/``."""
    lines = ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(printable(cell).replace("|", "/") for cell in cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n\n"


def spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when there are fewer)."""
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]


def shown_image(dataset: Any, image: int) -> np.ndarray:
    """Image ``image`` of ``dataset`` preprocessed, ``[H, W, 3]`` in [0, 1] (normalisation undone)."""
    preprocess = dataset.preprocess
    pixels = dataset.pixels(image).float().numpy().transpose(1, 2, 0)
    return np.clip(pixels * np.asarray(preprocess.std) + np.asarray(preprocess.mean), 0, 1)


def chosen_words(pieces: list[str], count: int = CHOSEN_WORDS) -> list[int]:
    """Token positions of the first ``count`` content words (letters only, 3 or more, not a stop
    word); the first tokens of the text where it has fewer."""
    content = [
        position
        for position, piece in enumerate(pieces)
        if piece.isalpha() and len(piece) >= 3 and piece.lower() not in STOP_WORDS
    ]
    fallback = [position for position, piece in enumerate(pieces) if piece not in ("<s>", "</s>")]
    return (content or fallback)[:count]


@torch.no_grad()
def word_image_attention(model: Any, cross: str, inputs: tuple, positions: list[int]) -> np.ndarray:
    """``[words, heads, 1, keys]``: for the target token at each position, the cross-attention module
    ``cross``'s map at the step that writes it (query ``position - 1``) times the pooler's head-mean
    attention over the vision tokens (class token first), per head; ``model(*inputs)`` teacher-forces
    one example."""
    from amad.distill.capture import capture_attention

    with capture_attention(model, [cross, POOLER]) as capture:
        model(*inputs)
    words = capture.probs(cross)[0].float()  # (H, L-1, image tokens)
    pooler = capture.probs(POOLER)[0].float().mean(0)  # (pooler queries, vision tokens)
    over_vision = torch.einsum("hqi,ik->hqk", words, pooler[1:])  # the decoder reads pooler outputs 1..
    return torch.stack([over_vision[:, position - 1 : position] for position in positions]).numpy()
