import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
sys.path.insert(0, str(Path(__file__).parent))


def random_maps(batch, heads, queries, keys, *, seed, dtype=torch.float64, sharpness=1.0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, heads, queries, keys, generator=generator, dtype=dtype) * sharpness
    return logits.softmax(-1)
