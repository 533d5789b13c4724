"""Golden values and properties of the attention distillation losses (DESIGN.md, "The method")."""

import math

import pytest
import reference
import torch
from conftest import random_maps

import amad.losses.mixture_kl as mixture_kl_module
import amad.losses.relation as relation_module
from amad.losses import (
    AttentionProjection,
    alignment_weights,
    amad_loss,
    amad_loss_and_weights,
    logit_kd_loss,
    one_to_one_loss,
    relation_loss,
    task_loss,
)
from amad.losses.relation import relation_heads, self_relation

# The paper's toy case: 3 teacher heads, 2 student heads, 3x3 maps (rows sum to 1).
TOY_TEACHER = torch.tensor(
    [
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]],
        [[0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]],
        [[1 / 3, 1 / 3, 1 / 3]] * 3,
    ],
    dtype=torch.float64,
)[None]
TOY_STUDENT = torch.tensor(
    [
        [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]],
        [[0.2, 0.2, 0.6], [0.25, 0.25, 0.5], [0.4, 0.4, 0.2]],
    ],
    dtype=torch.float64,
)[None]

GOLDEN_WEIGHTS = {
    1.0: [[0.6009928431, 0.3990071569], [0.3948543940, 0.6051456060], [0.4762864740, 0.5237135260]],
    0.1: [[0.9836338206, 0.0163661794], [0.0137955139, 0.9862044861], [0.2790350354, 0.7209649646]],
}
GOLDEN_LOSSES = {
    (1.0, "kl"): [0.1308495768, 0.1586797995, 0.0259013135],
    (1.0, "mse"): [0.1737701593, 0.2297072552, 0.0492910677],
    (1.0, "token"): [0.1288229890, 0.1513487200, 0.0247771410],
    (0.1, "kl"): [0.0401291678, 0.0548395662, 0.0230309573],
    (0.1, "mse"): [0.0361483076, 0.0814468076, 0.0497799021],
    (0.1, "token"): [0.0369443509, 0.0507004806, 0.0172450088],
}
VARIANTS = ("kl", "mse", "token")


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_toy_alignment_weights_golden(temperature):
    weights = alignment_weights(TOY_TEACHER, TOY_STUDENT, temperature=temperature)
    assert weights.shape == (1, 3, 2)
    torch.testing.assert_close(weights[0], torch.tensor(GOLDEN_WEIGHTS[temperature], dtype=torch.float64))
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 3, dtype=torch.float64))


@pytest.mark.parametrize(("temperature", "variant"), list(GOLDEN_LOSSES))
def test_toy_amad_loss_golden(temperature, variant):
    per_head = amad_loss(TOY_TEACHER, TOY_STUDENT, variant=variant, temperature=temperature, reduction="none")
    expected = torch.tensor([GOLDEN_LOSSES[temperature, variant]], dtype=torch.float64)
    torch.testing.assert_close(per_head, expected)
    torch.testing.assert_close(
        amad_loss(TOY_TEACHER, TOY_STUDENT, variant=variant, temperature=temperature), expected.mean()
    )
    torch.testing.assert_close(
        amad_loss(TOY_TEACHER, TOY_STUDENT, variant=variant, temperature=temperature, reduction="sum"),
        expected.sum(),
    )


