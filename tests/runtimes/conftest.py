"""The runtime parametrization: every contract test runs on every backend listed here that can run here.

Adding a backend means adding one entry to RUNTIMES: the modules it needs and the model folder it opens.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from gptdeploy.runtimes.base import load_runtime

# name -> (backend, artifact or None, modules it needs, fixture giving the folder it opens; checkpoint_dir and
# bundle_dir: tests/conftest.py)
RUNTIMES = {
    "torch": ("torch", None, ("torch",), "checkpoint_dir"),
    "onnxruntime": ("onnxruntime", "onnx-fp32", ("onnxruntime", "onnxscript"), "bundle_dir"),
    "onnxruntime-slots": ("onnxruntime", "onnx-fused-ort", ("onnxruntime", "onnxscript"), "bundle_dir"),
    "tensorrt": ("tensorrt", "tensorrt-fp32", ("tensorrt", "onnxscript"), "engine_bundle_dir"),
}


@pytest.fixture(scope="session")
def engine_bundle_dir(tmp_path_factory, bundle_dir):
    """The tiny bundle with a TensorRT engine built on this machine's GPU; skipped where there is none."""
    from gptdeploy.errors import BackendError
    from gptdeploy.export.tensorrt_build import build_engine
    from gptdeploy.runtimes.trt_runtime import cuda_device

    try:
        cuda_device("cuda:0").close()
    except BackendError as error:
        pytest.skip(f"TensorRT needs a CUDA GPU: {error}")
    path = tmp_path_factory.mktemp("tiny-engine") / "bundle"
    shutil.copytree(bundle_dir, path)
    build_engine(path)
    return path


PREALLOCATED = ["onnxruntime-slots", "tensorrt", "torch"]  # a KV cache allocated once (the rest grow theirs)


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request):
    yield from open_runtime(request, request.param)


@pytest.fixture(params=PREALLOCATED)
def preallocated_runtime(request):
    yield from open_runtime(request, request.param)


def open_runtime(request, name: str):
    backend, artifact, modules, folder_fixture = RUNTIMES[name]
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"optional dependency {', '.join(missing)} is not installed")
    folder = request.getfixturevalue(folder_fixture)
    with load_runtime(folder, backend=backend, max_slots=8, artifact=artifact) as opened:
        yield opened
