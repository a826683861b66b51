"""gptdeploy: train a small GPT, export it, and run it on PyTorch, ONNX Runtime and TensorRT behind one API."""

__version__ = "0.1.0"
