"""amad's decode loop: greedy and beam search over any decoder, batched and deterministic.

The loop is numpy and knows nothing of the model: it drives a :class:`DecoderState`, which runs the
decoder (a torch module, an ONNX Runtime session, a Triton model) and keeps what the decoder needs
between steps: the image encoding, and the key/value cache where there is one. The state receives the
whole prefix each step; a cached state reads only its last column, an uncached one recomputes the
prefix, so both give the same tokens and the benchmark can time either through this one loop.

Ties break towards the lower token id and the earlier beam (stable sorts), so a run is reproducible
and a batch decodes as its inputs would one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from amad.generation.config import GenerationConfig


class DecoderState(Protocol):
    """A decoder started on a batch of inputs (rows), ready to step."""

    def step(self, prefixes: np.ndarray) -> np.ndarray:
        """Next-token logits ``[N, V]`` (float) after each row of ``prefixes`` ``[N, t]`` (int64, the
        start token first); the rows are those the last :meth:`select` kept."""

    def select(self, rows: np.ndarray) -> None:
        """Keep rows ``rows`` ``[N']`` (int64, repeats allowed) of the state, in that order: the beam
        expansion and each beam-search step's parents."""


@dataclass(frozen=True)
class SpecialTokens:
    """The vocabulary's start, end and padding ids."""

    start: int
    end: int
    pad: int


@dataclass
class Generation:
    """What a decode run returns.

    Attributes:
        tokens: per input, the chosen output's token ids, without the start token and the end token.
        scores: ``[B]`` the chosen outputs' ranking scores (sum of log-probabilities over
            ``length ** length_penalty``; the end token counts in the length).
        steps: decoder calls made.
        step_logits: greedy runs with ``keep_logits``: per step, the logits ``[B, V]`` the decoder
            returned (rows of finished inputs included), for parity checks; else empty.
    """

    tokens: list[list[int]]
    scores: np.ndarray
    steps: int
    step_logits: list[np.ndarray] = field(default_factory=list)

    def padded(self, length: int, pad: int) -> np.ndarray:
        """``[B, length]`` int64: each input's tokens, right-padded with ``pad``."""
        out = np.full((len(self.tokens), length), pad, dtype=np.int64)
        for row, ids in enumerate(self.tokens):
            out[row, : len(ids)] = ids
        return out

    def generated_tokens(self, limit: int) -> int:
        """Tokens generated over all inputs, each input's end token included (none where it stopped at
        ``limit`` tokens)."""
        return sum(len(ids) + (len(ids) < limit) for ids in self.tokens)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``[N, V]`` logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def banned_tokens(
    logprobs: np.ndarray, prefixes: np.ndarray, generated: int, config: GenerationConfig, end: int
) -> None:
    """Set to -inf, in place, the log-probabilities ``[N, V]`` of tokens the rules forbid after
    ``prefixes`` ``[N, t]`` when ``generated`` tokens have been generated: the end token before
    ``min_length``, and every token that would repeat an n-gram of ``no_repeat_ngram`` tokens."""
    if generated < config.min_length:
        logprobs[:, end] = -np.inf
    n = config.no_repeat_ngram
    if n == 0 or prefixes.shape[1] < n:
        return
    for row, prefix in enumerate(prefixes.tolist()):
        tail = tuple(prefix[len(prefix) - n + 1 :])
        for start in range(len(prefix) - n + 1):
            if tuple(prefix[start : start + n - 1]) == tail:
                logprobs[row, prefix[start + n - 1]] = -np.inf


def generate(
    state: DecoderState, batch_size: int, config: GenerationConfig, tokens: SpecialTokens, keep_logits: bool = False
) -> Generation:
    """Decode ``batch_size`` inputs from ``state`` (started on them, one row each) by ``config``."""
    if config.beams == 1:
        return _greedy(state, batch_size, config, tokens, keep_logits)
    return _beam_search(state, batch_size, config, tokens)


def _greedy(
    state: DecoderState, batch_size: int, config: GenerationConfig, tokens: SpecialTokens, keep_logits: bool
) -> Generation:
    prefixes = np.full((batch_size, 1), tokens.start, dtype=np.int64)
    finished = np.zeros(batch_size, dtype=bool)
    lengths = np.zeros(batch_size, dtype=np.int64)
    sums = np.zeros(batch_size)
    step_logits = []
    for generated in range(config.max_length):
        logits = state.step(prefixes)
        if keep_logits:
            step_logits.append(np.asarray(logits))
        logprobs = log_softmax(logits)
        banned_tokens(logprobs, prefixes, generated, config, tokens.end)
        chosen = logprobs.argmax(axis=1)  # the first maximum: ties go to the lower id
        chosen[finished] = tokens.pad
        sums += np.where(finished, 0.0, logprobs[np.arange(batch_size), chosen])
        lengths += ~finished
        prefixes = np.concatenate([prefixes, chosen[:, None]], axis=1)
        finished |= chosen == tokens.end
        if finished.all():
            break
    outputs = [_strip(row, tokens) for row in prefixes[:, 1:].tolist()]
    scores = sums / np.maximum(lengths, 1) ** config.length_penalty
    return Generation(outputs, scores, generated + 1, step_logits)


def _strip(row: list[int], tokens: SpecialTokens) -> list[int]:
    """Generated ids up to (not including) the end token."""
    return row[: row.index(tokens.end)] if tokens.end in row else row


def _beam_search(state: DecoderState, batch_size: int, config: GenerationConfig, tokens: SpecialTokens) -> Generation:
    beams = config.beams
    state.select(np.repeat(np.arange(batch_size), beams))
    prefixes = np.full((batch_size * beams, 1), tokens.start, dtype=np.int64)
    running = np.full((batch_size, beams), -np.inf)
    running[:, 0] = 0.0  # the first step expands one beam per input: no duplicate hypotheses
    done = np.zeros(batch_size, dtype=bool)
    hypotheses: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch_size)]

    for generated in range(config.max_length):
        logprobs = log_softmax(state.step(prefixes))  # (B*K, V)
        banned_tokens(logprobs, prefixes, generated, config, tokens.end)
        vocab = logprobs.shape[1]
        candidates = (running.reshape(-1, 1) + logprobs).reshape(batch_size, beams * vocab)
        order = np.argsort(-candidates, axis=1, kind="stable")[:, : 2 * beams]  # (B, 2K)
        length_scale = (generated + 1) ** config.length_penalty
        parents = np.zeros((batch_size, beams), dtype=np.int64)
        chosen = np.full((batch_size, beams), tokens.pad, dtype=np.int64)
        for b in range(batch_size):
            if done[b]:  # kept stepping alongside the others, never read again
                parents[b] = np.arange(beams)
                continue
            kept = 0
            for rank, flat in enumerate(order[b].tolist()):
                score = candidates[b, flat]
                if score == -np.inf:
                    break
                beam, token = divmod(flat, vocab)
                if token == tokens.end:
                    if rank < beams:  # an end among the best K finishes a hypothesis
                        hypotheses[b].append((score / length_scale, prefixes[b * beams + beam, 1:].tolist()))
                    continue
                parents[b, kept], chosen[b, kept], running[b, kept] = beam, token, score
                kept += 1
                if kept == beams:
                    break
            running[b, kept:] = -np.inf
            done[b] = _finished(hypotheses[b], running[b].max(), length_scale, beams)
        rows = (parents + np.arange(batch_size)[:, None] * beams).reshape(-1)
        state.select(rows)
        prefixes = np.concatenate([prefixes[rows], chosen.reshape(-1, 1)], axis=1)
        if done.all():
            break

    length_scale = (generated + 1) ** config.length_penalty
    for b in np.flatnonzero(~done).tolist():  # out of length: the running beams compete as they are
        for k in range(beams):
            if running[b, k] > -np.inf:
                hypotheses[b].append((running[b, k] / length_scale, prefixes[b * beams + k, 1:].tolist()))
    best = [_best(h) for h in hypotheses]
    return Generation([list(output) for _, output in best], np.array([score for score, _ in best]), generated + 1)


def _best(hypotheses: list[tuple[float, list[int]]]) -> tuple[float, list[int]]:
    """The highest-scoring hypothesis, the first found among equals; ``(-inf, [])`` where the rules
    left none (every token banned)."""
    if not hypotheses:
        return -np.inf, []
    return max(hypotheses, key=lambda h: h[0])  # max keeps the first of equal keys


def _finished(hypotheses: list, best_running: float, length_scale: float, beams: int) -> bool:
    """Hugging Face's ``early_stopping=False`` rule: ``beams`` hypotheses are finished and the best
    running beam, scored at its current length, cannot beat the worst of them."""
    if len(hypotheses) < beams:
        return False
    worst = sorted(score for score, _ in hypotheses)[-beams]
    return best_running / length_scale <= worst
