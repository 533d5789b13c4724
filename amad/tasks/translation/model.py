"""The translation model: a source-text encoder, a vision encoder and a doubly attentive decoder,
built from open_clip's modules.

* ``source``: open_clip ``TextTransformer`` without the causal mask, padding masked (every source
  token reads the whole sentence); or a Hugging Face BERT-style encoder from a local folder
  (``source.hf_model``, :class:`~amad.models.hf_text.HFTextTower`), e.g. the pretrained MiniLM. Its
  tokens are projected to ``embed_dim`` (``source_proj``) where its width differs.
* ``visual``: open_clip ``VisionTransformer`` with CoCa's attentional pooler; its last
  ``pooler_queries - 1`` outputs are the image tokens. Absent (``vision: null``) in a text-only model.
* ``decoder`` (:class:`TranslationDecoder`): per layer, causal self-attention, cross-attention over the
  source tokens, then cross-attention over the image tokens (each an open_clip
  ``ResidualAttentionBlock`` with its own MLP).

**Why separate cross-attentions** (a "doubly attentive" decoder, Calixto et al. 2017, in its serial
form, Libovický & Helcl 2017) rather than one over the concatenated memory or a gate: each
cross-attention's map is a distribution over one modality, so the distillation methods align the
attention over the source and over the image as groups of their own (``decoder_cross_text``,
``decoder_cross_image``), and the report can show what a student reads of the image; the image
cross-attention's keys and values are computed once per image and its cache size is set by the
pooler's tokens, as in captioning; a text-only baseline is the same model without that block.

Attention modules by group: ``vision_self`` ``visual.transformer.resblocks.{i}.attn``;
``source_self`` ``source.transformer.resblocks.{i}.attn`` (a Hugging Face source:
``source.model.encoder.layer.{i}.attention.self``); ``decoder_self``
``decoder.resblocks.{i}.attn``; ``decoder_cross_text`` ``decoder.text_cross.{i}.attn``;
``decoder_cross_image`` ``decoder.image_cross.{i}.attn``.

Generation does not run ``forward``: :mod:`amad.tasks.translation.graphs` steps the same weights with
a key/value cache.
"""

from __future__ import annotations

import torch
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from open_clip.transformer import LayerNorm, ResidualAttentionBlock, TextTransformer
from torch import Tensor, nn

from amad.data.preprocess import PAD_TOKEN_ID
from amad.generation.search import SpecialTokens
from amad.tasks.translation.config import ModelConfig
from amad.tasks.translation.preprocess import TranslationPreprocess


def preprocess_of(config: ModelConfig, context_length: int, vocabulary: str) -> TranslationPreprocess:
    """The preprocessing of a model built from ``config``: the joint vocabulary learned at ``prepare``
    (the source side too, unless a Hugging Face source encoder brings its own tokenizer), the
    sentences' context, the image size (a text-only model still reads images: the data has them)."""
    from amad.data.preprocess import hf_tokenizer_name

    hf = config.source.hf_model
    return TranslationPreprocess(
        image_size=config.image_size,
        context_length=context_length,
        tokenizer="learned",
        vocabulary=vocabulary,
        source_tokenizer=None if hf is None else hf_tokenizer_name(hf),
    )


def padding_bias(real: Tensor, heads: int, queries: int) -> Tensor:
    """The additive mask ``[B * heads, queries, keys]`` (0 or -inf) of an ``nn.MultiheadAttention`` over
    keys whose ``real [B, keys]`` is False at padding."""
    bias = torch.zeros(real.shape, dtype=torch.float32, device=real.device).masked_fill(~real, float("-inf"))
    return bias[:, None, :].expand(-1, queries, -1).repeat_interleave(heads, 0)


class TranslationDecoder(nn.Module):
    """Target-token embedding, ``depth`` doubly attentive layers (see the module docstring), final norm
    and the output projection to the vocabulary. ``image``: the layers have an image cross-attention."""

    def __init__(self, vocab_size: int, context_length: int, width: int, config, image: bool) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))

        def blocks(cross: bool) -> nn.ModuleList:
            return nn.ModuleList(
                ResidualAttentionBlock(width, config.heads, config.mlp_ratio, is_cross_attention=cross)
                for _ in range(config.depth)
            )

        self.resblocks = blocks(False)
        self.text_cross = blocks(True)
        self.image_cross = blocks(True) if image else None
        self.ln_final = LayerNorm(width)
        self.projection = nn.Linear(width, vocab_size, bias=False)
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("causal_mask", causal, persistent=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.projection.weight, std=width**-0.5)

    def forward(self, tokens: Tensor, source: Tensor, source_real: Tensor, image: Tensor | None) -> Tensor:
        """``logits [B, s, V]`` after each of ``tokens [B, s]`` (teacher forcing), reading the source
        tokens ``[B, S, W]`` (``source_real [B, S]``: not padding) and the image tokens ``[B, N, W]``."""
        steps = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:steps]
        causal = self.causal_mask[:steps, :steps]
        heads = self.text_cross[0].attn.num_heads if len(self.text_cross) else 1
        source_bias = padding_bias(source_real, heads, steps)
        for layer, (block, text_cross) in enumerate(zip(self.resblocks, self.text_cross)):
            x = block(x, attn_mask=causal)
            x = text_cross(x, k_x=source, v_x=source, attn_mask=source_bias)
            if self.image_cross is not None:
                x = self.image_cross[layer](x, k_x=image, v_x=image)
        return self.projection(self.ln_final(x))


