"""A model's tokenizer as one JSON text, stored in its export's metadata (``amad.tokenizer``), so
that an exported model predicts with ONNX Runtime, numpy, Pillow and Hugging Face ``tokenizers``
alone: no torch, no open_clip, no transformers.

Three kinds, matching :class:`~amad.data.preprocess.Preprocess`'s tokenizers:

* ``open_clip``: open_clip's ``SimpleTokenizer`` (byte-level BPE with ``</w>`` word ends) rebuilt
  as a ``tokenizers`` BPE model from the same vocabulary and merges. The text is cleaned in Python
  first exactly as open_clip cleans it (ftfy, HTML unescaping, whitespace, lower case); start and
  end tokens, truncation (keeping the end token) and 0 padding follow ``SimpleTokenizer.__call__``.
* ``hf``: a Hugging Face fast tokenizer's own ``tokenizer.json`` (its normaliser and post-processor
  add ``[CLS]`` / ``[SEP]``; truncation keeps the last special token), padded with 0 on the right.
* ``learned``: a byte-level BPE learned from a data set's training texts (:func:`learn_tokenizer`,
  for models whose output layer is the vocabulary: a 49k-way layer would dominate a small
  captioner); NFKC and lower case, ``<pad>`` 0, ``<start>`` 1, ``<end>`` 2. Its payload is the
  model's own tokenizer, saved with the model as well as with its export.

:func:`tokenizer_payload` writes the JSON at export (where open_clip / transformers are loaded);
:class:`SavedTokenizer` reads it. ``tests/test_saved_tokenizer.py`` checks both give the training
tokenizer's ids, text for text.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

OPEN_CLIP_KIND = "open_clip"
HF_KIND = "hf"
LEARNED_KIND = "learned"
LEARNED_SPECIAL_TOKENS = ("<pad>", "<start>", "<end>")  # ids 0, 1, 2
# open_clip's SimpleTokenizer pre-tokenisation (after its special tokens), on lower-cased text
_OPEN_CLIP_SPLIT = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def tokenizer_payload(preprocess: Any) -> str:
    """The ``amad.tokenizer`` metadata of a model's :class:`~amad.data.preprocess.Preprocess`."""
    from amad.data.preprocess import HF_PREFIX, LEARNED_TOKENIZER, _hf_tokenizer, _tokenizer

    if preprocess.tokenizer == LEARNED_TOKENIZER:
        return preprocess.vocabulary
    if preprocess.tokenizer.startswith(HF_PREFIX):
        backend = _hf_tokenizer(preprocess.tokenizer[len(HF_PREFIX) :]).backend_tokenizer
        return json.dumps({"kind": HF_KIND, "tokenizer": backend.to_str()})
    simple = _tokenizer(preprocess.context_length)
    return json.dumps(
        {
            "kind": OPEN_CLIP_KIND,
            "tokenizer": _open_clip_bpe(simple.encoder, simple.bpe_ranks).to_str(),
            "start": simple.sot_token_id,
            "end": simple.eot_token_id,
        }
    )


def learn_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool = True) -> str:
    """The payload of a byte-level BPE learned from ``texts`` (at most ``vocab_size`` tokens: the
    256 bytes, the 3 special tokens and merges seen at least ``min_frequency`` times); NFKC, and
    lower case where ``lowercase`` (captioning; translation keeps the case, for cased BLEU)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(LEARNED_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    start, end = (tokenizer.token_to_id(token) for token in LEARNED_SPECIAL_TOKENS[1:])
    return json.dumps({"kind": LEARNED_KIND, "tokenizer": tokenizer.to_str(), "start": start, "end": end})


def _open_clip_bpe(vocab: dict[str, int], ranks: dict[tuple[str, str], int]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    merges = sorted(ranks, key=ranks.__getitem__)
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_OPEN_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # the special tokens written in a text are those tokens, as open_clip's pattern matches them first
    tokenizer.add_special_tokens([token for token in vocab if token in ("<start_of_text>", "<end_of_text>")])
    return tokenizer


def _open_clip_clean(text: str) -> str:
    """open_clip's ``clean="lower"``: ftfy, HTML unescaped twice, whitespace collapsed, lower case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class SavedTokenizer:
    """Token ids of texts from an ``amad.tokenizer`` payload, as :meth:`Preprocess.token_ids` gives them.

    Args:
        payload: the JSON text :func:`tokenizer_payload` wrote.
        context_length: the model's context (ids are padded or truncated to it).
    """

    def __init__(self, payload: str, context_length: int) -> None:
        from tokenizers import Tokenizer

        data = json.loads(payload)
        self.kind, self.context_length = data["kind"], context_length
        self.tokenizer = Tokenizer.from_str(data["tokenizer"])
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.start, self.end = data.get("start"), data.get("end")

    def _ids(self, text: str) -> list[int]:
        """The ids of one text before truncation, start and end tokens included."""
        if self.kind == OPEN_CLIP_KIND:
            return [self.start, *self.tokenizer.encode(_open_clip_clean(text), add_special_tokens=False).ids, self.end]
        if self.kind == LEARNED_KIND:
            return [self.start, *self.tokenizer.encode(text.strip(), add_special_tokens=False).ids, self.end]
        return self.tokenizer.encode(text).ids

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def decode(self, ids: list[int]) -> str:
        """The text of generated ids: up to the first end token, special tokens and padding left out."""
        if self.end in ids:
            ids = ids[: ids.index(self.end)]
        return self.tokenizer.decode([i for i in ids if i not in (self.start, 0)], skip_special_tokens=True).strip()

    def pieces(self, ids: list[int]) -> list[str]:
        """Each id as the text piece it stands for (``<s>`` / ``</s>``: start, end)."""
        special = {self.start: "<s>", self.end: "</s>"}
        return [special.get(i) or self.tokenizer.decode([i]).strip() or self.tokenizer.id_to_token(i) for i in ids]

    def count(self, text: str) -> int:
        return len(self._ids(text))

    def ids(self, texts: list[str]) -> np.ndarray:
        """int64 ``[N, context_length]``: start, text, end, then 0 padding; longer texts truncated,
        keeping the end token (the last special token)."""
        out = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in enumerate(texts):
            ids = self._ids(text)
            if len(ids) > self.context_length:
                ids = ids[: self.context_length - 1] + ids[-1:]
            out[row, : len(ids)] = ids
        return out
