"""TensorRT engine portability: an engine only runs on the GPU architecture and TensorRT version it
was built with, so bundles record both and a mismatch is refused before loading (no torch needed)."""
from __future__ import annotations

import shutil
import subprocess

from .bundle import BundleError


def tensorrt_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt.__version__


def gpu_environment() -> dict | None:
    """The first NVIDIA GPU's name and compute capability plus the TensorRT version, or None without a GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, cc, driver = (part.strip() for part in out[0].split(","))
    return {"gpu": name, "compute_capability": cc, "driver": driver, "tensorrt": tensorrt_version()}


def check_engine_environment(recorded: dict, current: dict | None) -> None:
    """Refuse an engine built for another GPU architecture or TensorRT version."""
    if current is None:
        raise BundleError("this bundle's TensorRT engines need an NVIDIA GPU, and none was found; use the ONNX graphs")
    for key, what in (("compute_capability", "GPU architecture (compute capability)"), ("tensorrt", "TensorRT version")):
        if recorded.get(key) != current.get(key):
            raise BundleError(
                f"TensorRT engines were built for {what} {recorded.get(key)} ({recorded.get('gpu')}), this machine has "
                f"{current.get(key)} ({current.get('gpu')}); rebuild them here with `cli.py export --tensorrt` "
                "or use the ONNX graphs"
            )
