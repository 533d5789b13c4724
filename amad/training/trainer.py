"""The training loop shared by ``train_teacher`` and ``distill``.

AdamW with linear warm-up then cosine decay (or a plateau schedule), stopping at a validation
plateau and keeping the best epoch's weights (:mod:`amad.training.plateau`), gradient clipping, bf16 autocast on GPU, DDP under
``torchrun``, a checkpoint every epoch (resumed automatically), dvclive logs and tqdm progress.
On the CPU a run is deterministic for a given seed, and an interrupted-then-resumed run ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from amad.config.params import OptimConfig
from amad.distill.objective import ObjectiveOutput
from amad.training.checkpoint import load_checkpoint, save_checkpoint
from amad.training.distributed import GlobalBatchSampler, Runtime
from amad.training.plateau import REDUCE, STOP, Plateau, ending

LossFunction = Callable[[nn.Module, dict[str, torch.Tensor]], ObjectiveOutput]


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    ending: dict = field(
        default_factory=dict
    )  # how the run ended (amad.training.plateau.ending); {} without validation

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def warmup_plateau(total_steps: int, warmup_fraction: float, plateau: Plateau, factor: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup_fraction`` of the capped steps, then constant,
    times ``factor`` per plateau reduction so far."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def multiplier(step: int) -> float:
        ramp = (step + 1) / warmup if step < warmup else 1.0
        return ramp * factor**plateau.reductions

    return multiplier


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup_fraction`` of the steps, then cosine to 0."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return multiplier


def build_optimizer(modules: list[nn.Module], optim: OptimConfig) -> torch.optim.AdamW:
    """Fused AdamW; weight decay on matrices only (not on biases, norms or scalars)."""
    decay, no_decay = [], []
    for module in modules:
        for parameter in module.parameters():
            if parameter.requires_grad:
                (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for all parameters, ~8x faster than the default on the CPU here
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr, fused=True)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _average_gradients(module: nn.Module, world_size: int) -> None:
    """All-reduce the gradients of parameters DDP does not manage (e.g. a learned temperature)."""
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world_size


def _log_epoch(live: Any, record: dict[str, float]) -> None:
    for name, value in record.items():
        live.log_metric(name, value)
    live.next_step()


@dataclass
class _Optimisation:
    """What one training run steps: the optimiser and its learning-rate schedule."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total_steps: int
    plateau: Plateau  # the validation record the schedule and the stop read
    best: dict | None = None  # the best epoch's weights (on the CPU), kept when patience > 0


def _resume(
    checkpoint_path: str | Path,
    fingerprint: str,
    model: nn.Module,
    objective: nn.Module | None,
    optimisation: _Optimisation,
    result: FitResult,
    log: Callable[[str], None] | None,
) -> int:
    """Load a compatible checkpoint into the run (saying why one is ignored); returns the epoch to start at."""
    state, message = load_checkpoint(checkpoint_path, fingerprint)
    if message and log is not None:
        log(message)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    if objective is not None:
        objective.load_state_dict(state["objective"])
    optimisation.optimizer.load_state_dict(state["optimizer"])
    optimisation.scheduler.load_state_dict(state["scheduler"])
    optimisation.plateau.load_state_dict(state["plateau"])
    optimisation.best = state["best"]
    torch.set_rng_state(state["rng"])
    result.history = [dict(h) for h in state["history"]]
    result.resumed_from_epoch = int(state["epoch"])
    return result.resumed_from_epoch


def _save(
    checkpoint_path: str | Path,
    fingerprint: str,
    model: nn.Module,
    objective: nn.Module | None,
    optimisation: _Optimisation,
    result: FitResult,
) -> None:
    save_checkpoint(
        checkpoint_path,
        {
            "model": model.state_dict(),
            "objective": objective.state_dict() if objective is not None else {},
            "optimizer": optimisation.optimizer.state_dict(),
            "scheduler": optimisation.scheduler.state_dict(),
            "plateau": optimisation.plateau.state_dict(),
            "best": optimisation.best,
            "rng": torch.get_rng_state(),
            "epoch": len(result.history),
            "history": result.history,
            "fingerprint": fingerprint,
        },
    )


