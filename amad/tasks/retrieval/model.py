"""The retrieval task model: a CLIP (open_clip vision transformer + open_clip or Hugging Face text
tower, projections to a shared embedding, learned logit scale).

Attention modules (the paths :mod:`amad.distill.capture` captures), by group:

* ``vision_self``: ``visual.transformer.resblocks.{i}.attn`` (``nn.MultiheadAttention``, image tokens)
* ``text_self``: ``text.transformer.resblocks.{i}.attn`` (causal ``nn.MultiheadAttention``), or
  ``text.model.encoder.layer.{i}.attention.self`` for a Hugging Face text tower (bidirectional)

State-dict keys follow open_clip's ``CLIP`` with the text tower under ``text.``, so an open_clip
checkpoint loads after moving its text keys (:func:`load_open_clip_checkpoint`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIPTextCfg, CLIPVisionCfg, _build_text_tower, _build_vision_tower
from torch import Tensor, nn
from torch.nn import functional as F

from amad.data.preprocess import PAD_TOKEN_ID, Preprocess, hf_tokenizer_name
from amad.errors import AmadError
from amad.models.hf_text import HFTextTower
from amad.tasks.retrieval.config import ModelConfig

TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection", "attn_mask")
UNSUPPORTED = {  # open_clip settings whose towers amad cannot build, capture or tokenise
    "vision_cfg": ("timm_model_name", "block_type", "qk_norm", "scaled_cosine_attn", "scale_heads", "attentional_pool"),
    "text_cfg": (
        "hf_model_name",
        "hf_tokenizer_name",
        "block_type",
        "qk_norm",
        "scaled_cosine_attn",
        "scale_heads",
        "embed_cls",
        "output_tokens",
    ),
}


def architecture_config(name: str | None) -> dict:
    """open_clip's config dict of ``name`` (``{}`` for none)."""
    if name is None:
        return {}
    import open_clip

    config = open_clip.get_model_config(name)
    if config is None:
        raise AmadError(f"{name!r} is not an open_clip model config")
    return config


def unsupported_settings(name: str) -> list[str]:
    """Settings of open_clip config ``name`` that amad does not support (empty: supported)."""
    config = architecture_config(name)
    found = [
        f"{section}.{field}"
        for section, fields in UNSUPPORTED.items()
        for field in fields
        if config.get(section, {}).get(field) not in (None, False, "default")
    ]
    if not isinstance(config.get("vision_cfg", {}).get("layers", 0), int):
        found.append("vision_cfg.layers (a ResNet image tower)")
    found += [key for key in ("multimodal_cfg",) if key in config]
    return found


def preprocess_of(config: ModelConfig) -> Preprocess:
    """The preprocessing of a model built from ``config``: an open_clip architecture brings its image
    mean / std (OpenAI's unless its config names others) and its resize (shortest side + centre
    crop), a Hugging Face tower its tokenizer."""
    text = config.text
    extra: dict = {"tokenizer": hf_tokenizer_name(text.hf_model)} if text.hf_model is not None else {}
    if config.architecture is not None:  # open_clip's preprocessing defaults, as the config overrides them
        preprocess = architecture_config(config.architecture).get("preprocess_cfg", {})
        extra["mean"] = tuple(preprocess.get("mean", OPENAI_DATASET_MEAN))
        extra["std"] = tuple(preprocess.get("std", OPENAI_DATASET_STD))
        extra["resize_mode"] = preprocess.get("resize_mode", "shortest")
    return Preprocess(image_size=config.vision.image_size, context_length=text.context_length, **extra)