def test_toy_one_to_one_golden():
    # row KLs of (T0, S0) and (T1, S1), worked by hand: e.g. row 0 of head 0 is
    # 0.7 ln(0.7/0.6) + 0.2 ln(0.2/0.3) + 0.1 ln(1) = 0.026813
    expected = torch.tensor([[0.0406197549, 0.0538361639]], dtype=torch.float64)
    torch.testing.assert_close(one_to_one_loss(TOY_TEACHER, TOY_STUDENT, reduction="none"), expected)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_matches_loop_reference_with_mask(variant, temperature):
    teacher = random_maps(2, 4, 5, 6, seed=1, sharpness=2.0)
    student = random_maps(2, 3, 5, 6, seed=2, sharpness=2.0)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    got = amad_loss(teacher, student, variant=variant, temperature=temperature, query_mask=mask, reduction="none")
    expected = reference.amad(teacher, student, variant, temperature, mask)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        alignment_weights(teacher, student, temperature=temperature, query_mask=mask),
        reference.weights(teacher, student, temperature, mask),
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_invariant_to_student_head_permutation(variant):
    teacher = random_maps(3, 6, 7, 7, seed=3, sharpness=3.0)
    student = random_maps(3, 3, 7, 7, seed=4, sharpness=3.0)
    permuted = student[:, [2, 0, 1]]
    for temperature in (1.0, 0.2):
        torch.testing.assert_close(
            amad_loss(teacher, student, variant=variant, temperature=temperature, reduction="none"),
            amad_loss(teacher, permuted, variant=variant, temperature=temperature, reduction="none"),
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_identical_heads_give_zero_loss(variant):
    shared = random_maps(2, 1, 6, 6, seed=5, sharpness=2.0)
    teacher, student = shared.expand(2, 4, 6, 6), shared.expand(2, 2, 6, 6)
    loss = amad_loss(teacher, student, variant=variant, reduction="none")
    torch.testing.assert_close(loss, torch.zeros(2, 4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert one_to_one_loss(teacher, student) == pytest.approx(0.0, abs=1e-12)
    assert one_to_one_loss(teacher, student, head_mismatch="mean_pool") == pytest.approx(0.0, abs=1e-12)


def test_each_teacher_head_in_student_is_near_zero_at_low_temperature():
    teacher = random_maps(1, 3, 5, 5, seed=6, sharpness=4.0)
    loss = amad_loss(teacher, teacher[:, [2, 0, 1]], temperature=1e-3)
    assert float(loss) < 1e-8


@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_rows_do_not_contribute(variant):
    teacher = random_maps(2, 4, 6, 6, seed=7)
    student = random_maps(2, 2, 6, 6, seed=8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 4:] = False
    masked = amad_loss(teacher, student, variant=variant, query_mask=mask, reduction="none")
    truncated = amad_loss(teacher[:, :, :4], student[:, :, :4], variant=variant, reduction="none")
    torch.testing.assert_close(masked, truncated)
    scrambled = student.clone()
    scrambled[:, :, 4:] = random_maps(2, 2, 2, 6, seed=9)
    torch.testing.assert_close(
        amad_loss(teacher, scrambled, variant=variant, query_mask=mask, reduction="none"), masked
    )
    torch.testing.assert_close(
        one_to_one_loss(teacher, student, query_mask=mask, reduction="none"),
        one_to_one_loss(teacher[:, :, :4], student[:, :, :4], reduction="none"),
    )


def test_sample_without_valid_rows_gives_zero():
    teacher, student = random_maps(2, 2, 3, 3, seed=10), random_maps(2, 2, 3, 3, seed=11)
    mask = torch.tensor([[False, False, False], [True, True, True]])
    for variant in VARIANTS:
        loss = amad_loss(teacher, student, variant=variant, query_mask=mask, reduction="none")
        assert torch.all(loss[0] == 0) and torch.all(loss[1] > 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_float64(variant):
    teacher = random_maps(2, 3, 4, 5, seed=12).requires_grad_()
    student = random_maps(2, 2, 4, 5, seed=13).requires_grad_()
    temperature = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])

    def loss(t, s, tau):
        return amad_loss(t, s, variant=variant, temperature=tau, query_mask=mask, reduction="none")

    assert torch.autograd.gradcheck(loss, (teacher, student, temperature))


def test_gradcheck_baselines_float64():
    teacher = random_maps(2, 4, 3, 3, seed=14).requires_grad_()
    student = random_maps(2, 2, 3, 3, seed=15).requires_grad_()
    for policy in ("truncate", "mean_pool"):
        assert torch.autograd.gradcheck(
            lambda t, s, policy=policy: one_to_one_loss(t, s, head_mismatch=policy), (teacher, student)
        )
    qkv_t = tuple(torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True) for _ in range(3))
    qkv_s = tuple(torch.randn(2, 2, 3, 2, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda *x: relation_loss(x[:3], x[3:], num_relation_heads=2), (*qkv_t, *qkv_s))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_one_hot_maps_with_exact_zeros_are_finite(variant, dtype):
    teacher = torch.zeros(2, 4, 5, 5, dtype=dtype)
    teacher[..., 0] = 1.0  # exact one-hot rows
    teacher[:, 1] = torch.eye(5, dtype=dtype)
    student_logits = torch.full((2, 2, 5, 5), -200.0, dtype=dtype)
    student_logits[..., 1] = 200.0  # softmax underflows to exact zeros
    student_logits = student_logits.requires_grad_()
    loss = amad_loss(teacher, student_logits.softmax(-1), variant=variant)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(student_logits.grad).all()


def test_float16_inputs_are_computed_in_float32():
    teacher = random_maps(1, 2, 4, 4, seed=16, dtype=torch.float32)
    student = random_maps(1, 2, 4, 4, seed=17, dtype=torch.float32)
    half = amad_loss(teacher.half(), student.bfloat16())
    assert half.dtype == torch.float32
    assert float(half) == pytest.approx(float(amad_loss(teacher, student)), rel=2e-2)


def test_mean_pool_and_truncate_pair_the_documented_heads():
    teacher = random_maps(1, 4, 3, 3, seed=18)
    student = random_maps(1, 2, 3, 3, seed=19)
    pooled = torch.stack([teacher[:, 0:2].mean(1), teacher[:, 2:4].mean(1)], 1)
    torch.testing.assert_close(
        one_to_one_loss(teacher, student, head_mismatch="mean_pool"), one_to_one_loss(pooled, student)
    )
    torch.testing.assert_close(one_to_one_loss(teacher, student), one_to_one_loss(teacher[:, :2], student))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: amad_loss(random_maps(1, 2, 3, 3, seed=0), random_maps(1, 2, 3, 4, seed=0)), "agree"),
        (lambda: amad_loss(random_maps(1, 2, 3, 3, seed=0), random_maps(1, 2, 3, 3, seed=0), variant="x"), "variant"),
        (lambda: amad_loss(random_maps(1, 2, 3, 3, seed=0), random_maps(1, 2, 3, 3, seed=0), temperature=0), "> 0"),
        (
            lambda: amad_loss(random_maps(1, 2, 3, 3, seed=0), random_maps(1, 2, 3, 3, seed=0), reduction="avg"),
            "reduction",
        ),
        (
            lambda: one_to_one_loss(
                random_maps(1, 3, 3, 3, seed=0), random_maps(1, 2, 3, 3, seed=0), head_mismatch="mean_pool"
            ),
            "divide",
        ),
        (lambda: one_to_one_loss(random_maps(1, 2, 3, 3, seed=0), random_maps(1, 3, 3, 3, seed=0)), "at least"),
        (lambda: AttentionProjection(197 * 197), "small maps"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_projection_variant_learns_and_starts_as_mse():
    teacher = random_maps(2, 3, 4, 4, seed=20)
    student = random_maps(2, 2, 4, 4, seed=21)
    projection = AttentionProjection(16).double()
    torch.testing.assert_close(
        amad_loss(teacher, student, variant="projection", projection=projection),
        amad_loss(teacher, student, variant="mse"),
    )
    optimiser = torch.optim.SGD(projection.parameters(), lr=0.5)
    first = None
    for _ in range(20):
        loss = amad_loss(teacher, student, variant="projection", projection=projection)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first


def test_relation_loss_is_zero_for_regrouped_heads_and_positive_otherwise():
    generator = torch.Generator().manual_seed(22)
    teacher = tuple(torch.randn(2, 4, 6, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    # the same vectors seen as 2 heads of width 16: identical once re-split into relation heads
    regrouped = tuple(t.transpose(1, 2).reshape(2, 6, 2, 16).transpose(1, 2) for t in teacher)
    assert float(relation_loss(teacher, regrouped, num_relation_heads=4)) == pytest.approx(0.0, abs=1e-12)
    other = tuple(torch.randn(2, 2, 6, 16, generator=generator, dtype=torch.float64) for _ in range(3))
    assert float(relation_loss(teacher, other, num_relation_heads=4)) > 0


def test_relation_loss_matches_manual_and_respects_masks():
    generator = torch.Generator().manual_seed(23)
    teacher = tuple(torch.randn(1, 2, 4, 2, generator=generator, dtype=torch.float64) for _ in range(3))
    student = tuple(torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[True, True, True, False]])
    got = relation_loss(teacher, student, num_relation_heads=1, relations=("kk",), query_mask=mask, key_mask=mask)
    t = teacher[1][0].transpose(0, 1).reshape(4, 4)[:3]  # heads concatenated, valid tokens only
    s = student[1][0, 0][:3]
    t_rel, s_rel = ((x @ x.T / 2.0).softmax(-1) for x in (t, s))
    expected = sum(reference.kl_row(t_rel[r], s_rel[r]) for r in range(3)) / 3
    assert float(got) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="divide"):
        relation_loss(teacher, student, num_relation_heads=3)


def test_logit_kd_golden_and_temperature_scaling():
    student = torch.tensor([[1.0, 2.0, 0.5]])
    teacher = torch.tensor([[2.0, 0.0, 1.0]])
    for temperature in (1.0, 4.0):
        p_t = (teacher / temperature).softmax(-1)[0]
        p_s = (student / temperature).softmax(-1)[0]
        expected = temperature**2 * reference.kl_row(p_t, p_s)
        assert float(logit_kd_loss(student, teacher, temperature=temperature)) == pytest.approx(expected, rel=1e-5)
    assert float(logit_kd_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-7)


def test_task_loss_hard_and_soft_targets():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    hard = task_loss(logits, torch.tensor([0, 1]))
    soft = task_loss(logits, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.3, 0.0]]))
    torch.testing.assert_close(hard, soft)
    only_first = task_loss(logits, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(only_first, task_loss(logits[:1], torch.tensor([0])))


@pytest.mark.parametrize(("with_mask", "strided"), [(False, False), (True, False), (True, True)])
def test_fused_kl_path_matches_plain_autograd(with_mask, strided):
    """A frozen teacher takes the hand-written backward; a differentiable one takes plain autograd
    (also for maps that are not contiguous)."""
    teacher = random_maps(3, 5, 6, 7, seed=24, sharpness=2.0)
    student = random_maps(3, 2, 6, 7, seed=25, sharpness=2.0)
    if strided:
        teacher, student = (x.transpose(2, 3).contiguous().transpose(2, 3) for x in (teacher, student))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [False] * 6]) if with_mask else None
    results = []
    for teacher_grad in (False, True):
        t = teacher.clone().requires_grad_(teacher_grad)
        s = student.clone().requires_grad_()
        tau = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
        loss = amad_loss(t, s, temperature=tau, query_mask=mask, reduction="none")
        (loss * torch.arange(1.0, 16.0, dtype=torch.float64).view(3, 5)).sum().backward()
        results.append((loss.detach(), s.grad, tau.grad))
    for fused, plain in zip(*results):
        torch.testing.assert_close(fused, plain)


