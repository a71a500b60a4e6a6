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


def export_onnx(spec: GraphSpec, example: np.ndarray, path: Path, opset: int = OPSET) -> None:
    """One graph, weights inline (a single file; our largest, FFHQ-1024 synthesis, is ~130 MB < 2 GB)."""
    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    dims.update({axis: torch.export.Dim(name, min=lo, max=hi) for axis, (name, lo, hi) in spec.dynamic.items()})
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                spec.exported.eval(), (torch.from_numpy(example),), dynamo=True, opset_version=opset,
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


def export_torchscript(spec: GraphSpec, example: np.ndarray, path: Path) -> None:
    """torch.jit.trace of the same wrapper; the graphs have no data-dependent control flow."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(spec.module.eval(), (torch.from_numpy(example),), check_trace=False)
        traced.save(str(path))
