"""The VQA task model: timm ViT + open_clip text transformer + BLIP-style fusion + answer head.

Attention modules (the paths :mod:`amad.distill.capture` captures), by group:

* ``vision_self``: ``vision.blocks.{i}.attn`` (timm ``Attention``, image tokens)
* ``text_self``: ``text.transformer.resblocks.{i}.attn`` (causal ``nn.MultiheadAttention``), or
  ``text.model.encoder.layer.{i}.attention.self`` for a Hugging Face text tower (bidirectional)
* ``fusion_self``: ``fusion.resblocks.{i}.attn`` (causal self-attention over the question)
* ``fusion_cross``: ``fusion.cross_attn.{i}.attn`` (question tokens attend to image tokens)
"""

from __future__ import annotations

import timm
import torch
from open_clip.transformer import MultimodalTransformer, TextTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from amad.data.preprocess import PAD_TOKEN_ID, Preprocess, hf_tokenizer_name
from amad.models.hf_text import HFTextTower
from amad.tasks.vqa.config import ATTENTION_GROUPS, ModelConfig, VisionConfig

VOCAB_SIZE = 49408  # open_clip SimpleTokenizer


def build_vision_tower(config: VisionConfig) -> VisionTransformer:
    """A timm ViT returning all tokens (no pooling, no classifier)."""
    if config.timm_name:
        weights = {"pretrained_cfg_overlay": {"file": config.timm_weights}} if config.timm_weights else {}
        return timm.create_model(
            config.timm_name,
            pretrained=config.timm_weights is not None,
            num_classes=0,
            global_pool="",
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.width,
            depth=config.depth,
            num_heads=config.heads,
            mlp_ratio=config.mlp_ratio,
            **weights,
        )
    return VisionTransformer(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.width,
        depth=config.depth,
        num_heads=config.heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=True,
        num_classes=0,
        global_pool="",
    )


def preprocess_of(config: ModelConfig) -> Preprocess:
    """The preprocessing of a model built from ``config`` (a Hugging Face text tower brings its tokenizer)."""
    text = config.text
    tokenizer = {"tokenizer": hf_tokenizer_name(text.hf_model)} if text.hf_model is not None else {}
    return Preprocess(image_size=config.vision.image_size, context_length=text.context_length, **tokenizer)


class VQAModel(nn.Module):
    """Answer classifier over a fixed answer vocabulary.

    Args:
        config: tower shapes.
        num_answers: size of the answer vocabulary.
    """

    def __init__(self, config: ModelConfig, num_answers: int) -> None:
        super().__init__()
        self.config = config
        self.num_answers = num_answers
        width = config.text.width
        self.vision = build_vision_tower(config.vision)
        self.vision_proj = nn.Linear(self.vision.embed_dim, width)
        self.hf_text = config.text.hf_model is not None
        self.text = (
            HFTextTower(config.text)
            if self.hf_text
            else TextTransformer(
                context_length=config.text.context_length,
                vocab_size=VOCAB_SIZE,
                width=width,
                heads=config.text.heads,
                layers=config.text.depth,
                mlp_ratio=config.text.mlp_ratio,
                output_dim=None,
                output_tokens=True,
                pad_id=PAD_TOKEN_ID,
            )
        )
        self.fusion = MultimodalTransformer(
            width=width,
            layers=config.fusion.depth,
            heads=config.fusion.heads,
            context_length=config.text.context_length,
            mlp_ratio=config.fusion.mlp_ratio,
            output_dim=width,
        )
        self.fusion.text_projection = None  # the answer head projects instead
        self.head = nn.Linear(width, num_answers)

    @property
    def preprocess(self) -> Preprocess:
        return preprocess_of(self.config)

    def forward(self, pixels: Tensor, tokens: Tensor) -> dict[str, Tensor]:
        """``pixels [B, 3, H, W]`` float, ``tokens [B, L]`` int64 -> ``{"logits": answer logits [B, A]}``."""
        image_tokens = self.vision_proj(self.vision.forward_features(pixels))  # (B, 1+N, D)
        text_tokens = self.text(tokens) if self.hf_text else self.text(tokens)[1]  # (B, L, D)
        fused = self.fusion(image_tokens, text_tokens)  # (B, L, D)
        # (B,) where the text ends: BERT's [SEP] is the last real token, open_clip's end token the largest id
        end_of_text = (tokens != PAD_TOKEN_ID).sum(-1) - 1 if self.hf_text else tokens.argmax(dim=-1)
        pooled = fused[torch.arange(fused.shape[0], device=fused.device), end_of_text]  # (B, D)
        return {"logits": self.head(pooled)}

    def attention_groups(self) -> dict[str, list[str]]:
        """Attention module paths per group, each list ordered by depth."""
        return {
            "vision_self": [f"vision.blocks.{i}.attn" for i in range(len(self.vision.blocks))],
            "text_self": (
                [f"text.model.encoder.layer.{i}.attention.self" for i in range(len(self.text.model.encoder.layer))]
                if self.hf_text
                else [f"text.transformer.resblocks.{i}.attn" for i in range(len(self.text.transformer.resblocks))]
            ),
            "fusion_self": [f"fusion.resblocks.{i}.attn" for i in range(len(self.fusion.resblocks))],
            "fusion_cross": [f"fusion.cross_attn.{i}.attn" for i in range(len(self.fusion.cross_attn))],
        }

    @staticmethod
    def attention_masks(group: str, tokens: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(query_mask, key_mask)`` ``[B, L]`` bool for a group's maps (None: all real)."""
        if group not in ATTENTION_GROUPS:
            raise ValueError(f"unknown attention group {group!r}; use {ATTENTION_GROUPS}")
        if group == "vision_self":
            return None, None
        real_tokens = tokens != PAD_TOKEN_ID  # (B, L)
        return real_tokens, (None if group == "fusion_cross" else real_tokens)
