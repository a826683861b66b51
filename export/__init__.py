"""Building artifacts from checkpoints: ONNX export, graph fusion, quantization, TensorRT engines.

Installed as `gptdeploy.export`. Nothing under `gptdeploy.runtimes` imports from here: building is separate from
running.
"""