def _train_epoch(
    wrapped: nn.Module,
    compute_loss: LossFunction,
    loader: DataLoader,
    trainable: list[nn.Module],
    objective: nn.Module | None,
    optimisation: _Optimisation,
    *,
    first_step: int,
    grad_clip: float,
    runtime: Runtime,
    description: str,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of every logged term."""
    device = runtime.device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    wrapped.train()
    sums: dict[str, float] = defaultdict(float)
    batches = tqdm(loader, desc=description, disable=not runtime.is_main, leave=False, mininterval=1.0)
    step = first_step
    for seen, batch in enumerate(batches, start=1):
        if objective is not None and hasattr(objective, "set_progress"):
            objective.set_progress(step / max(1, optimisation.total_steps - 1))
        with autocast:
            output = compute_loss(wrapped, _to_device(batch, device))
        optimisation.optimizer.zero_grad(set_to_none=True)
        output.total.backward()
        if runtime.distributed and objective is not None:
            _average_gradients(objective, runtime.world_size)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for m in trainable for p in m.parameters()], grad_clip)
        optimisation.optimizer.step()
        optimisation.scheduler.step()
        step += 1
        for name, value in output.terms.items():
            sums[name] += value
        sums["loss"] += float(output.total.detach())
        batches.set_postfix(loss=f"{sums['loss'] / seen:.3f}", refresh=False)
    return {f"train/{name}": total / len(loader) for name, total in sums.items()}


def _optimisation(trainable: list[nn.Module], optim: OptimConfig, total_steps: int) -> _Optimisation:
    """The optimiser over every trainable module and its learning-rate schedule (warm-up, then
    cosine, or constant with a factor per plateau)."""
    optimizer = build_optimizer(trainable, optim)
    plateau = Plateau(optim.patience, optim.schedule == "plateau", optim.max_reductions)
    if optim.schedule == "plateau":
        multiplier = warmup_plateau(total_steps, optim.warmup_fraction, plateau, optim.lr_factor)
    else:
        multiplier = warmup_cosine(total_steps, optim.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    return _Optimisation(optimizer, scheduler, total_steps, plateau)


def _open_live(log_dir: str | Path, history: list[dict]) -> Any:
    """A dvclive logger in ``log_dir`` holding ``history`` (a resumed run's earlier epochs): DVC
    removes the log folder before a stage re-runs, so the checkpoint's history is replayed into it."""
    from dvclive import Live

    live = Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    for record in history:
        _log_epoch(live, record)
    return live


def fit(
    model: nn.Module,
    compute_loss: LossFunction,
    *,
    train_set: Dataset,
    optim: OptimConfig,
    seed: int,
    runtime: Runtime,
    checkpoint_path: str | Path,
    fingerprint: str,
    loader_workers: int,
    objective: nn.Module | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    log_dir: str | Path | None = None,
    description: str = "train",
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train ``model`` in place.

    Args:
        model: the module being trained (wrapped in DDP when distributed).
        compute_loss: ``(model, batch) -> ObjectiveOutput``.
        train_set: training samples (a task's dataset; items collate into batches).
        optim: optimisation settings; ``batch_size`` is the global batch.
        seed: seeds the data order (and must have seeded the model's initialisation).
        runtime: rank / world size / device from :func:`init_runtime`.
        checkpoint_path: where the per-epoch checkpoint lives (outside DVC outputs).
        fingerprint: configuration hash; only a checkpoint with the same one is resumed.
        loader_workers: DataLoader worker processes (speed only: the data order comes from the sampler).
        objective: trainable parts of the loss (learned temperature, projections), optimised and
            checkpointed with the model; it is told the training progress each step.
        evaluate: ``model -> {metric: value}`` on validation data, run on rank 0 after each epoch.
        log_dir: dvclive folder (rank 0).
        description: progress-bar label.
        log: where status lines go.
    """
    model.to(runtime.device)
    trainable = [model] + ([objective.to(runtime.device)] if objective is not None else [])
    wrapped = model
    if runtime.distributed:
        device = runtime.device
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = GlobalBatchSampler(
        len(train_set), optim.batch_size, seed=seed, rank=runtime.rank, world_size=runtime.world_size
    )
    optimisation = _optimisation(trainable, optim, optim.epochs * len(sampler))
    scheduler = optimisation.scheduler
    result = FitResult()
    start_epoch = _resume(
        checkpoint_path, fingerprint, model, objective, optimisation, result, log if runtime.is_main else None
    )
    live = _open_live(log_dir, result.history) if log_dir is not None and runtime.is_main else None

    plateau = optimisation.plateau
    for epoch in range(start_epoch, optim.epochs):
        if plateau.stopped:  # resumed from the checkpoint of the epoch that ended the run
            break
        sampler.set_epoch(epoch)
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=loader_workers)
        started = time.perf_counter()
        record = _train_epoch(
            wrapped,
            compute_loss,
            loader,
            trainable,
            objective,
            optimisation,
            first_step=epoch * len(sampler),
            grad_clip=optim.grad_clip,
            runtime=runtime,
            description=f"{description} {epoch + 1}/{optim.epochs}",
        )
        record["train_seconds"] = time.perf_counter() - started  # the training pass, validation excluded
        record["lr"] = scheduler.get_last_lr()[0]
        if runtime.is_main and evaluate is not None:
            record.update({f"val/{k}": v for k, v in evaluate(model).items()})
        result.history.append(record)
        if runtime.is_main:
            summary = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if not k.startswith("train/layer/"))
            log(f"{description} epoch {epoch + 1}/{optim.epochs}: {summary}")
            if live is not None:
                _log_epoch(live, record)
            if evaluate is not None:
                _after_validation(optimisation, model, record, epoch + 1, optim, description, log)
            _save(checkpoint_path, fingerprint, model, objective, optimisation, result)
        if runtime.distributed:
            plateau.stopped = _shared(plateau.stopped, runtime)  # rank 0 validated: every rank stops with it
            dist.barrier()
    if live is not None:
        live.end()
    if runtime.is_main and evaluate is not None:
        result.ending = _ending(optimisation, model, result, optim, description, log)
    return result


def _monitored(record: dict) -> tuple[str, float]:
    """The validation metric a run is judged by: the first one ``evaluate`` returned."""
    key = next(k for k in record if k.startswith("val/"))
    return key.removeprefix("val/"), record[key]


def _after_validation(
    optimisation: _Optimisation, model: nn.Module, record: dict, epoch: int, optim: OptimConfig, description: str, log
) -> None:
    """Update the plateau record with this epoch's validation; keep the best weights; lower the
    learning rate or end the run at a plateau."""
    plateau = optimisation.plateau
    metric, value = _monitored(record)
    decision = plateau.update(epoch, value)
    if optim.patience > 0 and plateau.best_epoch == epoch:  # restored if a plateau ends the run
        optimisation.best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if decision == REDUCE:
        log(f"{description}: no val/{metric} gain for {optim.patience} epochs: learning rate x{optim.lr_factor:g}")
    elif decision == STOP:
        plateau.stopped = True


def _ending(optimisation: _Optimisation, model: nn.Module, result: FitResult, optim: OptimConfig, description, log):
    """After a plateau: restore the best epoch's weights; say how the run ended."""
    plateau = optimisation.plateau
    metric, _ = _monitored(result.history[-1])
    values = [record[f"val/{metric}"] for record in result.history]
    end = ending(plateau, values, optim.epochs, metric)
    if plateau.stopped and optimisation.best is not None:
        model.load_state_dict(optimisation.best)
        log(
            f"{description}: stopped at a validation plateau after epoch {end['epochs_run']} of {optim.epochs}; "
            f"kept epoch {end['best_epoch']} (val/{metric} {plateau.best:.4f})"
        )
    elif end["still_improving"]:
        log(
            f"{description}: reached its cap of {optim.epochs} epoch(s) still improving (val/{metric} "
            f"{values[max(0, len(values) - 4)]:.4f} -> {values[-1]:.4f} over the last epochs): raise epochs"
        )
    else:
        log(
            f"{description}: ran all {optim.epochs} epochs (best val/{metric} in epoch {end['best_epoch']}); kept the last"
        )
    return end


def _shared(flag: bool, runtime: Runtime) -> bool:
    """Rank 0's ``flag`` on every rank."""
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])
