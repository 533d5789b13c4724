"""Image and text preprocessing, defined once and saved with every model.

Training, evaluation, export metadata and ``amad predict`` all build their inputs through
:class:`Preprocess`, so they cannot disagree. An exported model's preprocessing carries the
tokenizer saved with it (:mod:`amad.data.saved_tokenizer`) and then needs numpy, Pillow and
``tokenizers`` alone; the training tokenizers (open_clip's, transformers') and torch are imported
only where they are used.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from amad.errors import AmadError, DataError

PAD_TOKEN_ID = 0  # open_clip's SimpleTokenizer and BERT-style tokenizers pad with 0
HF_PREFIX = "hf:"  # tokenizer = "hf:<folder>": a Hugging Face tokenizer from a local folder
LEARNED_TOKENIZER = "learned"  # tokenizer = "learned": the BPE in ``vocabulary`` (learned at prepare)


RESIZE_MODES = ("squash", "shortest")


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``image_size`` (bicubic, RGB), scale to [0, 1], normalise; tokenise to ``context_length``.

    ``resize_mode``: ``squash`` resizes the whole image to a square (amad's own models);
    ``shortest`` resizes the shortest side and centre-crops (open_clip's pretrained models).
    """

    image_size: int
    context_length: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    tokenizer: str = "open_clip.SimpleTokenizer"  # or "hf:<folder>" (see hf_tokenizer_name), or "learned"
    resize_mode: str = "squash"
    vocabulary: str | None = None  # tokenizer "learned": its payload (amad.data.saved_tokenizer.learn_tokenizer)
    # the tokenizer saved with an export (SavedTokenizer), used in place of ``tokenizer``'s; not saved
    saved_tokenizer: Any = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.tokenizer == LEARNED_TOKENIZER) != (self.vocabulary is not None):
            raise AmadError('a "learned" tokenizer, and it alone, needs its vocabulary')
        if self.vocabulary is not None:
            from amad.data.saved_tokenizer import SavedTokenizer

            object.__setattr__(self, "saved_tokenizer", SavedTokenizer(self.vocabulary, self.context_length))

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        if self.vocabulary is None:  # the key is left out, as before it existed
            del values["vocabulary"]
        return {**values, "mean": list(self.mean), "std": list(self.std)}

    def export_metadata(self) -> dict[str, str]:
        """The ONNX metadata an export keeps of it: ``amad.data.preprocess`` (:meth:`to_dict`) and
        ``amad.tokenizer``, the tokenizer for prediction without torch (:mod:`amad.data.saved_tokenizer`)."""
        import json

        from amad.data.saved_tokenizer import tokenizer_payload

        return {"amad.data.preprocess": json.dumps(self.to_dict()), "amad.tokenizer": tokenizer_payload(self)}

    def with_saved_tokenizer(self, payload: str) -> Preprocess:
        """This preprocessing with the tokenizer an export saved (its ``amad.tokenizer`` metadata)."""
        from amad.data.saved_tokenizer import SavedTokenizer

        if self.vocabulary is not None:
            return self  # a learned tokenizer is saved in the preprocessing itself

        copy = dataclasses.replace(self)
        object.__setattr__(copy, "saved_tokenizer", SavedTokenizer(payload, self.context_length))
        return copy

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def resized(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 ``[H, W, 3]`` RGB at the model's size (the part worth caching)."""
        image = _eight_bit(image).convert("RGB")
        size = self.image_size
        if self.resize_mode == "shortest" and image.size != (size, size):
            scale = size / min(image.size)
            width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((width, height), Image.Resampling.BICUBIC)
            left, top = (width - size) // 2, (height - size) // 2
            image = image.crop((left, top, left + size, top + size))
        elif image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)

    def normalize(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]`` -> float32 ``[3, H, W]`` scaled to [0, 1] and normalised."""
        # the same float32 operations as ((x / 255) - mean) / std, in place on the [3, H, W] copy
        pixels = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        np.divide(pixels, np.float32(255.0), out=pixels)
        np.subtract(pixels, np.asarray(self.mean, np.float32)[:, None, None], out=pixels)
        np.divide(pixels, np.asarray(self.std, np.float32)[:, None, None], out=pixels)
        return pixels

    def read_resized(self, path: str | Path) -> np.ndarray:
        """Read an image file -> uint8 ``[H, W, 3]``; DataError names the file if it is unreadable."""
        try:
            with Image.open(path) as image:
                return self.resized(image)
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"{path}: cannot read image ({error})") from None

    def image_array(self, path: str | Path) -> np.ndarray:
        """Read an image file -> float32 ``[3, H, W]``; DataError names the file if it is unreadable."""
        return self.normalize(self.read_resized(path))

    def load_image(self, path: str | Path):
        """Read an image file -> ``[3, H, W]`` tensor; DataError names the file if it is unreadable."""
        import torch

        return torch.from_numpy(self.image_array(path))

    def token_ids(self, texts: list[str]) -> np.ndarray:
        """Texts -> int64 token ids ``[N, context_length]`` (start, text, end, then 0 padding; longer
        texts are truncated, keeping the end token)."""
        if self.saved_tokenizer is not None:
            return self.saved_tokenizer.ids(texts)
        if self.tokenizer.startswith(HF_PREFIX):
            encoded = _hf_tokenizer(self.tokenizer[len(HF_PREFIX) :])(
                texts, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="np"
            )
            return encoded["input_ids"].astype(np.int64)
        return _tokenizer(self.context_length)(texts).long().numpy()

    def tokenize(self, texts: list[str]):
        """:meth:`token_ids` as an int64 tensor."""
        import torch

        return torch.from_numpy(self.token_ids(texts))

    def special_ids(self) -> tuple[int, int]:
        """The ``(start, end)`` token ids that open and close every text."""
        if self.saved_tokenizer is not None and self.saved_tokenizer.start is not None:
            return self.saved_tokenizer.start, self.saved_tokenizer.end
        if self.tokenizer.startswith(HF_PREFIX):
            tokenizer = _hf_tokenizer(self.tokenizer[len(HF_PREFIX) :])
            return tokenizer.cls_token_id, tokenizer.sep_token_id
        simple = _tokenizer(self.context_length)
        return simple.sot_token_id, simple.eot_token_id

    def vocab_size(self) -> int:
        """Token ids run from 0 to this size - 1."""
        if self.saved_tokenizer is not None:
            return self.saved_tokenizer.vocab_size
        if self.tokenizer.startswith(HF_PREFIX):
            return len(_hf_tokenizer(self.tokenizer[len(HF_PREFIX) :]))
        return len(_tokenizer(self.context_length).encoder)

    def decode(self, ids: list[int]) -> str:
        """The text of generated ids, up to the first end token (special tokens and padding left out)."""
        if self.saved_tokenizer is not None and self.saved_tokenizer.kind == "learned":
            return self.saved_tokenizer.decode(ids)
        start, end = self.special_ids()
        ids = ids[: ids.index(end)] if end in ids else ids
        ids = [i for i in ids if i not in (start, PAD_TOKEN_ID)]
        if self.tokenizer.startswith(HF_PREFIX):
            return _hf_tokenizer(self.tokenizer[len(HF_PREFIX) :]).decode(ids, skip_special_tokens=True).strip()
        return _tokenizer(self.context_length).decode(ids).strip()

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each token id as the text piece it stands for (for pictures' axes; ``<s>`` / ``</s>``: start, end)."""
        if self.tokenizer == LEARNED_TOKENIZER:
            return self.saved_tokenizer.pieces(ids)
        if self.tokenizer.startswith(HF_PREFIX):
            return list(_hf_tokenizer(self.tokenizer[len(HF_PREFIX) :]).convert_ids_to_tokens(ids))
        decoder = _tokenizer(self.context_length).decoder
        special = {"<start_of_text>": "<s>", "<end_of_text>": "</s>"}
        return [special.get(piece, piece.replace("</w>", "")) for piece in (decoder.get(i, "?") for i in ids)]

    def token_count(self, text: str) -> int:
        """Tokens of ``text`` before truncation, start and end tokens included."""
        if self.saved_tokenizer is not None:
            return self.saved_tokenizer.count(text)
        if self.tokenizer.startswith(HF_PREFIX):
            return len(_hf_tokenizer(self.tokenizer[len(HF_PREFIX) :])(text)["input_ids"])
        return len(_tokenizer(self.context_length).encode(text)) + 2

    def check_text(self, text: str, flag: str, noun: str) -> None:
        """AmadError naming ``flag`` for an empty ``text`` or one longer than the context (which
        :meth:`tokenize` would truncate)."""
        if not text.strip():
            raise AmadError(f"{flag}: the {noun} is empty")
        count = self.token_count(text)
        if count > self.context_length:
            raise AmadError(
                f"{flag} {text[:40]!r}: {count} tokens long; the model reads at most {self.context_length} "
                "(start and end tokens included): shorten it"
            )


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 8 bits (Pillow's own conversion to RGB clips every value above
    255 to white). A 16-bit PNG opens as ``I;16`` in recent Pillow and as 32-bit ``I`` in older
    releases; an ``I`` image is taken as 16-bit when its values lie in 0-65535 and some exceed 255."""
    if not (image.mode.startswith("I;16") or image.mode == "I"):
        return image
    values = np.asarray(image).astype(np.int64)
    if image.mode == "I" and not (values.size and 255 < values.max() <= 65535 and values.min() >= 0):
        return image  # 8-bit values (or not 16-bit ones) in a 32-bit image
    return Image.fromarray(((values + 128) // 257).astype(np.uint8))  # mode L


def hf_tokenizer_name(folder: str) -> str:
    """The ``tokenizer`` value of a Hugging Face tokenizer stored in a local folder."""
    return HF_PREFIX + folder


_TOKENIZERS: dict = {}


def _tokenizer(context_length: int):
    """open_clip's SimpleTokenizer at ``context_length`` (open_clip imports torch)."""
    if context_length not in _TOKENIZERS:
        from open_clip.tokenizer import SimpleTokenizer

        _TOKENIZERS[context_length] = SimpleTokenizer(context_length=context_length)
    return _TOKENIZERS[context_length]


@functools.cache
def _hf_tokenizer(folder: str):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise AmadError("Hugging Face tokenizers need transformers: pip install 'amad[hf]'") from None
    if not Path(folder).is_dir():
        raise AmadError(f"tokenizer folder {folder} not found (the model was built with it; copy it back)")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def check_hf_tokenizer(folder: str, key: str) -> None:
    """The folder's tokenizer pads on the right with id 0 (the masks and pooling rely on both)."""
    from amad.errors import ConfigError

    tokenizer = _hf_tokenizer(folder)
    if tokenizer.pad_token_id != PAD_TOKEN_ID or tokenizer.padding_side != "right":
        raise ConfigError(
            key,
            f"the tokenizer in {folder} pads on the {tokenizer.padding_side} with id {tokenizer.pad_token_id}; "
            f"amad needs right padding with id {PAD_TOKEN_ID} (BERT-style)",
        )
