"""Tests that need TensorRT and an NVIDIA GPU; everywhere else they are skipped with the reason.

`python tests/gpu/run_all.py` runs them, the contract suite on an engine, and prints a parity/speed table.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def missing_hardware() -> str | None:
    """Why the TensorRT GPU tests cannot run here, or None when they can."""
    for module, why in (("tensorrt", "TensorRT is not installed (pip install 'gptdeploy[gpu]')"),
                        ("onnxscript", "the ONNX exporter needs onnxscript")):  # fmt: skip
        if importlib.util.find_spec(module) is None:
            return why
    from gptdeploy.errors import BackendError
    from gptdeploy.runtimes.trt_runtime import cuda_device

    try:
        cuda_device("cuda:0").close()
    except BackendError as error:
        return f"no CUDA GPU for TensorRT: {error}"
    return None


@pytest.fixture(autouse=True, scope="session")
def tensorrt_gpu() -> None:
    reason = missing_hardware()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tokenizer):
    """A tiny model, its checkpoint and its fp32 bundle (golden references from PyTorch on the CPU)."""
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import tiny_model

    root = tmp_path_factory.mktemp("gpu")
    save_checkpoint(root / "checkpoint", tiny_model(seed=5), tokenizer)
    export_bundle(root / "checkpoint", root / "bundle", tasks=False)
    return root


@pytest.fixture
def bundle(exported, tmp_path):
    return shutil.copytree(exported / "bundle", tmp_path / "bundle")


@pytest.fixture(scope="session")
def gpu_golden(exported):
    """Golden references from the PyTorch fp32 reference on the same GPU the engines run on."""
    from gptdeploy.golden import compute_golden, load_golden
    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    prompts = load_golden(exported / "bundle" / "golden.npz").prompts
    with TorchRuntime.load(exported / "checkpoint", device="cuda") as reference:
        return compute_golden(reference, prompts)
