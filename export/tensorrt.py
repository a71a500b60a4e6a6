"""TensorRT engines from the exported ONNX graphs, where TensorRT is installed (GPU machines)."""
from __future__ import annotations

from pathlib import Path

from runtime.engines import gpu_environment, tensorrt_version

from .converters import ExportError


def require_tensorrt() -> dict:
    """The build environment to record, or a clear error when engines cannot be built here."""
    if tensorrt_version() is None:
        raise ExportError("TensorRT engines were requested but `tensorrt` is not installed "
                          "(pip install '.[gpu]' on a machine with an NVIDIA GPU); nothing was written")
    env = gpu_environment()
    if env is None:
        raise ExportError("TensorRT engines were requested but no NVIDIA GPU was found; nothing was written")
    import torch

    env["cuda"] = torch.version.cuda
    return env


def build_engine(onnx_path: Path, plan_path: Path, input_name: str, shapes: list[tuple]) -> None:
    """A serialized engine with one optimization profile: `shapes` = the input's (min, opt, max)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine for {onnx_path.name}")
    plan_path.write_bytes(bytes(plan))
