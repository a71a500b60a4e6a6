"""Export: generator, mappers and the CLIP encoders to ONNX (TorchScript, TensorRT) in one verified bundle."""
__version__ = "0.2.0"  # 0.2: text encoder with a dynamic token length