def test_fused_kl_gradcheck_student_and_temperature():
    teacher = random_maps(2, 3, 4, 5, seed=26)
    student = random_maps(2, 2, 4, 5, seed=27).requires_grad_()
    temperature = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    for query_mask in (None, mask):
        assert torch.autograd.gradcheck(
            lambda s, tau, m=query_mask: amad_loss(teacher, s, temperature=tau, query_mask=m, reduction="none"),
            (student, temperature),
        )


@pytest.mark.parametrize(("with_mask", "strided"), [(False, False), (True, False), (True, True)])
def test_fused_token_path_matches_plain_autograd(with_mask, strided):
    """The token variant: a frozen teacher and a fixed temperature take the per-sample hand-written
    backward; a differentiable teacher takes plain autograd; loss, weights and gradients agree."""
    teacher = random_maps(3, 5, 6, 7, seed=28, sharpness=2.0)
    student = random_maps(3, 2, 6, 7, seed=29, sharpness=2.0)
    student[1, 0, 2] = 0.0  # a zero row: its cosines' denominators are clamped (both paths take 0 there)
    if strided:
        teacher, student = (x.transpose(2, 3).contiguous().transpose(2, 3) for x in (teacher, student))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [False] * 6]) if with_mask else None
    results = []
    for teacher_grad in (False, True):
        t = teacher.clone().requires_grad_(teacher_grad)
        s = student.clone().requires_grad_()
        loss, weights = amad_loss_and_weights(t, s, variant="token", temperature=0.4, query_mask=mask)
        (loss * torch.arange(1.0, 16.0, dtype=torch.float64).view(3, 5)).sum().backward()
        results.append((loss.detach(), weights.detach(), s.grad))
    for fused, plain in zip(*results):
        torch.testing.assert_close(fused, plain)


