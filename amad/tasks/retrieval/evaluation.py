"""Retrieval recall: image-to-text and text-to-image recall@1/5/10 over a split's images and
captions; and zero-shot classification of the images by prompted class names.

An image counts as found by image-to-text retrieval when *any* of its captions ranks in the top k
(the CLIP_benchmark convention for several captions per image); a caption's image must rank in the
top k of all images for text-to-image retrieval. Zero-shot classification follows CLIP: a class's
embedding is the normalised mean of its prompts' unit embeddings; an image's prediction is the
class of highest cosine similarity.
"""

from __future__ import annotations

import torch
from torch import Tensor

KS = (1, 5, 10)
CHUNK = 1024  # image rows scored at a time (a 8,000 x 40,000 score matrix would take 1.3 GB)


def recall_report(images: Tensor, captions: Tensor, image_of_caption: Tensor) -> dict:
    """``{"mean_recall": mean of the six recalls, "breakdown": {i2t_r1, ..., t2i_r10, rsum}}``.

    Args:
        images: unit-length image embeddings ``[I, E]``.
        captions: unit-length caption embeddings ``[C, E]``.
        image_of_caption: ``[C]`` the image each caption describes.
    """
    k_max = min(max(KS), captions.shape[0])
    image_hits = torch.zeros(len(KS), images.shape[0], dtype=torch.bool)
    best_images = []  # per chunk of images: (score, image) of the best images per caption so far
    for start in range(0, images.shape[0], CHUNK):
        scores = images[start : start + CHUNK] @ captions.t()  # (chunk, C)
        top = scores.topk(k_max, dim=1).indices  # (chunk, k)
        own = image_of_caption[top] == torch.arange(start, start + len(scores)).unsqueeze(1)  # (chunk, k)
        for row, k in enumerate(KS):
            image_hits[row, start : start + len(scores)] = own[:, :k].any(1)
        chunk_k = min(max(KS), len(scores))
        values, indices = scores.topk(chunk_k, dim=0)  # (chunk_k, C)
        best_images.append((values, indices + start))
    values = torch.cat([v for v, _ in best_images])
    indices = torch.cat([i for _, i in best_images])
    order = values.topk(min(max(KS), values.shape[0]), dim=0).indices  # (k, C)
    ranked = indices.gather(0, order)  # (k, C): best images per caption
    found = ranked == image_of_caption.unsqueeze(0)
    breakdown = {}
    for row, k in enumerate(KS):
        breakdown[f"i2t_r{k}"] = float(image_hits[row].float().mean())
    for k in KS:
        breakdown[f"t2i_r{k}"] = float(found[:k].any(0).float().mean())
    recalls = list(breakdown.values())
    breakdown["rsum"] = sum(recalls)
    return {"mean_recall": sum(recalls) / len(recalls), "breakdown": breakdown}


def zero_shot_top1(images: Tensor, prompts: Tensor, labels: Tensor) -> float:
    """Share of images whose most similar class is their own.

    Args:
        images: unit-length image embeddings ``[I, E]``.
        prompts: unit-length embeddings of every class's prompts ``[K, T, E]`` (K classes, T templates).
        labels: ``[I]`` each image's class index.
    """
    classes = torch.nn.functional.normalize(prompts.mean(1), dim=-1)  # (K, E)
    predicted = (images @ classes.t()).argmax(1)
    return float((predicted == labels).float().mean())
