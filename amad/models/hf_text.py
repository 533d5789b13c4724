"""A Hugging Face BERT-style text encoder from a local folder, as a tower of an amad model.

Used by the VQA and retrieval tasks (``text.hf_model``); the config is any text config with the fields
``context_length, width, depth, heads, mlp_ratio, hf_model, hf_pretrained``. Attention paths:
``<tower>.model.encoder.layer.{i}.attention.self``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from amad.data.preprocess import PAD_TOKEN_ID
from amad.errors import AmadError


class HFTextTower(nn.Module):
    """A Hugging Face BERT-style encoder from a local folder, at the shape of ``config``; returns its
    token states ``[B, L, width]``. With ``hf_pretrained`` the folder's weights are loaded (the
    head count may differ from the folder's: the weights are the same tensors, regrouped)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        try:
            import transformers
        except ImportError:
            raise AmadError("a Hugging Face text tower needs transformers: pip install 'amad[hf]'") from None
        if not (Path(config.hf_model) / "config.json").is_file():
            raise AmadError(
                f"text tower folder {config.hf_model} not found (the model was built with it; copy it back)"
            )
        hf_config = transformers.AutoConfig.from_pretrained(config.hf_model, local_files_only=True)
        hf_config.update(
            {
                "hidden_size": config.width,
                "num_hidden_layers": config.depth,
                "num_attention_heads": config.heads,
                "intermediate_size": int(config.width * config.mlp_ratio),
            }
        )
        if config.hf_pretrained:
            self.model = transformers.AutoModel.from_pretrained(
                config.hf_model,
                config=hf_config,
                add_pooling_layer=False,
                attn_implementation="sdpa",
                local_files_only=True,
            )
        else:
            hf_config._attn_implementation = "sdpa"
            self.model = transformers.AutoModel.from_config(hf_config, add_pooling_layer=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens [B, L]`` (0: padding) -> token states ``[B, L, width]``."""
        return self.model(input_ids=tokens, attention_mask=(tokens != PAD_TOKEN_ID).long()).last_hidden_state
