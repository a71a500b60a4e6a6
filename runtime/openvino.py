"""OpenVINO's CPU plugin behind the part of onnxruntime's InferenceSession the runtime uses (optional:
the `openvino` package, extra [openvino]; `Editor(device="openvino")`).

It reads the bundle's ONNX graphs itself. On CPUs with AVX-512 BF16 or AMX its bf16 inference precision
runs the synthesis and the text encoder about twice as fast as fp32 (docs/benchmarks.md); in f32 it is
not faster than onnxruntime on our graphs. A bundle exported with `--openvino` carries synthesis graphs
that keep the transposed convolution (OpenVINO runs it well, and Col2Im only in a reference kernel).
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # Editor precision -> OpenVINO inference precision hint
# bf16 where it pays: the convolution and transformer graphs (about 2x, docs/benchmarks.md). The MLP graphs
# (mapping, styles, mappers) gain nothing at their size, and the 8-layer mapping network drifts in bf16
# (relative error 1.2% on the demo generator, over validation's 1%), so they stay f32.
BF16_GRAPHS = frozenset({"synthesis", "text_encoder", "image_encoder", "encoder"})
_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "i64": "tensor(int64)", "i32": "tensor(int32)"}


def graph_precision(graph: str, precision: str) -> str:
    """The precision OpenVINO runs `graph` in when the Editor asks for `precision`."""
    return precision if precision != "bf16" or graph in BF16_GRAPHS else "fp32"


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def require() -> None:
    if not available():
        raise ValueError("device 'openvino' needs the openvino package, which is not installed here; install it with "
                         "pip install 'styleclip-edge[openvino]' (or use device='cpu')")


@dataclass(frozen=True)
class _Arg:
    """What check_session reads of an input or output: name, onnxruntime type string, shape (None: dynamic)."""

    name: str
    type: str
    shape: list


class OpenVinoSession:
    """One graph compiled for the CPU plugin; `run` is thread-safe (one infer request per calling thread)."""

    def __init__(self, path, precision: str = "fp32", threads: int | None = None):
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO runs precision fp32 or bf16, got {precision!r}")
        self.precision = precision
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._local = threading.local()

    @staticmethod
    def _arg(port) -> _Arg:
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        return _Arg(port.get_any_name(), _TYPES.get(port.get_element_type().to_string(), "?"), shape)

    def get_inputs(self) -> list[_Arg]:
        return [self._arg(p) for p in self._compiled.inputs]

    def get_outputs(self) -> list[_Arg]:
        return [self._arg(p) for p in self._compiled.outputs]

    def run(self, output_names, feed: dict) -> list:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer(feed)
        return [request.get_output_tensor(i).data.copy() for i in range(len(self._compiled.outputs))]
