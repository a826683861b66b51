"""The TensorRT backend's CPU-checkable parts: clear errors without TensorRT, engine compatibility, buffer sizing.

Running an engine needs TensorRT and a GPU: the contract suite (tests/runtimes/test_contract.py) and tests/gpu/ do.
"""

import importlib.util
import logging
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from gptdeploy.config import GPTConfig
from gptdeploy.errors import BackendError
from gptdeploy.runtimes.trt_runtime import (
    DECODE,
    PREFILL,
    buffer_plan,
    check_engine_compatible,
    cuda_device,
    profile_for,
    rebuild_command,
)

no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
RECIPE = {"tensorrt_version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "max_seq": 256}


def test_an_engine_from_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(caplog):
    fix = rebuild_command("runs/demo/bundle", "onnx-fp32", RECIPE)
    assert fix == "gptdeploy build-engine runs/demo/bundle --from onnx-fp32 --max-seq 256 --force"
    check_engine_compatible(RECIPE, "10.3.0", "Orin", "8.7", fix)
    with pytest.raises(BackendError, match=r"built with TensorRT 10\.3\.0, this machine has 11\.4\.0.*build-engine"):
        check_engine_compatible(RECIPE, "11.4.0", "Orin", "8.7", fix)
    with pytest.raises(BackendError, match=r"built for Orin \(compute capability 8\.7\), this GPU is H100 \(9\.0\)"):
        check_engine_compatible(RECIPE, "10.3.0", "H100", "9.0", fix)
    with caplog.at_level(logging.WARNING, logger="gptdeploy"):
        check_engine_compatible(RECIPE, "10.3.0", "Jetson AGX Orin", "8.7", fix)  # same chip, other board name
    assert "same compute capability 8.7" in caplog.text


def test_buffers_hold_every_slot_at_the_full_context_once():
    config = GPTConfig.preset("small")
    plan = buffer_plan(config, slots=8, max_len=256, kv_itemsize=2, id_itemsize=8)
    one_slot_key = np.empty((config.kv_heads, 256, config.head_dim), dtype=np.float16)
    assert plan.kv_region == one_slot_key.nbytes and plan.kv_tensor == 8 * one_slot_key.nbytes
    assert plan.kv_total == 2 * 2 * config.n_layer * 8 * one_slot_key.nbytes  # read + write, key + value, per layer
    assert plan.ids == np.empty((1, 256), dtype=np.int64).nbytes  # one slot per call
    grouped = buffer_plan(GPTConfig.preset("small", n_kv_head=1), 8, 256, 2, 8)
    assert grouped.kv_tensor * config.n_head == plan.kv_tensor  # grouped-query attention caches fewer heads


def test_each_phase_runs_on_its_own_profile():
    assert profile_for(0) == PREFILL and profile_for(17) == DECODE


@pytest.mark.parametrize("device", ["mps", "cpu", "cudax"])
def test_tensorrt_needs_a_cuda_device(device):
    with pytest.raises(BackendError, match="device must be cuda or cuda:N"):
        cuda_device(device)


def _cuda_memory_available() -> bool:
    if importlib.util.find_spec("cuda") is not None:
        return True
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda_memory_available(), reason="torch sees a CUDA GPU or cuda-python is installed")
def test_without_a_cuda_library_the_error_says_what_to_install():
    with pytest.raises(BackendError, match="torch with CUDA or cuda-python"):
        cuda_device("cuda:0")


@pytest.fixture
def engine_bundle(bundle_dir, tmp_path):
    """The tiny bundle with a registered engine artifact: loading must fail on TensorRT before reading it."""
    from gptdeploy.bundle import Artifact, ArtifactDetails, load_bundle
    from gptdeploy.bundle_write import install_artifact, staged_folder

    bundle = shutil.copytree(bundle_dir, tmp_path / "bundle")
    parity = load_bundle(bundle).artifact(name="onnx-fp32").details.parity
    details = ArtifactDetails("onnx-fp32", RECIPE, {**parity, "backend": "tensorrt"})
    with staged_folder(bundle) as staging:
        (staging / "model.plan").write_bytes(b"an engine is only read once TensorRT is there")
        install_artifact(
            bundle, staging, Artifact("tensorrt-fp32", "tensorrt", "fp32", "model.plan", {}, None, details)
        )
    return bundle


@no_tensorrt
def test_without_tensorrt_the_backend_says_how_to_install_it(engine_bundle):
    from gptdeploy.cli import main
    from gptdeploy.runtimes.base import load_runtime

    message = r"TensorRT is not installed; pip install 'gptdeploy\[gpu\]'"
    with pytest.raises(BackendError, match=message):
        load_runtime(engine_bundle, backend="tensorrt")
    with pytest.raises(BackendError, match=message):  # 'auto' picks TensorRT for an engine artifact
        load_runtime(engine_bundle, artifact="tensorrt-fp32")
    result = CliRunner().invoke(main, ["generate", str(engine_bundle), "--artifact", "tensorrt-fp32", "-p", "Mia"])
    assert result.exit_code == 1
    assert "Error: TensorRT is not installed; pip install 'gptdeploy[gpu]'" in result.output


def test_a_checkpoint_is_not_a_tensorrt_model(checkpoint_dir):
    from gptdeploy.runtimes.base import load_runtime

    with pytest.raises(BackendError, match="is a checkpoint, not a bundle: tensorrt runs the graphs and engines"):
        load_runtime(checkpoint_dir, backend="tensorrt")
