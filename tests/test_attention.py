"""Attention capture from timm ViT, open_clip text / multimodal transformers and nn.MultiheadAttention."""

import math

import pytest
import timm
import torch
from open_clip.transformer import MultimodalTransformer, TextTransformer
from torch import nn

from amad.distill.capture import AttentionCapture, attention_module_names, capture_attention

ATOL = 1e-5


def tiny_vit():
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=4,
        num_classes=5,
    ).eval()


def grab_inputs(module):
    """Record the positional and keyword inputs of every call of ``module``."""
    calls = []
    handle = module.register_forward_pre_hook(lambda m, a, k: calls.append((a, k)), with_kwargs=True)
    return calls, handle


def explicit_timm_attention(attn, x):
    """The timm module's own non-fused computation, redone by hand from its weights."""
    batch, tokens, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)


def check_probs(probs, reference):
    torch.testing.assert_close(probs, reference, atol=ATOL, rtol=0)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=ATOL, rtol=0)


def test_timm_vit_capture_equals_explicit_weights_and_keeps_outputs():
    model = tiny_vit()
    assert all(block.attn.fused_attn for block in model.blocks), "timm should build fused attention here"
    images = torch.randn(3, 3, 32, 32)
    expected_logits = model(images)
    inputs, handle = grab_inputs(model.blocks[1].attn)
    with AttentionCapture(model, "blocks.*.attn", qkv=True) as capture:
        logits = model(images)
    handle.remove()
    torch.testing.assert_close(logits, expected_logits, atol=ATOL, rtol=0)
    assert set(capture.records) == {"blocks.0.attn", "blocks.1.attn"}
    attn = model.blocks[1].attn
    probs = capture.probs("blocks.1.attn")
    assert probs.shape == (3, 4, 17, 17)
    with torch.no_grad():
        check_probs(probs, explicit_timm_attention(attn, inputs[0][0][0]))
    record = capture.records["blocks.1.attn"]
    assert record.q.shape == record.k.shape == record.v.shape == (3, 4, 17, 8)
    check_probs(probs, (record.q @ record.k.transpose(-2, -1) / math.sqrt(8)).softmax(-1))
    # hooks gone, fusion restored
    assert all(block.attn.fused_attn for block in model.blocks)
    assert not model.blocks[1].attn.attn_drop._forward_pre_hooks and not attn.qkv._forward_hooks


def text_tower(**kwargs):
    torch.manual_seed(1)
    return TextTransformer(context_length=8, vocab_size=50, width=32, heads=4, layers=2, output_dim=16, **kwargs).eval()


def test_open_clip_text_transformer_causal_capture():
    model = text_tower()
    tokens = torch.randint(1, 50, (2, 8))
    expected = model(tokens)
    attn = model.transformer.resblocks[0].attn
    inputs, handle = grab_inputs(attn)
    with capture_attention(model, "transformer.resblocks.*.attn") as capture:
        output = model(tokens)
    handle.remove()
    torch.testing.assert_close(output, expected, atol=ATOL, rtol=0)
    (query, key, value), kwargs = inputs[0][0][:3], inputs[0][1]
    with torch.no_grad():
        _, reference = attn(
            query, key, value, attn_mask=kwargs["attn_mask"], need_weights=True, average_attn_weights=False
        )
    probs = capture.probs("transformer.resblocks.0.attn")
    assert probs.shape == (2, 4, 8, 8)
    check_probs(probs, reference)
    assert torch.all(probs.triu(1) == 0), "causally masked keys must get probability 0"


def test_open_clip_text_transformer_padding_mask_capture():
    model = text_tower(no_causal_mask=True, use_pad_mask=True, pad_id=0)
    tokens = torch.randint(1, 50, (2, 8))
    tokens[0, 5:] = 0
    with capture_attention(model, "transformer.resblocks.1.attn") as capture:
        model(tokens)
    probs = capture.probs("transformer.resblocks.1.attn")
    assert torch.all(probs[0, :, :, 5:] == 0)
    assert torch.all(probs[1] > 0)


