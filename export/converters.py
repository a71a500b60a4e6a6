"""Graph converters: torch -> ONNX (dynamo, dynamic batch and `GraphSpec.dynamic` axes), ONNX fp32 -> fp16-stored
weights, ONNX fp32 -> dynamic int8, torch -> TorchScript."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from .graphs import GraphSpec

OPSET = 20  # the dynamo exporter's own default; ORT >= 1.16 and TensorRT 10 read it


class ExportError(ValueError):
    """A model that cannot be exported as asked (reported as a one-line error)."""


def _quiet():
    """The dynamo exporter prints progress lines and deprecation chatter; we show our own progress bar."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def export_onnx(spec: GraphSpec, example: np.ndarray, path: Path, opset: int = OPSET, variant: str = "fp32") -> None:
    """One graph, weights inline (a single file; our largest, FFHQ-1024 synthesis, is ~130 MB < 2 GB)."""
    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    dims.update({axis: torch.export.Dim(name, min=lo, max=hi) for axis, (name, lo, hi) in spec.dynamic.items()})
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                spec.variant_module(variant).eval(), (torch.from_numpy(example),), dynamo=True, opset_version=opset,
                input_names=[spec.input_name], output_names=[spec.output_name],
                dynamic_shapes=(dims,), external_data=False, optimize=True,
            )
        except Exception as err:  # the exporter raises many types; all mean the same thing to the user
            raise ExportError(f"ONNX export of graph '{spec.name}' failed: {type(err).__name__}: {err}") from err
        program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))


# Smaller tensors stay fp32: they weigh nothing, and some are constants fp16 cannot hold (the demodulation's 1e-8).
FP16_MIN_ELEMENTS = 256
FP16_MAX = 65504.0


def convert_fp16(src: Path, dst: Path) -> None:
    """The same graph with its large float32 weights stored as float16 and cast back to float32 in the graph:
    half the file (what a web page downloads), computed in fp32 with the weights rounded to fp16.

    onnxruntime (and onnxruntime-web) fold each Cast into a float32 weight when the session is created, so it
    runs as fast as fp32. Computing in fp16 instead (onnxruntime's float16 converter, this variant before issue
    26) was no faster on CPU at FFHQ size (synthesis 1.11 s both, docs/benchmarks.md) and less accurate.
    """
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph, casts = model.graph, []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(init)
        if weights.size < FP16_MIN_ELEMENTS or not np.all(np.abs(weights) <= FP16_MAX):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(weights.astype(np.float16), f"{name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT, name=f"{name}.cast"))
    for k, node in enumerate(casts):  # first, so the nodes stay in topological order
        graph.node.insert(k, node)
    onnx.save(model, str(dst))
    onnx.checker.check_model(str(dst))


@contextlib.contextmanager
def _no_logging():
    import logging

    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# Dynamic int8 (weights per output channel, activations per tensor, quantized on the fly) for the MatMuls
# only: quantizing the attention's QKV projection too (QAttention) cut a random ViT-B-32's worst prompt
# cosine to 0.9989, under the 0.999 bar; MatMuls alone keep 0.9994 at ~2x fp32 speed (docs/benchmarks.md).
INT8_OPS = ("MatMul", "Gemm")


def convert_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 MatMuls (onnxruntime.quantization) with fp32 inputs/outputs.

    The weights must be constants to be quantized: a graph that computes them (a mapper's equalized-lr
    scale and transpose) is constant-folded first by onnxruntime's basic level (standard ONNX ops only).
    """
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=Path(dst).parent) as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        with _quiet(), _no_logging():  # it logs advice to run its pre-processing (shape inference) first
            quantize_dynamic(folded, Path(tmp) / "int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(INT8_OPS))
        Path(tmp, "int8.onnx").replace(dst)
    onnx.checker.check_model(str(dst))


def export_torchscript(spec: GraphSpec, example: np.ndarray, path: Path) -> None:
    """torch.jit.trace of the same wrapper; the graphs have no data-dependent control flow."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(spec.module.eval(), (torch.from_numpy(example),), check_trace=False)
        traced.save(str(path))