class RetrievalModel(nn.Module):
    """A CLIP of the configured shape.

    ``forward(pixels, tokens)`` returns the pairs' ``scaled_image_embedding`` and
    ``scaled_text_embedding`` ``[B, E]``, L2-normalised and multiplied by ``sqrt(exp(logit_scale))``:
    their dot products are the model's contrastive logits. :meth:`encode_image` and
    :meth:`encode_text` return unit-length embeddings (what retrieval ranks by, and what is exported).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        architecture = architecture_config(config.architecture)
        quick_gelu = architecture.get("quick_gelu", False)
        vision, text = config.vision, config.text
        vision_cfg = CLIPVisionCfg(
            **{
                **architecture.get("vision_cfg", {}),
                "image_size": vision.image_size,
                "patch_size": vision.patch_size,
                "width": vision.width,
                "layers": vision.depth,
                "head_width": vision.width // vision.heads,
                "mlp_ratio": vision.mlp_ratio,
            }
        )
        self.visual = _build_vision_tower(config.embed_dim, vision_cfg, quick_gelu=quick_gelu)
        self.hf_text = text.hf_model is not None
        if self.hf_text:
            self.text = HFTextTower(text)
            self.text_proj = nn.Linear(text.width, config.embed_dim, bias=False)
        else:
            text_cfg = CLIPTextCfg(
                **{
                    **architecture.get("text_cfg", {}),
                    "context_length": text.context_length,
                    "width": text.width,
                    "heads": text.heads,
                    "layers": text.depth,
                    "mlp_ratio": text.mlp_ratio,
                    "pad_id": PAD_TOKEN_ID,
                }
            )
            self.text = _build_text_tower(config.embed_dim, text_cfg, quick_gelu=quick_gelu)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.freeze(config.frozen.vision, config.frozen.text)

    def freeze(self, vision: bool, text: bool) -> None:
        """Fix the weights of the chosen towers (their projections to the embedding still train)."""
        if vision:
            for name, parameter in self.visual.named_parameters():
                parameter.requires_grad_(name == "proj")
        if text:
            for name, parameter in self.text.named_parameters():
                parameter.requires_grad_(name == "text_projection")

    @property
    def preprocess(self) -> Preprocess:
        return preprocess_of(self.config)

    def encode_image(self, pixels: Tensor) -> Tensor:
        """``pixels [B, 3, H, W]`` -> unit-length image embeddings ``[B, E]``."""
        return F.normalize(self.visual(pixels), dim=-1)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """``tokens [B, L]`` int64 (0: padding) -> unit-length text embeddings ``[B, E]``."""
        if self.hf_text:
            states = self.text(tokens)  # (B, L, width)
            real = (tokens != PAD_TOKEN_ID).unsqueeze(-1).to(states.dtype)  # (B, L, 1)
            pooled = (states * real).sum(1) / real.sum(1).clamp(min=1)  # mean over real tokens
            return F.normalize(self.text_proj(pooled), dim=-1)
        return F.normalize(self.text(tokens), dim=-1)

    def forward(self, pixels: Tensor, tokens: Tensor) -> dict[str, Tensor]:
        """The pairs' scaled embeddings ``[B, E]`` (see the class docstring)."""
        scale = self.logit_scale.clamp(max=math.log(100)).exp().sqrt()
        scaled = torch.stack((self.encode_image(pixels), self.encode_text(tokens)), dim=1) * scale  # (B, 2, E)
        return {"scaled_image_embedding": scaled[:, 0], "scaled_text_embedding": scaled[:, 1]}

    def attention_groups(self) -> dict[str, list[str]]:
        """Attention module paths per group, each list ordered by depth."""
        vision = [f"visual.transformer.resblocks.{i}.attn" for i in range(len(self.visual.transformer.resblocks))]
        if self.hf_text:
            text = [f"text.model.encoder.layer.{i}.attention.self" for i in range(len(self.text.model.encoder.layer))]
        else:
            text = [f"text.transformer.resblocks.{i}.attn" for i in range(len(self.text.transformer.resblocks))]
        return {"vision_self": vision, "text_self": text}


class ImageEncoder(nn.Module):
    """``pixels -> unit-length embeddings``: the exported ``image`` graph of a :class:`RetrievalModel`."""

    def __init__(self, model: RetrievalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        return {"image_embedding": self.model.encode_image(pixels)}


class TextEncoder(nn.Module):
    """``tokens -> unit-length embeddings``: the exported ``text`` graph of a :class:`RetrievalModel`."""

    def __init__(self, model: RetrievalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        return {"text_embedding": self.model.encode_text(tokens)}


def load_open_clip_checkpoint(model: RetrievalModel, path: str | Path, key: str) -> None:
    """Load an open_clip checkpoint file into ``model`` (open_clip text tower; every tensor must fit).

    Raises:
        AmadError: naming ``key`` and the file, when tensors are missing, unexpected or misshapen.
    """
    from open_clip.factory import load_state_dict

    try:
        state = load_state_dict(str(path))
    except Exception as error:
        raise AmadError(f"{key}: cannot read {path} as an open_clip checkpoint ({error})") from None
    state = {(f"text.{k}" if k.startswith(TEXT_KEYS) else k): v for k, v in state.items()}
    state.pop("text.attn_mask", None)
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