def test_open_clip_multimodal_cross_attention_capture():
    torch.manual_seed(2)
    model = MultimodalTransformer(width=32, layers=2, heads=4, context_length=6, output_dim=16).eval()
    nn.init.normal_(model.text_projection, std=0.1)  # starts as torch.empty
    image_tokens, text_tokens = torch.randn(2, 10, 32), torch.randn(2, 6, 32)
    expected = model(image_tokens, text_tokens)
    attn = model.cross_attn[1].attn
    inputs, handle = grab_inputs(attn)
    with capture_attention(model, ["cross_attn.*.attn", "resblocks.0.attn"], qkv=True) as capture:
        output = model(image_tokens, text_tokens)
    handle.remove()
    torch.testing.assert_close(output, expected, atol=ATOL, rtol=0)
    query, key, value = inputs[0][0][:3]
    with torch.no_grad():
        _, reference = attn(query, key, value, need_weights=True, average_attn_weights=False)
    probs = capture.probs("cross_attn.1.attn")
    assert probs.shape == (2, 4, 6, 10)  # text queries x image keys
    check_probs(probs, reference)
    record = capture.records["cross_attn.1.attn"]
    assert record.q.shape == (2, 4, 6, 8) and record.k.shape == (2, 4, 10, 8)
    check_probs(probs, (record.q @ record.k.transpose(-2, -1) / math.sqrt(8)).softmax(-1))
    assert torch.all(capture.probs("resblocks.0.attn").triu(1) == 0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_key_padding_mask(batch_first):
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    x = torch.randn(2, 5, 16)
    x_in = x if batch_first else x.transpose(0, 1)
    padding = torch.tensor([[False, False, False, True, True], [False] * 5])
    expected_out, expected_avg = mha(x_in, x_in, x_in, key_padding_mask=padding)
    with torch.no_grad():
        _, reference = mha(x_in, x_in, x_in, key_padding_mask=padding, average_attn_weights=False)
    with capture_attention(mha, "", qkv=True) as capture:
        out, averaged = mha(x_in, x_in, x_in, key_padding_mask=padding)
        out_no_weights, none = mha(x_in, x_in, x_in, key_padding_mask=padding, need_weights=False)
    torch.testing.assert_close(out, expected_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(averaged, expected_avg, atol=ATOL, rtol=0)
    torch.testing.assert_close(out_no_weights, expected_out, atol=ATOL, rtol=0)
    assert none is None, "a caller that asked for no weights still gets none"
    probs = capture.probs("")
    check_probs(probs, reference)
    assert torch.all(probs[0, :, :, 3:] == 0)
    record = capture.records[""]
    scores = record.q @ record.k.transpose(-2, -1) / 2.0
    scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
    check_probs(probs, scores.softmax(-1))


def test_student_maps_carry_gradients_and_teacher_maps_do_not():
    student, teacher = tiny_vit().train(), tiny_vit()
    images = torch.randn(2, 3, 32, 32)
    with capture_attention(teacher, "blocks.0.attn", detach=True) as teacher_capture, torch.no_grad():
        teacher(images)
    with capture_attention(student, "blocks.0.attn") as student_capture:
        student(images)
    assert not teacher_capture.probs("blocks.0.attn").requires_grad
    student_probs = student_capture.probs("blocks.0.attn")
    assert student_probs.requires_grad
    (student_probs * torch.randn_like(student_probs)).sum().backward()
    assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_selection_errors_name_the_pattern():
    model = tiny_vit()
    with pytest.raises(ValueError, match=r"'blocks\.9\.attn' matches no attention module.*blocks\.0\.attn"):
        AttentionCapture(model, "blocks.9.attn")
    with pytest.raises(ValueError, match=r"'blocks\.0' is a Block.*did you mean 'blocks\.0\.attn'"):
        AttentionCapture(model, "blocks.0")
    assert attention_module_names(model) == ["blocks.0.attn", "blocks.1.attn"]


def test_hidden_states_are_the_outputs_of_the_blocks_holding_the_captured_modules():
    from helpers import tiny_model_config

    from amad.tasks.vqa.model import VQAModel

    torch.manual_seed(0)
    model = VQAModel(tiny_model_config(), 7).eval()
    pixels, tokens = torch.randn(2, 3, 24, 24), torch.tensor([[49406, 320, 49407] + [0] * 9] * 2)
    names = ["vision.blocks.1.attn", "text.transformer.resblocks.0.attn", "fusion.cross_attn.0.attn"]
    outputs = {}
    handles = [
        model.get_submodule(name.rpartition(".")[0]).register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out)
        )
        for name in names
    ]
    with torch.no_grad(), capture_attention(model, names, maps=False, hidden=True) as capture:
        model(pixels, tokens)
    for handle in handles:
        handle.remove()
    for name in names:
        hidden = capture.records[name].hidden
        assert hidden.shape[0] == 2, name  # batch first
        expected = outputs[name] if outputs[name].shape[0] == 2 else outputs[name].transpose(0, 1)
        torch.testing.assert_close(hidden, expected)
        assert capture.records[name].probs is None
    assert model.vision.blocks[1].attn.fused_attn == model.vision.blocks[0].attn.fused_attn  # fusion untouched
