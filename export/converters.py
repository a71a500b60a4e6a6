"""Graph converters: torch -> ONNX (dynamo, dynamic batch and `GraphSpec.dynamic` axes), ONNX fp32 -> fp16, torch -> TorchScript."""
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


# Kept in fp32: normalizations overflow or lose precision in fp16 (text encoders), and with fp16
# LayerNormalization onnxruntime 1.32's CPU session creation crashes (segfault) on our text encoder.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceL2")


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations with fp32 inputs/outputs (onnxruntime's converter, no extra package)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                     op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS)))
    onnx.save(model, str(dst))


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
