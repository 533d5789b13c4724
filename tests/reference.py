"""Slow, loop-based reference implementations written straight from DESIGN.md's equations.

They share no code with ``amad.losses`` and exist only to check it.
"""

from __future__ import annotations

import math

import torch


def kl_row(target, prediction):
    return sum(float(t) * math.log(float(t) / float(p)) for t, p in zip(target, prediction) if t > 0)


def cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def softmax(values, temperature):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def valid_rows(mask, b, q):
    return [r for r in range(q) if mask is None or bool(mask[b, r])]


def weights(teacher, student, temperature=1.0, mask=None):
    batch, heads_t, q, _ = teacher.shape
    out = torch.zeros(batch, heads_t, student.shape[1], dtype=torch.float64)
    for b in range(batch):
        rows = valid_rows(mask, b, q)
        for i in range(heads_t):
            cosines = [cosine(teacher[b, i, rows], student[b, j, rows]) for j in range(student.shape[1])]
            out[b, i] = torch.tensor(softmax(cosines, temperature), dtype=torch.float64)
    return out


def amad(teacher, student, variant="kl", temperature=1.0, mask=None):
    """Per (b, i) loss ``[B, Ht]``."""
    batch, heads_t, q, _ = teacher.shape
    heads_s = student.shape[1]
    out = torch.zeros(batch, heads_t, dtype=torch.float64)
    a = weights(teacher, student, temperature, mask)
    for b in range(batch):
        rows = valid_rows(mask, b, q)
        for i in range(heads_t):
            if variant == "mse":
                t = teacher[b, i, rows].flatten().double()
                mix = sum(
                    a[b, i, j] * (lambda s: s / s.norm())(student[b, j, rows].flatten().double())
                    for j in range(heads_s)
                )
                out[b, i] = float(((t / t.norm() - mix) ** 2).sum())
                continue
            total = 0.0
            for r in rows:
                if variant == "kl":
                    row_weights = a[b, i]
                else:  # token
                    cosines = [cosine(teacher[b, i, r], student[b, j, r]) for j in range(heads_s)]
                    row_weights = softmax(cosines, temperature)
                mixture = sum(row_weights[j] * student[b, j, r].double() for j in range(heads_s))
                total += kl_row(teacher[b, i, r], mixture)
            out[b, i] = total / max(len(rows), 1)
    return out
