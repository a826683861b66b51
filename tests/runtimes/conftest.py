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

# backend -> (modules it needs, fixture giving the folder it opens)
RUNTIMES = {
    "torch": (("torch",), "checkpoint_dir"),
    "onnxruntime": (("onnxruntime", "onnxscript"), "bundle_dir"),
    "tensorrt": (("tensorrt", "onnxscript"), "engine_bundle_dir"),
}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    save_checkpoint(path, tiny_model(seed=1), tokenizer, {"stage": "pretrain"})
    return path


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, checkpoint_dir):
    from gptdeploy.export.pipeline import export_bundle

    path = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    export_bundle(checkpoint_dir, path, tasks=False)
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
    build_engine(path, max_batch=8)
    return path


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request):
    modules, folder_fixture = RUNTIMES[request.param]
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"optional dependency {', '.join(missing)} is not installed")
    folder = request.getfixturevalue(folder_fixture)
    with load_runtime(folder, backend=request.param, max_batch_size=8) as opened:
        yield opened
