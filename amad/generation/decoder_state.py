"""The decoder state of a two-graph generative model: an encoder graph run once per input, a decoder
graph stepped once per token with a key/value cache (:class:`~amad.generation.search.DecoderState`).

The encoder graph returns the first step's ``logits [B, V]`` (the start token's), the **memory** the
decoder reads at every step (the cross-attention keys and values, computed once per input, and any
mask over them) and the **cache** after the start token. The decoder graph takes ``(tokens, *memory,
*cache)`` and returns ``logits`` and the grown cache under ``present_<name>``. Captioning's image
graph and translation's encoder graph are both such encoders.

Torch-free: the graphs may be torch modules (torch tensors flow through, on their device), ONNX
Runtime sessions or served models (numpy arrays flow through).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amad.contracts.graph import Graph

PRESENT = "present_"


class EncodedDecoderState:
    """A batch encoded by an encoder graph (its outputs ``first``), stepped through ``decoder``.

    Args:
        decoder: the decoder graph.
        first: the encoder graph's outputs on the batch.
        memory: the memory names in the decoder's input order, each with its batch axis.
        cache: the cache names in the decoder's input order (batch axis 1: ``[layers, B, H, t, d]``).
        cross: the memory names that are cross-attention keys and values (what :meth:`cache_bytes`
            counts as the cross-attention cache).
        numpy: the inputs are numpy arrays (ONNX Runtime, served), not torch tensors.
        device: the torch device of the tokens fed to a torch decoder.
        cached: each step feeds the newest token and the key/value cache (and keeps the cache the graph
            returns); otherwise each step feeds the whole prefix after the start token with the start
            token's cache, recomputing every token (the baseline the cache is measured against).
    """

    def __init__(
        self,
        decoder: Graph,
        first: dict[str, Any],
        memory: dict[str, int],
        cache: tuple[str, ...],
        cross: tuple[str, ...],
        *,
        numpy: bool,
        device: Any = None,
        cached: bool = True,
    ) -> None:
        self.decoder = decoder
        self.cached = cached
        self.memory_axes = memory
        self.cache_names = cache
        self.cross_names = cross
        self.first_logits = first["logits"]
        self.memory = {name: first[name] for name in memory}
        self.start_cache = tuple(first[name] for name in cache)
        self.cache = self.start_cache
        self.numpy = numpy
        self.device = device

    def _tokens(self, tokens: np.ndarray) -> Any:
        if self.numpy:
            return np.ascontiguousarray(tokens, dtype=np.int64)
        import torch

        return torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(self.device)

    @staticmethod
    def _logits(logits: Any) -> np.ndarray:
        return logits if isinstance(logits, np.ndarray) else logits.float().cpu().numpy()

    def step(self, prefixes: np.ndarray) -> np.ndarray:
        if prefixes.shape[1] == 1:  # the start token: the encoder graph's first step
            return self._logits(self.first_logits)
        memory = tuple(self.memory.values())
        if self.cached:
            outputs = self.decoder(self._tokens(prefixes[:, -1:]), *memory, *self.cache)
            self.cache = tuple(outputs[PRESENT + name] for name in self.cache_names)
        else:
            outputs = self.decoder(self._tokens(prefixes[:, 1:]), *memory, *self.start_cache)
        return self._logits(outputs["logits"])

    def _take(self, value: Any, rows: np.ndarray, axis: int) -> Any:
        if self.numpy:
            return np.take(value, rows, axis=axis)
        import torch

        return value.index_select(axis, torch.as_tensor(rows, device=value.device))

    def select(self, rows: np.ndarray) -> None:
        self.first_logits = self._take(self.first_logits, rows, 0)
        self.memory = {name: self._take(value, rows, self.memory_axes[name]) for name, value in self.memory.items()}
        self.start_cache = tuple(self._take(value, rows, 1) for value in self.start_cache)
        self.cache = tuple(self._take(value, rows, 1) for value in self.cache)

    def cached_positions(self) -> int:
        """Token positions the self-attention cache holds now (the start token and the fed tokens)."""
        return int(self.cache[0].shape[3])

    def cache_bytes(self) -> dict[str, int]:
        """Bytes per row (one output) of the self-attention caches now held, and of the cross-attention
        keys and values, read from the tensors themselves."""
        rows = int(self.cache[0].shape[1])
        sizes = {
            "self_attention": sum(_nbytes(value) for value in self.cache),
            "cross_attention": sum(_nbytes(self.memory[name]) for name in self.cross_names),
        }
        return {name: size // rows for name, size in sizes.items()}


def _nbytes(value: Any) -> int:
    return int(value.nbytes) if isinstance(value, np.ndarray) else value.numel() * value.element_size()


def generation_stats(generation: Any, state: EncodedDecoderState, limit: int) -> dict[str, float]:
    """What the benchmark records of one whole generation (a task's ``GenerationCall``): tokens generated
    (end tokens included), decoder steps, and the cache bytes read from the tensors the run ended with:
    self-attention per generated token, cross-attention per output."""
    sizes = state.cache_bytes()
    return {
        "tokens": generation.generated_tokens(limit),
        "steps": generation.steps,
        "self_attention_cache_bytes_per_token": sizes["self_attention"] / state.cached_positions(),
        "cross_attention_cache_bytes": sizes["cross_attention"],
    }


def example_decoder_inputs(
    first: dict[str, Any], decoder: Graph, memory: tuple[str, ...], cache: tuple[str, ...], new_tokens: int
) -> tuple:
    """Example inputs of a torch decoder graph (export tracing, parity): from the encoder graph's outputs
    ``first``, two greedy steps, then ``new_tokens`` new tokens after a cache of 3 (the start token and
    the two): sizes of 1 would be fixed in the traced graph."""
    import torch

    with torch.no_grad():
        held = tuple(first[name] for name in memory)
        past = tuple(first[name] for name in cache)
        token = first["logits"].argmax(-1, keepdim=True)
        for _ in range(2):
            step = decoder(token, *held, *past)
            past = tuple(step[PRESENT + name] for name in cache)
            token = step["logits"].argmax(-1, keepdim=True)
    return (torch.cat([token] * new_tokens, dim=1), *held, *past)
