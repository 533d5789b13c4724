"""A test-only task written against amad's contracts alone: reverse a sequence of digits.

It imports nothing of the built-in tasks. Its model is a tiny encoder-decoder transformer whose
``forward(source, prefix)`` returns two named outputs (``logits`` of the next token at every prefix
position and the encoder's ``memory``); its one graph has a dynamic sequence axis on ``prefix``,
and its predictor is a greedy decode loop that calls the graph once per generated token. The
general-task test (``test_general_task.py``) runs it through the whole pipeline.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from amad.atomic import atomic_dir
from amad.config.typed import require
from amad.contracts.graph import BATCH_AXIS, SEQUENCE_AXIS, Graph, GraphSpec, Predictor
from amad.contracts.task import GroupShape, Task
from amad.losses.logit import logit_kd_loss

DIGITS = 10
START = DIGITS  # the start token opens every prefix
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ReverseData:
    train: int
    val: int
    test: int
    length: int

    def validate(self, key: str) -> None:
        require(self.length >= 2, f"{key}.length", f"must be >= 2, got {self.length}")


@dataclass(frozen=True)
class ReverseModelConfig:
    length: int  # the sequences the model reads and writes (its context)
    width: int
    depth: int
    heads: int

    def validate(self, key: str) -> None:
        require(self.width % self.heads == 0, f"{key}.heads", "must divide the width")


@dataclass(frozen=True)
class NoEvaluateSettings:
    pass


@dataclass(frozen=True)
class SequencePreprocess:
    """Nothing to preprocess but the sequence length (saved with the model)."""

    length: int

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """Pre-norm transformer block: (causal) self-attention, optional cross-attention, MLP."""

    def __init__(self, width: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(width) if cross else None
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True) if cross else None
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: Tensor, memory: Tensor | None = None, causal: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        if self.cross_attn is not None:
            h = self.cross_norm(x)
            x = x + self.cross_attn(h, memory, memory, need_weights=False)[0]
        return x + self.mlp(self.mlp_norm(x))


class ReverseModel(nn.Module):
    def __init__(self, config: ReverseModelConfig) -> None:
        super().__init__()
        self.config = config  # saved with the model (amad.models.save_model)
        self.embed = nn.Embedding(DIGITS + 1, config.width)
        self.positions = nn.Embedding(config.length, config.width)
        self.encoder = nn.ModuleList(Block(config.width, config.heads, cross=False) for _ in range(config.depth))
        self.decoder = nn.ModuleList(Block(config.width, config.heads, cross=True) for _ in range(config.depth))
        self.head = nn.Linear(config.width, DIGITS)

    def forward(self, source: Tensor, prefix: Tensor) -> dict[str, Tensor]:
        """``source [B, L]``, ``prefix [B, T]`` (start token first) -> ``logits [B, T, 10]``, ``memory [B, L, W]``."""
        memory = self.embed(source) + self.positions(torch.arange(source.shape[1], device=source.device))
        for block in self.encoder:
            memory = block(memory)
        length = prefix.shape[1]
        x = self.embed(prefix) + self.positions(torch.arange(length, device=prefix.device))
        causal = torch.ones(length, length, dtype=torch.bool, device=prefix.device).triu(1)  # True: masked
        for block in self.decoder:
            x = block(x, memory, causal)
        return {"logits": self.head(x), "memory": memory}


class ReverseDataset(torch.utils.data.Dataset):
    def __init__(self, data_dir: Path, split: str) -> None:
        lines = (Path(data_dir) / f"{split}.jsonl").read_text().splitlines()
        self.sources = torch.tensor([json.loads(line)["source"] for line in lines], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict:
        source = self.sources[index]
        target = source.flip(0)
        prefix = torch.cat([torch.tensor([START]), target[:-1]])
        return {"index": index, "source": source, "prefix": prefix, "target": target}


class GreedyDecoder(Predictor):
    """Greedy decoding: one call of the ``model`` graph per generated digit."""

    def __call__(self, batch: dict) -> dict[str, Any]:
        source = batch["source"]
        prefix = torch.full((len(source), 1), START, dtype=torch.long, device=source.device)
        for _ in range(source.shape[1]):
            logits = self.graphs["model"](source, prefix)["logits"][:, -1]  # (B, 10)
            prefix = torch.cat([prefix, torch.as_tensor(logits).argmax(-1, keepdim=True).to(prefix)], dim=1)
        return {"tokens": prefix[:, 1:]}


class ReverseTask(Task):
    data_config = ReverseData
    model_config = ReverseModelConfig
    evaluate_config = NoEvaluateSettings
    attention_groups = ("encoder_self", "decoder_self", "decoder_cross")
    primary_metric = "token_accuracy"

    def group_shapes(self, config: ReverseModelConfig, key: str) -> dict[str, GroupShape]:
        shape = GroupShape(config.depth, config.heads, config.width, config.length, config.length, key)
        return dict.fromkeys(self.attention_groups, shape)

    def prepare(self, config: ReverseData, seed: int, out: Path, check_splits=None, log=print) -> dict:
        sizes = {split: getattr(config, split) for split in SPLITS}
        if check_splits is not None:
            check_splits(sizes)
        generator = torch.Generator().manual_seed(seed)
        with atomic_dir(out) as staging:
            for split, size in sizes.items():
                rows = torch.randint(0, DIGITS, (size, config.length), generator=generator).tolist()
                (staging / f"{split}.jsonl").write_text("".join(json.dumps({"source": r}) + "\n" for r in rows))
            summary = {"splits": sizes, "length": config.length}
            (staging / "summary.json").write_text(json.dumps(summary))
        return summary

    def _summary(self, data_dir: Path) -> dict:
        return json.loads((Path(data_dir) / "summary.json").read_text())

    def split_sizes(self, data_dir: Path) -> dict[str, int]:
        return self._summary(data_dir)["splits"]

    def read_state(self, data_dir: Path) -> dict:
        return {"length": self._summary(data_dir)["length"]}

    def dataset(self, data_dir: Path, split: str, preprocess: Any, state: dict) -> Any:
        return ReverseDataset(data_dir, split)

    def preprocess(self, config: ReverseModelConfig, state=None) -> SequencePreprocess:
        return SequencePreprocess(length=config.length)

    def preprocess_from_dict(self, data: dict) -> SequencePreprocess:
        return SequencePreprocess(**data)

    def build_model(self, config: ReverseModelConfig, state: dict) -> nn.Module:
        require(config.length == state["length"], "length", f"the data's sequences have {state['length']} digits")
        return ReverseModel(config)

    def module_groups(self, model: ReverseModel) -> dict[str, list[str]]:
        depth = len(model.encoder)
        return {
            "encoder_self": [f"encoder.{i}.attn" for i in range(depth)],
            "decoder_self": [f"decoder.{i}.attn" for i in range(depth)],
            "decoder_cross": [f"decoder.{i}.cross_attn" for i in range(depth)],
        }

    def model_inputs(self, batch: dict) -> tuple:
        return batch["source"], batch["prefix"]

    def attention_masks(self, group: str, batch: dict) -> tuple[Any, Any]:
        return None, None  # no padding; the causal mask zeroes the future keys of the maps

    def task_loss(self, outputs: dict[str, Tensor], batch: dict, config) -> Tensor:
        return F.cross_entropy(outputs["logits"].flatten(0, 1), batch["target"].flatten())

    def teacher_targets(self, outputs: dict[str, Tensor], batch: dict, top_k) -> dict[str, Tensor]:
        return {"logits": outputs["logits"]}  # the memory is not distilled: the cache keeps the logits only

    def output_distillation(self, student_outputs, teacher_targets, batch, temperature):
        student, teacher = student_outputs["logits"], teacher_targets["logits"]
        return logit_kd_loss(student.flatten(0, 1), teacher.flatten(0, 1), temperature=temperature)

    def predictor(self, graphs: dict[str, Graph]) -> Predictor:
        return GreedyDecoder(graphs)

    def evaluate(self, predictor, dataset, *, settings=None, device="cpu", batch_size=256) -> dict:
        from amad.models.evaluation import collect

        tokens = collect(predictor, dataset, device=device, batch_size=batch_size)["tokens"]
        targets = torch.stack([dataset[i]["target"] for i in range(len(dataset))])
        correct = tokens == targets
        return {
            "token_accuracy": float(correct.float().mean()),
            "breakdown": {"sequence_accuracy": float(correct.all(1).float().mean())},
        }

    def example_inputs(self, preprocess: SequencePreprocess, batch_size: int) -> tuple:
        source = torch.zeros(batch_size, preprocess.length, dtype=torch.long)
        return source, torch.full((batch_size, 3), START, dtype=torch.long)

    def export_specs(self, preprocess: SequencePreprocess, state: dict, graphs=None) -> dict[str, GraphSpec]:
        source = torch.arange(2 * preprocess.length).remainder(DIGITS).view(2, preprocess.length)
        prefix = torch.tensor([[START, 6, 5], [START, 1, 2]])
        axes = {"source": {0: BATCH_AXIS}, "prefix": {0: BATCH_AXIS, 1: SEQUENCE_AXIS}}
        spec = GraphSpec(("source", "prefix"), ("logits", "memory"), (source, prefix), {}, self.model_inputs, axes)
        return {"model": spec}

    def agreement(self, reference: dict[str, Any], candidate: dict[str, Any]) -> float:
        return float((reference["model"]["tokens"] == candidate["model"]["tokens"]).float().mean())
