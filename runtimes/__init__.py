"""Running artifacts: one adapter per backend (PyTorch, ONNX Runtime, TensorRT) behind the `Runtime` protocol.

Installed as `gptdeploy.runtimes`. Never imports `gptdeploy.export`.
"""