def test_fused_token_gradcheck():
    teacher = random_maps(2, 3, 4, 5, seed=30)
    student = random_maps(2, 2, 4, 5, seed=31).requires_grad_()
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    for query_mask in (None, mask):
        assert torch.autograd.gradcheck(
            lambda s, m=query_mask: amad_loss(
                teacher, s, variant="token", temperature=0.7, query_mask=m, reduction="none"
            ),
            (student,),
        )


def test_hidden_state_loss_golden():
    from amad.losses import HiddenStateProjection, hidden_state_loss

    teacher = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (B=1, L=2, dt=2)
    student = torch.tensor([[[1.0], [2.0]]])  # (B=1, L=2, ds=1)
    projection = HiddenStateProjection(1, 2)
    with torch.no_grad():
        projection.linear.weight.copy_(torch.tensor([[2.0], [1.0]]))
        projection.linear.bias.copy_(torch.tensor([0.0, 1.0]))
    # projected rows: [2, 2] and [4, 3]; squared errors per token: mean([1, 0]) = 0.5, mean([1, 1]) = 1.0
    assert hidden_state_loss(teacher, student, projection).item() == pytest.approx(0.75)
    assert hidden_state_loss(teacher, student, projection, token_mask=torch.tensor([[True, False]])).item() == 0.5
    same_width = torch.nn.Identity()
    assert hidden_state_loss(teacher, teacher, same_width).item() == 0.0


