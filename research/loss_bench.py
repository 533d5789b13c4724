"""Cost of the attention distillation terms relative to the student layer they come from.

For a ViT-S-like setting (B=32, 197 tokens, teacher 12 heads, student 4 heads) this times
forward + backward of each loss against forward + backward of the student's transformer block
(with its attention map materialised, as it is when captured), and reports peak extra memory.
The cases are timed in interleaved rounds; "vs layer" is the median over rounds of each round's
ratio, so a noisy machine slows numerator and denominator alike::

    python -m research.loss_bench [--batch 32] [--tokens 197] [--threads N] [--json out.json]

The hand-written losses are many cache-sized operations, which two threads speed up less than the
layer's large products: compare ``--threads 1`` with the default (all of torch's threads).

``relation floor`` is the part of the relation loss that no implementation of it can skip: per
relation head its three matrix products (teacher and student relations, the student's gradient)
and two softmaxes, on the same chunks, and nothing else (no scaling, masks, differences or
reductions); the relation loss can come no closer to the layer than that.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from collections.abc import Callable

import torch
from timm.models.vision_transformer import Block

from amad.bench import memory
from amad.bench.timing import interleaved_ms
from amad.distill.capture import capture_attention
from amad.losses.amad import amad_loss
from amad.losses.one_to_one import one_to_one_loss
from amad.losses.relation import relation_chunks, relation_layout, relation_loss

LAYER = "student layer (fwd+bwd)"
RELATION_FLOOR = "relation floor (products+softmax)"


def random_probs(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return (torch.randn(shape, generator=generator) * 2).softmax(-1)


def build_cases(args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    generator = torch.Generator().manual_seed(0)
    batch, tokens = args.batch, args.tokens
    block = Block(dim=args.student_width, num_heads=args.student_heads, mlp_ratio=4.0, qkv_bias=True)
    x = torch.randn(batch, tokens, args.student_width, generator=generator)

    def layer() -> None:
        block.zero_grad(set_to_none=True)
        with capture_attention(block, "attn"):
            block(x).square().mean().backward()

    teacher = random_probs((batch, args.teacher_heads, tokens, tokens), generator)
    student = random_probs((batch, args.student_heads, tokens, tokens), generator).requires_grad_()
    teacher_head_dim = args.teacher_width // args.teacher_heads
    student_head_dim = args.student_width // args.student_heads
    teacher_qkv = tuple(torch.randn(batch, args.teacher_heads, tokens, teacher_head_dim) for _ in range(3))
    student_qkv = tuple(
        torch.randn(batch, args.student_heads, tokens, student_head_dim).requires_grad_() for _ in range(3)
    )

    def attention_loss(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            student.grad = None
            loss_fn().backward()

        return step

    cases = {LAYER: layer}
    for variant in ("kl", "mse", "token"):
        cases[f"amad_loss[{variant}]"] = attention_loss(lambda v=variant: amad_loss(teacher, student, variant=v))
    cases["one_to_one_loss[truncate]"] = attention_loss(lambda: one_to_one_loss(teacher, student))
    cases[f"relation_loss[R={args.relation_heads}]"] = attention_loss(
        lambda: relation_loss(teacher_qkv, student_qkv, num_relation_heads=args.relation_heads)
    )
    cases[RELATION_FLOOR] = lambda: relation_floor(teacher_qkv, student_qkv, args.relation_heads)
    return cases


@torch.no_grad()
def relation_floor(teacher_qkv: tuple[torch.Tensor, ...], student_qkv: tuple[torch.Tensor, ...], heads: int) -> None:
    """The relation loss's unavoidable arithmetic (see the module's docstring), into reused buffers."""
    for teacher, student in zip(teacher_qkv, student_qkv):
        teacher, student = relation_layout(teacher, heads), relation_layout(student, heads)  # (N, L, d)
        count, length = student.shape[:2]
        gradient, logits = torch.empty_like(student), None
        for rows in relation_chunks(count, length):
            size = rows.stop - rows.start
            if logits is None or logits.shape[1] != size:  # contiguous out=, as in the loss
                logits = student.new_empty(2, size, length, length)
                probs = torch.empty_like(logits)
            for side, vectors in enumerate((teacher[rows], student[rows])):
                torch.bmm(vectors, vectors.transpose(1, 2), out=logits[side])
            torch._softmax(logits, -1, False, out=probs)
            torch.bmm(probs[1], student[rows], out=gradient[rows])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--teacher-heads", type=int, default=12)
    parser.add_argument("--teacher-width", type=int, default=768)
    parser.add_argument("--student-heads", type=int, default=4)
    parser.add_argument("--student-width", type=int, default=384)
    parser.add_argument("--relation-heads", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    default_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, argv)
    finally:
        torch.set_num_threads(default_threads)


def _run(args: argparse.Namespace, argv: list[str]) -> dict:
    cases = build_cases(args)
    if args.memory_only:  # child process of memory.measure_in_child
        print(json.dumps({name: memory.peak_extra_mib(step) for name, step in cases.items()}))
        return {}
    peaks = memory.measure_in_child(__spec__.name, [a for a in argv if a != "--memory-only"])
    times = interleaved_ms(cases, warmup=args.warmup, repeats=args.repeats)
    layer = times[LAYER]
    results = {
        name: {
            "ms": statistics.median(ms),
            "fraction_of_layer": statistics.median(case / whole for case, whole in zip(ms, layer)),
            "peak_extra_mib": peaks.get(name),
        }
        for name, ms in times.items()
    }
    print(
        f"{args.batch=} {args.tokens=} {args.teacher_heads=} {args.student_heads=} "
        f"threads={torch.get_num_threads()} torch={torch.__version__} cpu={platform.processor() or platform.machine()}"
    )
    print(f"{'case':32s} {'ms (median)':>12s} {'vs layer':>9s} {'peak MiB':>9s}")
    for name, result in results.items():
        peak = "n/a" if result["peak_extra_mib"] is None else f"{result['peak_extra_mib']:.0f}"
        print(f"{name:32s} {result['ms']:12.1f} {result['fraction_of_layer']:8.1%} {peak:>9s}")
    report = {
        "settings": vars(args),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
