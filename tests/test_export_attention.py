"""Export-time attention computes what the trained modules compute, and leaves the model alone."""

import pytest
import torch
from helpers import tiny_model_config
from timm.layers import Attention as TimmAttention
from torch import nn

from amad.export.attention_for_export import ExportAttention, with_export_attention
from amad.tasks.vqa.model import VQAModel

ATOL = 1e-5


def multihead(**kwargs) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    module = nn.MultiheadAttention(16, 4, **kwargs).eval()
    with torch.no_grad():  # non-zero biases, so a mix-up of q / k / v bias rows would show
        for name, parameter in module.named_parameters():
            if "bias" in name:
                parameter.normal_()
    return module


def assert_same_call(module: nn.MultiheadAttention, *args, **kwargs) -> None:
    with torch.no_grad():
        expected_out, expected_weights = module(*args, **kwargs)
        out, weights = ExportAttention(module)(*args, **kwargs)
    torch.testing.assert_close(out, expected_out, atol=ATOL, rtol=0)
    if expected_weights is None:
        assert weights is None
    else:
        torch.testing.assert_close(weights, expected_weights, atol=ATOL, rtol=0)


def test_causal_self_attention_with_a_float_mask():
    x = torch.randn(3, 7, 16)
    causal = torch.full((7, 7), float("-inf")).triu(1)  # open_clip's text mask
    module = multihead(batch_first=True)
    assert_same_call(module, x, x, x, need_weights=False, attn_mask=causal)
    assert_same_call(module, x, x, x, attn_mask=causal)  # averaged weights
    assert_same_call(module, x, x, x, attn_mask=causal, average_attn_weights=False)


def test_cross_attention_with_key_padding_and_separate_key_value_tensors():
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[0, 6:] = True
    module = multihead(batch_first=True)
    assert_same_call(module, query, memory, memory.clone(), key_padding_mask=padding, average_attn_weights=False)


def test_sequence_first_with_a_bool_mask_and_separate_projection_weights():
    query, memory = torch.randn(5, 2, 16), torch.randn(8, 2, 12)
    blocked = torch.rand(5, 8) < 0.3
    blocked[:, 0] = False  # every query keeps a key
    assert_same_call(multihead(), query, query, query, attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1))
    assert_same_call(multihead(kdim=12, vdim=12), query, memory, memory, attn_mask=blocked)


def test_unsupported_multihead_options_are_refused():
    with pytest.raises(ValueError, match="add_bias_kv"):
        ExportAttention(nn.MultiheadAttention(16, 4, add_bias_kv=True))


def test_the_export_copy_of_a_task_model_matches_it_and_leaves_it_unchanged():
    torch.manual_seed(0)
    model = VQAModel(tiny_model_config(heads=4), num_answers=11).eval()
    preprocess = model.preprocess
    pixels = torch.randn(3, 3, preprocess.image_size, preprocess.image_size)
    tokens = preprocess.tokenize(["is there a red circle?", "how many squares are there?", "what colour?"])
    fused_before = {name: m.fused_attn for name, m in model.named_modules() if isinstance(m, TimmAttention)}
    exported = with_export_attention(model)
    with torch.no_grad():
        torch.testing.assert_close(exported(pixels, tokens), model(pixels, tokens), atol=ATOL, rtol=0)
    modules = dict(model.named_modules())
    swapped = dict(exported.named_modules())
    multihead_names = [name for name, m in modules.items() if isinstance(m, nn.MultiheadAttention)]
    assert multihead_names and all(isinstance(swapped[name], ExportAttention) for name in multihead_names)
    assert all(isinstance(modules[name], nn.MultiheadAttention) for name in multihead_names)  # original kept
    assert fused_before and {name: modules[name].fused_attn for name in fused_before} == fused_before
    assert not any(swapped[name].fused_attn for name in fused_before)
    shared = {p.data_ptr() for p in model.parameters()}
    assert {p.data_ptr() for p in exported.parameters()} == shared  # no weight was copied
