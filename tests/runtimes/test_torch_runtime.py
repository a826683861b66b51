import pytest

from gptdeploy.errors import BackendError, CheckpointError
from gptdeploy.runtimes.base import load_runtime
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from tests.helpers import tiny_model


def test_the_kv_cache_is_allocated_once_and_each_slot_written_at_its_own_positions(tokenizer):
    runtime = TorchRuntime(tiny_model(), tokenizer, max_slots=3)
    buffer = runtime.buffer
    assert buffer.shape == (2, 2, 3, 4, 128, 16)  # layers, k/v, slots, kv heads, context, head dim
    pointer = buffer.data_ptr()
    runtime.prefill(0, [5, 6, 7, 8, 9])
    runtime.prefill(2, [5, 6])
    for _ in range(3):
        runtime.decode([0, 2], [1, 1])
    assert runtime.buffer.data_ptr() == pointer and runtime.lengths.tolist() == [8, 0, 5]
    assert buffer[:, :, 0, :, :8].abs().sum() > 0 and buffer[:, :, 0, :, 8:].abs().sum() == 0
    assert buffer[:, :, 1].abs().sum() == 0  # slot 1 untouched
    assert buffer[:, :, 2, :, :5].abs().sum() > 0 and buffer[:, :, 2, :, 5:].abs().sum() == 0


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
