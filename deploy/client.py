"""Ask a Triton server serving an amad model repository: image + question -> answer.

    pip install 'tritonclient[http]'
    python -m deploy.client --url localhost:8000 --image scene.png --question "what color is the circle?"

Preprocessing settings come from the served model's config (``amad.preprocess``), so the
client cannot drift from what the model was trained with. Use one client per thread.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from amad.preprocess import Preprocess
from deploy.triton import ONNX_MODEL


def ask(url: str, model: str, image: str, question: str, top_k: int = 1) -> list[tuple[str, float]]:
    try:
        import tritonclient.http as http
    except ImportError:
        sys.exit("error: the client needs tritonclient: pip install 'tritonclient[http]'")
    client = http.InferenceServerClient(url=url)
    config = client.get_model_config(model)
    preprocess = Preprocess.from_dict(json.loads(config["parameters"]["amad.preprocess"]["string_value"]))
    pixels = preprocess.load_image(image).numpy()[None]
    tokens = preprocess.tokenize([question]).numpy()
    inputs = [
        http.InferInput("pixels", list(pixels.shape), "FP32"),
        http.InferInput("tokens", list(tokens.shape), "INT64"),
    ]
    inputs[0].set_data_from_numpy(pixels.astype(np.float32))
    inputs[1].set_data_from_numpy(tokens.astype(np.int64))
    output = http.InferRequestedOutput("logits", class_count=top_k)
    result = client.infer(model, inputs, outputs=[output])
    answers = []
    for entry in result.as_numpy("logits").reshape(-1)[:top_k]:  # "score:index:label"
        score, _, label = (entry.decode() if isinstance(entry, bytes) else entry).split(":", 2)
        answers.append((label, float(score)))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--model", default=ONNX_MODEL)
    parser.add_argument("--image", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--top-k", type=int, default=1)
    args = parser.parse_args()
    for answer, logit in ask(args.url, args.model, args.image, args.question, args.top_k):
        print(f"{answer}\t(logit {logit:.3f})")


if __name__ == "__main__":
    main()
