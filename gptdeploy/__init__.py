"""gptdeploy: train a small GPT, export it, and run it on PyTorch, ONNX Runtime and TensorRT behind one API."""

import os

__version__ = "0.1.0"

# libgomp (torch's OpenMP on Linux) spins 300,000 times in a worker waiting for work. When another process also
# computes on the same cores (a test suite, a second training run, a browser), the spinning threads take the cores
# from the threads they wait for: two 2-thread training runs on 2 cores ran 17x slower each than alone. A short spin
# costs nothing on an idle machine (10.6 against 10.7 steps/s) and keeps the same pair at 4.0 steps/s each. Set here,
# before torch loads libgomp; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
