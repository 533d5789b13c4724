"""Per-caption latency of captioning models, with and without the key/value cache (a first measurement;
the benchmark stage does not time whole captions yet).

For each model folder (and its export folder where it has one): greedy captions of the first
validation images at batch 1 and 8, timed as whole decode runs through :class:`CaptionPredictor` on
torch eager and ONNX Runtime, cached and uncached; also the cache bytes per generated token read
from the cache tensors. Prints one JSON object.

Usage: python -m research.caption_latency models/teacher models/h2-amad [--exported exported] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from amad.models import load_model
from amad.tasks.captioning.predictor import CaptionPredictor


def time_captions(predictor: CaptionPredictor, pixels, repeats: int) -> dict:
    predictor({"pixels": pixels})  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        generation, _ = predictor.generate(pixels)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    tokens = sum(len(t) + 1 for t in generation.tokens)  # the end token counts
    return {"ms_per_caption": 1000 * median / len(pixels), "tokens_per_s": tokens / median, "steps": generation.steps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--exported", default="exported")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from amad.export.onnx_runtime import OnnxModel

    results = {}
    for folder in args.models:
        loaded = load_model(folder)
        name = Path(folder).name
        dataset = loaded.task.dataset(args.data, "val", loaded.preprocess, loaded.state)
        graphs = loaded.task.graphs(loaded.model.eval())
        export = Path(args.exported) / name
        sessions = {g: OnnxModel(export / f"{g}.onnx") for g in graphs} if (export / "decoder.onnx").exists() else None
        entry: dict = {}
        for batch in (1, 8):
            pixels = torch.stack([dataset.pixels(i) for i in range(batch)])
            with torch.inference_mode():
                for cached in (True, False):
                    key = f"torch_{'cached' if cached else 'uncached'}_b{batch}"
                    entry[key] = time_captions(CaptionPredictor(graphs, cached=cached), pixels, args.repeats)
                    if sessions is not None:
                        key = f"onnxruntime_{'cached' if cached else 'uncached'}_b{batch}"
                        entry[key] = time_captions(
                            CaptionPredictor(sessions, cached=cached), pixels.numpy(), args.repeats
                        )
        with torch.inference_mode():
            _, state = CaptionPredictor(graphs).generate(torch.stack([dataset.pixels(0)]))
        tokens = int(state.cache[0].shape[3])
        sizes = state.cache_bytes()
        entry["self_attention_cache_bytes_per_token"] = sizes["self_attention"] / tokens
        entry["cross_attention_cache_bytes"] = sizes["cross_attention"]
        results[name] = entry
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
