"""Export: generator, mappers and the CLIP encoders to ONNX (TorchScript, TensorRT) in one verified bundle."""
__version__ = "0.1.0"