@pytest.mark.parametrize("with_mask", [False, True])
def test_relation_loss_fused_backward_matches_plain_autograd(with_mask):
    generator = torch.Generator().manual_seed(31)
    teacher = tuple(torch.randn(2, 4, 6, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    student = tuple(torch.randn(2, 2, 6, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2]) if with_mask else None
    losses, grads = [], []
    for teacher_needs_grad in (False, True):  # True takes the plain autograd path
        inputs_t = tuple(t.clone().requires_grad_(teacher_needs_grad) for t in teacher)
        inputs_s = tuple(s.clone().requires_grad_() for s in student)
        loss = relation_loss(inputs_t, inputs_s, num_relation_heads=4, query_mask=mask, key_mask=mask)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([s.grad.flatten() for s in inputs_s]))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-12)
    frozen = tuple(t.clone() for t in teacher)
    student_inputs = tuple(s.clone().requires_grad_() for s in student)
    assert torch.autograd.gradcheck(
        lambda *x: relation_loss(frozen, x, num_relation_heads=2, query_mask=mask, key_mask=mask), student_inputs
    )


def test_relation_loss_is_exact_where_a_token_relates_to_itself_with_underflowing_probability():
    """The fused path reads each row's log-normaliser off its diagonal; rows where that probability
    is tiny or underflows (a 400x longer token elsewhere) fall back to the row's maximum. The reference takes
    exact log-probabilities (plain autograd floors underflowing student probabilities instead)."""
    generator = torch.Generator().manual_seed(33)
    teacher = torch.randn(2, 4, 6, 8, generator=generator, dtype=torch.float64)
    student = torch.randn(2, 2, 6, 8, generator=generator, dtype=torch.float64)
    teacher[:, :, 2] *= 400
    student[:, :, 4] *= 400
    for vectors in (teacher, student):
        assert (self_relation(vectors, 4).diagonal(dim1=-2, dim2=-1) < torch.finfo(torch.float64).tiny ** 0.5).any()
    student.requires_grad_()
    loss = relation_loss((teacher,) * 3, (student,) * 3, num_relation_heads=4, relations=("kk",))
    (grad,) = torch.autograd.grad(loss, student)
    exact_student = student.detach().clone().requires_grad_()
    teacher_logits, student_logits = (
        heads @ heads.transpose(-2, -1) / heads.shape[-1] ** 0.5
        for heads in (relation_heads(teacher, 4), relation_heads(exact_student, 4))
    )
    expected = (
        (teacher_logits.softmax(-1) * (teacher_logits.log_softmax(-1) - student_logits.log_softmax(-1))).sum(-1).mean()
    )
    (expected_grad,) = torch.autograd.grad(expected, exact_student)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-12)