class TranslationModel(nn.Module):
    """See the module docstring. ``forward(pixels, source, target)`` returns ``logits [B, L-1, V]``:
    target token ``t+1`` predicted from target tokens ``0..t``, the source sentence and the image.
    ``special_tokens``: the vocabulary's start, end and padding ids."""

    def __init__(
        self, config: ModelConfig, vocab_size: int, context_length: int, special_tokens: SpecialTokens
    ) -> None:
        super().__init__()
        width = config.embed_dim
        source = config.source
        self.hf_source = source.hf_model is not None
        if self.hf_source:
            from amad.models.hf_text import HFTextTower

            self.source = HFTextTower(source)
        else:
            self.source = TextTransformer(
                context_length=context_length,
                vocab_size=vocab_size,
                width=source.width,
                heads=source.heads,
                layers=source.depth,
                mlp_ratio=source.mlp_ratio,
                output_dim=None,
                proj_type="none",
                no_causal_mask=True,
                use_pad_mask=True,
                pad_id=PAD_TOKEN_ID,
                pool_type="first",
                output_tokens=True,
            )
        self.source_proj = nn.Linear(source.width, width) if source.width != width else None
        vision = config.vision
        self.visual = None
        if vision is not None:
            vision_cfg = CLIPVisionCfg(
                image_size=config.image_size,
                patch_size=vision.patch_size,
                width=vision.width,
                layers=vision.depth,
                head_width=vision.width // vision.heads,
                mlp_ratio=vision.mlp_ratio,
                attentional_pool=True,
                attn_pooler_queries=vision.pooler_queries,
                attn_pooler_heads=vision.pooler_heads,
                output_tokens=True,
            )
            self.visual = _build_vision_tower(width, vision_cfg)
        self.decoder = TranslationDecoder(vocab_size, context_length, width, config.decoder, image=vision is not None)
        self.config = config
        self.vocab_size = vocab_size
        self.special_tokens = special_tokens
        self.max_target_tokens = context_length - 1  # the sentence and its end token: the trained positions

    def encode_source(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """``source [B, S]`` -> (source tokens ``[B, S, W]``, ``real [B, S]`` bool: not padding)."""
        tokens = self.source(source) if self.hf_source else self.source(source)[1]
        if self.source_proj is not None:
            tokens = self.source_proj(tokens)
        return tokens, source != PAD_TOKEN_ID

    def encode_image(self, pixels: Tensor) -> Tensor | None:
        """``pixels [B, 3, H, W]`` -> the image tokens ``[B, N, W]`` (None for a text-only model)."""
        if self.visual is None:
            return None
        _, tokens = self.visual(pixels)
        return tokens

    def forward(self, pixels: Tensor, source: Tensor, target: Tensor) -> dict[str, Tensor]:
        """See the class docstring. ``source`` / ``target [B, L]`` int64: start, sentence, end, then 0 padding."""
        source_tokens, source_real = self.encode_source(source)
        return {"logits": self.decoder(target[:, :-1], source_tokens, source_real, self.encode_image(pixels))}

    def attention_groups(self) -> dict[str, list[str]]:
        """Attention module paths per group, each list ordered by depth (a text-only model has no
        ``vision_self`` and ``decoder_cross_image``)."""
        depth = len(self.decoder.resblocks)
        if self.hf_source:
            source = [f"source.model.encoder.layer.{i}.attention.self" for i in range(self.config.source.depth)]
        else:
            source = [f"source.transformer.resblocks.{i}.attn" for i in range(len(self.source.transformer.resblocks))]
        groups = {
            "source_self": source,
            "decoder_self": [f"decoder.resblocks.{i}.attn" for i in range(depth)],
            "decoder_cross_text": [f"decoder.text_cross.{i}.attn" for i in range(depth)],
        }
        if self.visual is not None:
            groups["vision_self"] = [
                f"visual.transformer.resblocks.{i}.attn" for i in range(len(self.visual.transformer.resblocks))
            ]
            groups["decoder_cross_image"] = [f"decoder.image_cross.{i}.attn" for i in range(depth)]
        return groups
