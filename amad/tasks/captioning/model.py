"""The captioning model: an open_clip CoCa built at the configured shapes.

:class:`CaptioningModel` *is* open_clip's ``CoCa`` (same modules, same state-dict keys, so an open_clip
CoCa checkpoint loads as it is), with amad's ``forward``: teacher-forced next-token logits plus the
contrastive embeddings, as named outputs.

Attention modules (the paths :mod:`amad.distill.capture` captures), by group:

* ``vision_self``: ``visual.transformer.resblocks.{i}.attn`` (patch tokens and the class token)
* ``text_self``: ``text.transformer.resblocks.{i}.attn`` (causal; the caption's tokens and CoCa's
  class token appended after them)
* ``decoder_self``: ``text_decoder.resblocks.{i}.attn`` (causal, the caption's tokens)
* ``decoder_cross``: ``text_decoder.cross_attn.{i}.attn`` (caption tokens x image tokens)

Generation does not run this ``forward``: :mod:`amad.tasks.captioning.decoder` steps the same weights
with a key/value cache.
"""

from __future__ import annotations

import math
from pathlib import Path

from open_clip.coca_model import CoCa, MultimodalCfg
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from torch import Tensor, nn
from torch.nn import functional as F

from amad.data.preprocess import PAD_TOKEN_ID, Preprocess
from amad.errors import AmadError
from amad.generation.search import SpecialTokens
from amad.tasks.captioning.config import ModelConfig


def architecture_config(name: str | None) -> dict:
    """open_clip's config dict of ``name`` (``{}`` for none)."""
    if name is None:
        return {}
    import open_clip

    config = open_clip.get_model_config(name)
    if config is None:
        raise AmadError(f"{name!r} is not an open_clip model config")
    return config


def preprocess_of(config: ModelConfig, context_length: int, vocabulary: str | None) -> Preprocess:
    """The preprocessing of a model built from ``config``: the captions' context and tokenizer (the
    learned ``vocabulary``, or open_clip's where it is None); an open_clip architecture brings its
    image mean / std and its resize (shortest side + centre crop)."""
    extra: dict = {"tokenizer": "learned", "vocabulary": vocabulary} if vocabulary is not None else {}
    if config.architecture is not None:
        preprocess = architecture_config(config.architecture).get("preprocess_cfg", {})
        extra["mean"] = tuple(preprocess.get("mean", OPENAI_DATASET_MEAN))
        extra["std"] = tuple(preprocess.get("std", OPENAI_DATASET_STD))
        extra["resize_mode"] = preprocess.get("resize_mode", "shortest")
    return Preprocess(image_size=config.vision.image_size, context_length=context_length, **extra)