def test_relation_log_normaliser_keeps_float32_precision_where_the_diagonal_is_far_below_the_max():
    generator = torch.Generator().manual_seed(37)
    logits = torch.randn(1, 64, 64, generator=generator) * 3
    logits.diagonal(dim1=1, dim2=2).sub_(torch.linspace(0, 40, 64))  # p_d from ~1e-2 down to ~1e-19
    exact = torch.logsumexp(logits.double(), -1)
    got = relation_module._log_normaliser(logits, logits.softmax(-1))
    # the row-max formula's own error here is 4.9e-7; the diagonal at p_d ~ 1e-17 was 3.6e-6 off
    assert float((got.double() - exact).abs().max()) < 1e-6


def test_fused_losses_agree_with_plain_autograd_over_many_chunks(monkeypatch):
    """Shrunk chunks: every chunk boundary, buffer reuse and the short last chunk are exercised."""
    monkeypatch.setattr(relation_module, "CHUNK_ELEMENTS", 2 * 36)  # two relation heads of 6 x 6
    monkeypatch.setattr(mixture_kl_module, "CHUNK_ELEMENTS", 2 * 5 * 36)  # two samples of 5 heads x 6 x 6
    generator = torch.Generator().manual_seed(38)
    teacher = random_maps(5, 5, 6, 6, seed=39, sharpness=2.0)
    student = random_maps(5, 2, 6, 6, seed=40, sharpness=2.0)
    mask = torch.rand(5, 6, generator=generator) > 0.3
    mask[:, 0] = True  # plain autograd's relation is NaN for a sample without any valid key
    teacher_qkv = tuple(torch.randn(5, 4, 6, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    student_qkv = tuple(torch.randn(5, 2, 6, 6, generator=generator, dtype=torch.float64) for _ in range(3))
    weights = torch.rand(5, 5, generator=generator, dtype=torch.float64)
    results = []
    for teacher_grad in (False, True):  # True: plain autograd
        s = student.clone().requires_grad_()
        kl = amad_loss(teacher.clone().requires_grad_(teacher_grad), s, query_mask=mask, reduction="none")
        qkv = tuple(x.clone().requires_grad_() for x in student_qkv)
        frozen = tuple(x.clone().requires_grad_(teacher_grad) for x in teacher_qkv)
        relation = relation_loss(frozen, qkv, num_relation_heads=4, query_mask=mask, key_mask=mask, reduction="none")
        ((kl * weights).sum() + (relation * weights[:, :4]).sum()).backward()
        results.append((kl.detach(), relation.detach(), s.grad, *(x.grad for x in qkv)))
    for fused, plain in zip(*results):
        torch.testing.assert_close(fused, plain)


@pytest.mark.parametrize("variant", ["kl", "token"])
def test_fused_losses_accept_an_empty_batch(variant):
    teacher, student = random_maps(0, 3, 4, 4, seed=0), random_maps(0, 2, 4, 4, seed=0).requires_grad_()
    assert amad_loss(teacher, student, variant=variant, reduction="none").shape == (0, 3)
    qkv = tuple(torch.zeros(0, 2, 4, 8) for _ in range(3))
    assert relation_loss(qkv, qkv, num_relation_heads=4, reduction="none").shape == (0, 4)


@pytest.mark.parametrize("variant", ["kl", "token"])
def test_fused_amad_paths_compute_in_float32_under_autocast_even_for_the_backward(variant):
    """Forward and hand-written backward ignore an enclosing autocast (the trainer's bf16 one, or a
    caller who runs ``backward()`` inside it): float32 values and gradients, no dtype errors."""
    teacher = random_maps(2, 4, 6, 6, seed=34, dtype=torch.float32)
    student = random_maps(2, 2, 6, 6, seed=35, dtype=torch.float32)
    exact_student = student.clone().requires_grad_()
    exact = amad_loss(teacher, exact_student, variant=variant, temperature=0.5)
    exact.backward()
    autocast_student = student.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = amad_loss(teacher, autocast_student, variant=variant, temperature=0.5)
        loss.backward()
    assert loss.dtype == torch.float32 and autocast_student.grad.dtype == torch.float32
    torch.testing.assert_close(loss, exact)
    torch.testing.assert_close(autocast_student.grad, exact_student.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_relation_loss_with_masks_runs_under_autocast(dtype):
    generator = torch.Generator().manual_seed(32)
    teacher = tuple(torch.randn(2, 4, 6, 8, generator=generator) for _ in range(3))
    student = tuple(torch.randn(2, 2, 6, 8, generator=generator).requires_grad_() for _ in range(3))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    exact = relation_loss(teacher, student, num_relation_heads=4, query_mask=mask, key_mask=mask)
    with torch.autocast("cpu", dtype=dtype):
        low = relation_loss(teacher, student, num_relation_heads=4, query_mask=mask, key_mask=mask)
    low.float().backward()
    assert torch.isfinite(low) and float(low.detach()) == pytest.approx(float(exact.detach()), rel=2e-2)
    assert all(torch.isfinite(s.grad).all() for s in student)


def test_a2d_loss_golden_value_and_the_aligner_it_learns():
    from amad.losses.a2d import HeadAligner, a2d_loss

    teacher = torch.tensor([[[[0.75, 0.25]]]])  # [B=1, Ht=1, q=1, k=2]
    student = torch.tensor([[[[0.5, 0.5]]]])
    aligner = HeadAligner(1, 1)
    with torch.no_grad():
        aligner.conv.weight.fill_(2.0)
        aligner.conv.bias.zero_()
    # softmax over the map of the teacher's probabilities: [sigmoid(0.5), 1 - sigmoid(0.5)]; aligned: uniform
    p = 1 / (1 + math.exp(-0.5))
    golden = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    assert a2d_loss(teacher, student, aligner).item() == pytest.approx(golden, rel=1e-6)
    assert golden == pytest.approx(0.0302999, rel=1e-5)
    loss = a2d_loss(teacher, student, aligner)
    loss.backward()
    assert aligner.conv.weight.grad is not None and aligner.conv.weight.grad.abs().sum() > 0


def test_a2d_loss_leaves_padding_out_and_is_zero_for_an_aligned_copy():
    from amad.losses.a2d import HeadAligner, a2d_loss

    torch.manual_seed(0)
    teacher = torch.softmax(torch.randn(2, 4, 5, 6), -1)
    aligner = HeadAligner(4, 4)
    with torch.no_grad():  # identity: the aligned student is the student
        aligner.conv.weight.copy_(torch.eye(4)[:, :, None, None])
        aligner.conv.bias.zero_()
    assert a2d_loss(teacher, teacher.clone(), aligner).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.softmax(torch.randn(2, 2, 5, 6), -1)
    two_heads = HeadAligner(2, 4)
    query_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    key_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    base = a2d_loss(teacher, student, two_heads, query_mask=query_mask, key_mask=key_mask)
    changed_teacher, changed_student = teacher.clone(), student.clone()
    changed_teacher[1, :, 3:] = torch.rand(4, 2, 6)  # padding rows
    changed_student[1, :, :, 4:] = 5.0  # padding keys
    again = a2d_loss(changed_teacher, changed_student, two_heads, query_mask=query_mask, key_mask=key_mask)
    assert torch.isfinite(base) and again.item() == pytest.approx(base.item(), rel=1e-6)
