"""The runtime parametrization: every contract test runs on every backend listed here that can run here.

Adding a backend means adding one entry to RUNTIMES: the modules it needs and the model folder it opens.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from gptdeploy.checkpoint import save_checkpoint
from gptdeploy.runtimes.base import load_runtime
from tests.helpers import tiny_model

# name -> (backend, artifact or None, modules it needs, fixture giving the folder it opens)
RUNTIMES = {
    "torch": ("torch", None, ("torch",), "checkpoint_dir"),
    "onnxruntime": ("onnxruntime", "onnx-fp32", ("onnxruntime", "onnxscript"), "bundle_dir"),
    "onnxruntime-slots": ("onnxruntime", "onnx-fused-ort", ("onnxruntime", "onnxscript"), "bundle_dir"),
    "tensorrt": ("tensorrt", "tensorrt-fp32", ("tensorrt", "onnxscript"), "engine_bundle_dir"),
}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    save_checkpoint(path, tiny_model(seed=1), tokenizer, {"stage": "pretrain"})
    return path


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, checkpoint_dir):
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.pipeline import export_bundle

    path = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    export_bundle(checkpoint_dir, path, tasks=False)
    optimize_bundle(path, "onnxruntime")  # the slot graph, onnx-fused-ort
    return path


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