class CaptioningModel(CoCa):
    """An open_clip CoCa of the configured shape over a ``vocab_size`` vocabulary and captions of
    ``context_length`` tokens.

    ``forward(pixels, tokens)`` returns ``logits [B, L-1, V]`` (token ``t+1`` predicted from tokens
    ``0..t`` and the image) and the contrastive pair's ``scaled_image_embedding`` /
    ``scaled_text_embedding`` ``[B, E]`` (unit length times ``sqrt(exp(logit_scale))``: their products are
    CoCa's contrastive logits). ``special_tokens``: the vocabulary's start, end and padding ids.
    """

    def __init__(
        self, config: ModelConfig, vocab_size: int, context_length: int, special_tokens: SpecialTokens
    ) -> None:
        architecture = architecture_config(config.architecture)
        vision, text, decoder = config.vision, config.text, config.decoder
        vision_cfg = CLIPVisionCfg(
            **{
                **architecture.get("vision_cfg", {}),
                "image_size": vision.image_size,
                "patch_size": vision.patch_size,
                "width": vision.width,
                "layers": vision.depth,
                "head_width": vision.width // vision.heads,
                "mlp_ratio": vision.mlp_ratio,
                "attentional_pool": True,
                "attn_pooler_queries": vision.pooler_queries,
                "attn_pooler_heads": vision.pooler_heads,
                "output_tokens": True,
            }
        )
        text_cfg = CLIPTextCfg(
            **{
                **architecture.get("text_cfg", {}),
                "context_length": context_length,
                "vocab_size": vocab_size,
                "width": config.embed_dim,
                "heads": text.heads,
                "layers": text.depth,
                "mlp_ratio": text.mlp_ratio,
                "embed_cls": True,
                "output_tokens": True,
                "pad_id": PAD_TOKEN_ID,
            }
        )
        multimodal_cfg = MultimodalCfg(
            **{
                **architecture.get("multimodal_cfg", {}),
                "context_length": context_length,
                "vocab_size": vocab_size,
                "width": config.embed_dim,
                "heads": decoder.heads,
                "layers": decoder.depth,
                "mlp_ratio": decoder.mlp_ratio,
            }
        )
        super().__init__(
            config.embed_dim,
            multimodal_cfg,
            text_cfg,
            vision_cfg,
            quick_gelu=architecture.get("quick_gelu", False),
            pad_id=PAD_TOKEN_ID,
        )
        # open_clip leaves the decoder's output projection uninitialised (torch.empty; its
        # MultimodalTransformer.init_parameters fails on a missing attribute): as open_clip's text tower does
        nn.init.normal_(self.text_decoder.text_projection, std=config.embed_dim**-0.5)
        self.config = config
        self.vocab_size = vocab_size
        self.special_tokens = special_tokens
        self.max_caption_tokens = context_length - 1  # the caption and its end token: the trained positions

    def encode_image_tokens(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """``pixels [B, 3, H, W]`` -> (unit-length image embedding ``[B, E]``, image tokens ``[B, N, E]``
        the decoder's cross-attention reads)."""
        latent, tokens = self.visual(pixels)
        return F.normalize(latent, dim=-1), tokens

    def forward(self, pixels: Tensor, tokens: Tensor) -> dict[str, Tensor]:
        """See the class docstring. ``tokens [B, L]`` int64: start, caption, end, then 0 padding."""
        image_latent, image_tokens = self.encode_image_tokens(pixels)
        text_latent, token_states = self.text(tokens)
        logits = self.text_decoder(image_tokens, token_states[:, :-1])
        scale = self.logit_scale.clamp(max=math.log(100)).exp().sqrt()
        return {
            "logits": logits,
            "scaled_image_embedding": image_latent * scale,
            "scaled_text_embedding": F.normalize(text_latent, dim=-1) * scale,
        }

    def attention_groups(self) -> dict[str, list[str]]:
        """Attention module paths per group, each list ordered by depth."""
        return {
            "vision_self": [
                f"visual.transformer.resblocks.{i}.attn" for i in range(len(self.visual.transformer.resblocks))
            ],
            "text_self": [f"text.transformer.resblocks.{i}.attn" for i in range(len(self.text.transformer.resblocks))],
            "decoder_self": [f"text_decoder.resblocks.{i}.attn" for i in range(len(self.text_decoder.resblocks))],
            "decoder_cross": [f"text_decoder.cross_attn.{i}.attn" for i in range(len(self.text_decoder.cross_attn))],
        }


def load_open_clip_checkpoint(model: CaptioningModel, path: str | Path, key: str) -> None:
    """Load an open_clip CoCa checkpoint file into ``model`` (every tensor must fit).

    Raises:
        AmadError: naming ``key`` and the file, when tensors are missing, unexpected or misshapen.
    """
    from open_clip.factory import load_state_dict

    try:
        state = load_state_dict(str(path))
    except Exception as error:
        raise AmadError(f"{key}: cannot read {path} as an open_clip checkpoint ({error})") from None
    for buffer in ("text.attn_mask", "text_decoder.attn_mask"):
        state.pop(buffer, None)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        problems = [
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
            if keys
        ]
        raise AmadError(f"{key}: {path} does not fit the configured model ({'; '.join(problems)})")
    model.load_state_dict(state)
