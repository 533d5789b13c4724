"""The ``export`` stage's work for one model: ONNX, parity gate, int8, fp16, TensorRT, export.json.

A model is exported as the task's graphs (VQA: ``model``; retrieval: ``image`` and ``text``), one
file set per graph: ``<graph>.onnx``, ``<graph>.int8.onnx``, ``<graph>.fp16.onnx`` and, where
TensorRT runs, ``<graph>.plan``. The parity gate compares every output of every graph with
PyTorch's on validation inputs, and the task's predictions over the exported graphs with its
predictions over the torch ones; accuracy is the task's evaluation through its predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amad.atomic import atomic_dir, write_json
from amad.errors import AmadError
from amad.export import tensorrt
from amad.export.config import ExportConfig
from amad.export.int8 import build_int8
from amad.export.onnx_model import export_onnx
from amad.export.onnx_runtime import OnnxModel
from amad.export.quantize import convert_fp16
from amad.models import load_model
from amad.models.evaluation import collect, graph_outputs


def export_model(name: str, model_dir: Path, out_dir: Path, data_dir: Path, config: ExportConfig, log=print) -> dict:
    """Write ``out_dir`` (atomically) and return its ``export.json`` content. Its test metrics
    (``accuracy``) follow the task's default evaluation (captioning: greedy captions, not
    ``evaluate.generation``, so that the export does not depend on the ``evaluate`` section), with
    the torch model's (``torch_fp32``) measured the same way beside them.

    Raises:
        AmadError: fp32 parity with PyTorch fails on validation inputs (nothing is written).
    """
    loaded = load_model(model_dir)
    task, model, preprocess = loaded.task, loaded.model.eval(), loaded.preprocess
    val_set = task.dataset(data_dir, "val", preprocess, loaded.state)
    test_set = task.dataset(data_dir, "test", preprocess, loaded.state)
    parity_sets = task.parity_inputs(val_set, config.parity_samples)
    graphs = task.graphs(model)
    specs = task.export_specs(preprocess, loaded.state, graphs)
    metric = task.primary_metric
    report: dict = {"model": name, "task": task.name, "graphs": list(specs)}

    def sessions(suffix: str) -> dict[str, OnnxModel]:
        return {g: OnnxModel(staging / f"{g}{suffix}") for g in specs}

    with atomic_dir(out_dir) as staging:
        for graph, spec in specs.items():
            export_onnx(
                graphs[graph],
                spec,
                staging / f"{graph}.onnx",
                opset=config.opset,
                extra_metadata={"amad.model": name, "amad.task": task.name, "amad.graph": graph},
            )
        fp32 = sessions(".onnx")
        torch_run = parity_run(task, graphs, specs, parity_sets)
        report["parity"] = _parity_gate(name, task, torch_run, fp32, specs, parity_sets, config, log)
        report["metric"] = metric
        report["accuracy"] = {
            "torch_fp32": task.evaluate(task.predictor(graphs), test_set)[metric],
            "onnx_fp32": task.evaluate(task.predictor(fp32), test_set)[metric],
        }
        report["int8"] = build_int8(
            staging,
            list(specs),
            config.int8,
            calibration=lambda: _calibration_feeds(task.parity_inputs(val_set, config.calibration_samples), specs),
            score=lambda models: task.evaluate(task.predictor(models), val_set)[metric],
            inputs={g: _first_input(parity_sets[g], specs[g]) for g in specs},
            max_drop=config.int8_max_drop,
        )
        log(f"{name}: int8 {report['int8']['reason']}")
        if all((staging / f"{g}.int8.onnx").exists() for g in specs):
            int8 = sessions(".int8.onnx")
            report["accuracy"]["onnx_int8"] = task.evaluate(task.predictor(int8), test_set)[metric]
            report["int8_vs_fp32"] = compare_runs(task, torch_run, parity_run(task, int8, specs, parity_sets))
        for graph in specs:
            convert_fp16(staging / f"{graph}.onnx", staging / f"{graph}.fp16.onnx")
        report["fp16"] = _fp16_metric(task, sessions, test_set, report)
        report["tensorrt"] = _tensorrt(staging, task, specs, config, test_set, report)
        report["files"] = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
        write_json(staging / "export.json", report)
    return report


def _parity_gate(
    name: str, task: Any, torch_run: tuple, fp32: dict, specs: dict, parity_sets: dict, config: ExportConfig, log
) -> dict:
    """Compare the ONNX graphs' run with PyTorch's on validation samples; AmadError when an output
    is further than ``parity_atol`` or the predictions agree less than ``min_agreement``."""
    parity = compare_runs(task, torch_run, parity_run(task, fp32, specs, parity_sets))
    samples = {graph: len(inputs) for graph, inputs in parity_sets.items()}
    parity.update(samples=samples, atol=config.parity_atol, min_agreement=config.min_agreement)
    if parity["max_abs_diff"] > config.parity_atol or parity["agreement"] < config.min_agreement:
        worst = max(parity["max_abs_diff_per_output"].items(), key=lambda item: item[1])[0]
        raise AmadError(
            f"export of {name}: ONNX parity failed on validation samples {samples}: max |diff| "
            f"{parity['max_abs_diff']:.2e} (allowed {config.parity_atol:.0e}; largest in {worst}), "
            f"agreement {parity['agreement']:.4f} (needed {config.min_agreement})"
        )
    log(f"{name}: ONNX parity max |diff| {parity['max_abs_diff']:.1e}, agreement {parity['agreement']:.4f}")
    return parity


def parity_run(task: Any, graphs: dict, specs: dict, parity_sets: dict, device: Any = "cpu") -> tuple[dict, dict]:
    """Every graph's outputs on its parity set, and the task's predictions over ``graphs`` on each set."""
    outputs = {g: graph_outputs(graphs[g], parity_sets[g], specs[g].batch_inputs, device=device) for g in specs}
    predictor = task.predictor(graphs)
    predictions = {name: collect(predictor, samples, device=device) for name, samples in parity_sets.items()}
    return outputs, predictions


def compare_runs(task: Any, reference: tuple[dict, dict], candidate: tuple[dict, dict]) -> dict:
    """``max_abs_diff`` (largest over every output of every graph, and per ``<graph>.<output>``) and
    ``agreement`` (the task's share of identical predictions)."""
    per_output = {
        f"{graph}.{output}": float((values.float() - candidate[0][graph][output].float()).abs().max())
        for graph, outputs in reference[0].items()
        for output, values in outputs.items()
    }
    return {
        "max_abs_diff": max(per_output.values()),
        "max_abs_diff_per_output": per_output,
        "agreement": task.agreement(reference[1], candidate[1]),
    }


def _calibration_feeds(datasets: dict[str, Any], specs: dict, batch_size: int = 16) -> dict[str, list[dict]]:
    """Per graph, ``{input name: array}`` feeds of the calibration samples, ``batch_size`` at a time."""
    from torch.utils.data import DataLoader

    return {
        graph: [
            {name: x.numpy() for name, x in zip(specs[graph].input_names, specs[graph].batch_inputs(batch))}
            for batch in DataLoader(dataset, batch_size=batch_size)
        ]
        for graph, dataset in datasets.items()
    }


def _first_input(dataset: Any, spec: Any) -> tuple:
    """The graph's inputs for the dataset's first sample alone (a batch of one)."""
    from torch.utils.data import default_collate

    return spec.batch_inputs(default_collate([dataset[0]]))


def _fp16_metric(task: Any, sessions: Any, test_set: Any, report: dict) -> dict:
    """The fp16 graphs' test metric on ONNX Runtime's CPU provider (``accuracy.onnx_fp16``), or why
    it could not run there (the fp16 files are for GPU providers; CPU kernels cover most ops)."""
    try:
        fp16 = sessions(".fp16.onnx")
        report["accuracy"]["onnx_fp16"] = task.evaluate(task.predictor(fp16), test_set)[task.primary_metric]
    except Exception as error:  # an op without a CPU fp16 kernel: the files stay, the metric is skipped
        return {"skipped": f"ONNX Runtime CPU cannot run the fp16 graphs: {str(error).splitlines()[0][:200]}"}
    return {"measured_on": "onnxruntime CPUExecutionProvider"}


def _tensorrt(staging: Path, task: Any, specs: dict, config: ExportConfig, test_set: Any, report: dict) -> dict:
    if not config.tensorrt.enabled:
        return {"skipped": "disabled in params (export.tensorrt.enabled: false)"}
    reason = tensorrt.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    built, engines = {}, {}
    for graph, spec in specs.items():
        built[graph] = tensorrt.build_engine(
            staging / f"{graph}.onnx",
            staging / f"{graph}.fp16.onnx",
            staging / f"{graph}.plan",
            input_shapes=tensorrt.optimisation_shapes(spec, config.tensorrt),
            profile=config.tensorrt,
        )
        engines[graph] = tensorrt.TensorRTModel(
            staging / f"{graph}.plan", spec.input_names, spec.output_names, spec.metadata
        )
    metric = task.primary_metric
    report["accuracy"]["tensorrt_fp16"] = task.evaluate(
        task.predictor(engines), test_set, device="cuda", batch_size=config.tensorrt.max_batch
    )[metric]
    return built
