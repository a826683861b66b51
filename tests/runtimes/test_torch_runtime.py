import numpy as np
import pytest

from gptdeploy.errors import BackendError, CheckpointError
from gptdeploy.runtimes.base import load_runtime
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from tests.helpers import tiny_model


def test_the_kv_cache_is_allocated_once_and_written_in_place(tokenizer):
    runtime = TorchRuntime(tiny_model(), tokenizer)
    runtime.reset(2)
    buffer = runtime.cache.buffer
    assert buffer.shape == (2, 2, 2, 4, 128, 16)  # layers, k/v, batch, kv heads, max length, head dim
    pointer = buffer.data_ptr()
    mask = np.ones((2, 5), dtype=np.int64)
    runtime.forward(np.ones((2, 5), dtype=np.int64), mask)
    for _ in range(3):
        mask = np.concatenate([mask, np.ones((2, 1), dtype=np.int64)], axis=1)
        runtime.forward(np.ones((2, 1), dtype=np.int64), mask)
    assert runtime.cache.buffer.data_ptr() == pointer and runtime.length == 8
    assert buffer[:, :, :, :, :8].abs().sum() > 0 and buffer[:, :, :, :, 8:].abs().sum() == 0


def test_keep_rows_drops_finished_rows_without_changing_the_others(tokenizer):
    runtime = TorchRuntime(tiny_model(), tokenizer)
    ids = np.array([[5, 6, 7], [8, 9, 10], [11, 12, 13]])
    runtime.reset(3)
    runtime.forward(ids, np.ones_like(ids))
    expected = runtime.forward(np.array([[1], [2], [3]]), np.ones((3, 4)))[[0, 2]]
    runtime.reset(3)
    runtime.forward(ids, np.ones_like(ids))
    runtime.keep_rows(np.array([0, 2]))
    assert runtime.batch_size == 2
    np.testing.assert_allclose(runtime.forward(np.array([[1], [3]]), np.ones((2, 4))), expected, atol=1e-5)


def test_load_runtime_picks_torch_for_a_checkpoint(tmp_path, tokenizer):
    from gptdeploy.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, tiny_model(), tokenizer)
    with load_runtime(tmp_path) as runtime:
        assert runtime.info.backend == "torch" and runtime.info.precision == "fp32"


@pytest.mark.parametrize(
    "make_path, backend, message",
    [
        (lambda p: p / "missing", "auto", "does not exist"),
        (lambda p: p, "auto", "neither a gptdeploy checkpoint"),
        (lambda p: p, "jax", "unknown backend 'jax'"),
    ],
)
def test_load_runtime_errors_name_the_problem(tmp_path, make_path, backend, message):
    with pytest.raises(BackendError, match=message):
        load_runtime(make_path(tmp_path), backend=backend)


def test_a_corrupt_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_runtime(tmp_path)


def test_a_bundle_is_not_a_torch_model_and_a_checkpoint_not_an_onnx_one(checkpoint_dir, bundle_dir):
    with pytest.raises(BackendError, match="is a bundle: torch runs checkpoints"):
        load_runtime(bundle_dir, backend="torch")
    with pytest.raises(BackendError, match="is a checkpoint, not a bundle: onnxruntime runs"):
        load_runtime(checkpoint_dir, backend="onnxruntime")
    with pytest.raises(BackendError, match="--artifact only applies to bundles"):
        load_runtime(checkpoint_dir, artifact="onnx-fp32")


def test_gpu_precisions_are_refused_on_cpu(tokenizer):
    with pytest.raises(BackendError, match="fp16 runs on CUDA only"):
        TorchRuntime(tiny_model(), tokenizer, precision="fp16")
    with pytest.raises(BackendError, match="precision must be one of"):
        TorchRuntime(tiny_model(), tokenizer, precision="int3")
