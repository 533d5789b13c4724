"""Ask a Triton server serving an amad model: VQA image + question -> answer(s); retrieval image or
caption -> its unit-length embedding.

    pip install 'tritonclient[http]'      # included in amad's dev extra
    python -m deploy.client --url localhost:8000 --image scene.png --question "what color is the circle?"
    python -m deploy.client --url localhost:8000 --caption "a red circle"       # retrieval: text embedding
    python -m deploy.client --url localhost:8000 --image scene.png              # retrieval: image embedding

The answer vocabulary and the preprocessing come from the served model's config
(``amad.answers`` / ``amad.preprocess`` parameters, written by ``deploy.triton``), so the client
cannot drift from what the model was trained with. Servers whose config has no parameters (e.g.
PyTriton) need ``--metadata exported/NAME/model.onnx``. Use one client per thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from amad.preprocess import Preprocess
from amad.serving.names import triton_model_name
from deploy.triton import ONNX_MODEL


def served_metadata(client, model: str, metadata_onnx: str | Path | None) -> tuple[list[str], Preprocess]:
    parameters = client.get_model_config(model).get("parameters", {})
    if "amad.answers" in parameters and "amad.preprocess" in parameters:
        answers = json.loads(parameters["amad.answers"]["string_value"])
        return answers, Preprocess.from_dict(json.loads(parameters["amad.preprocess"]["string_value"]))
    if metadata_onnx is None:
        sys.exit(f"error: model '{model}' publishes no amad parameters; pass --metadata exported/NAME/model.onnx")
    from amad.tasks.vqa.predict import read_exported_metadata

    return read_exported_metadata(metadata_onnx)


def check_text(preprocess: Preprocess, text: str, what: str) -> None:
    """Refuse (exit with a message) an empty text or one longer than the model's context."""
    if not text.strip():
        sys.exit(f"error: the {what} is empty")
    count = preprocess.token_count(text)
    if count > preprocess.context_length:
        sys.exit(
            f"error: the {what} is {count} tokens long; the model reads at most {preprocess.context_length} "
            "(start and end tokens included): shorten it"
        )


def read_image(preprocess: Preprocess, image: str | Path) -> np.ndarray:
    """The preprocessed image ``[1, 3, H, W]``; exits with a message naming a file that is not an image."""
    from amad.errors import DataError

    try:
        return preprocess.load_image(image).numpy()[None].astype(np.float32)
    except DataError as error:
        sys.exit(f"error: {error}")


def ask(
    url: str, model: str, image: str | Path, question: str, *, top_k: int = 1, metadata_onnx: str | Path | None = None
) -> list[tuple[str, float]]:
    """Top-``k`` (answer, probability) from the server."""
    try:
        import tritonclient.http as http
    except ImportError:
        sys.exit("error: the client needs tritonclient: pip install 'tritonclient[http]'")
    client = http.InferenceServerClient(url=url)
    answers, preprocess = served_metadata(client, model, metadata_onnx)
    check_text(preprocess, question, "question")
    pixels = read_image(preprocess, image)
    tokens = preprocess.tokenize([question]).numpy().astype(np.int64)
    inputs = [
        http.InferInput("pixels", list(pixels.shape), "FP32"),
        http.InferInput("tokens", list(tokens.shape), "INT64"),
    ]
    inputs[0].set_data_from_numpy(pixels)
    inputs[1].set_data_from_numpy(tokens)
    logits = client.infer(model, inputs, outputs=[http.InferRequestedOutput("logits")]).as_numpy("logits")[0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities)[:top_k]
    return [(answers[i], float(probabilities[i])) for i in order]


def embed(
    url: str, *, image: str | Path | None = None, caption: str | None = None, metadata_onnx: str | Path | None = None
) -> np.ndarray:
    """The served retrieval encoders' unit-length embedding ``[E]`` of one image or one caption."""
    try:
        import tritonclient.http as http
    except ImportError:
        sys.exit("error: the client needs tritonclient: pip install 'tritonclient[http]'")
    if (image is None) == (caption is None):
        sys.exit("error: give one --image or one --caption")
    graph, name = ("image", "pixels") if image is not None else ("text", "tokens")
    model = triton_model_name("retrieval", graph)
    client = http.InferenceServerClient(url=url)
    parameters = client.get_model_config(model).get("parameters", {})
    if "amad.preprocess" in parameters:
        preprocess = Preprocess.from_dict(json.loads(parameters["amad.preprocess"]["string_value"]))
    elif metadata_onnx is not None:
        from amad.export.onnx_model import read_metadata

        preprocess = Preprocess.from_dict(json.loads(read_metadata(metadata_onnx)["amad.preprocess"]))
    else:
        sys.exit(f"error: model '{model}' publishes no amad parameters; pass --metadata exported/NAME/{graph}.onnx")
    if image is not None:
        array, dtype = read_image(preprocess, image), "FP32"
    else:
        check_text(preprocess, caption, "caption")
        array, dtype = preprocess.tokenize([caption]).numpy().astype(np.int64), "INT64"
    request = http.InferInput(name, list(array.shape), dtype)
    request.set_data_from_numpy(array)
    output = f"{graph}_embedding"
    return client.infer(model, [request], outputs=[http.InferRequestedOutput(output)]).as_numpy(output)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--model", default=ONNX_MODEL)
    parser.add_argument("--image")
    parser.add_argument("--question", help="VQA: ask this about --image")
    parser.add_argument("--caption", help="retrieval: embed this caption")
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--metadata", help="exported .onnx to read answers / preprocessing from")
    args = parser.parse_args()
    if args.question is None:  # retrieval: one embedding, as JSON
        vector = embed(args.url, image=args.image, caption=args.caption, metadata_onnx=args.metadata)
        print(json.dumps([round(float(x), 6) for x in vector]))
        return
    if args.image is None:
        parser.error("--question needs --image")
    for answer, probability in ask(
        args.url, args.model, args.image, args.question, top_k=args.top_k, metadata_onnx=args.metadata
    ):
        print(f"{answer}\t{probability:.4f}")


if __name__ == "__main__":
    main()
