"""A config too large for this machine is refused in milliseconds, before anything is allocated."""

import time

import pytest

from gptdeploy.config import GPTConfig
from gptdeploy.errors import ConfigError
from gptdeploy.resources import MEMORY_LIMIT, memory_limit, require_model_memory
from tests.helpers import MODEL_VARIANTS


@pytest.mark.parametrize("variant", sorted(MODEL_VARIANTS))
@pytest.mark.parametrize("extra", [{}, {"mlp_hidden": 100}, {"bias": False}, {"tie_embeddings": False}])
def test_the_parameter_count_is_known_without_building_the_model(variant, extra):
    from gptdeploy.model import GPT

    config = GPTConfig.preset("tiny", **{**MODEL_VARIANTS[variant], **extra})
    assert config.num_parameters == GPT(config).num_parameters()


@pytest.mark.parametrize(
    "overrides",
    [{"n_layer": 100_000}, {"n_embd": 10**9, "n_head": 1}, {"vocab_size": 10**11}, {"block_size": 10**9}],
)
def test_absurd_configs_are_refused_within_milliseconds_naming_the_sizes(overrides):
    from gptdeploy.model import GPT

    config = GPTConfig.preset("small", **overrides)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"model config n_layer=.*parameters\) needs about .* more than the"):
        GPT(config)
    with pytest.raises(ConfigError, match="training a model config .* at batch size 16"):
        require_model_memory(config, batch_size=16)
    assert time.perf_counter() - started < 0.5


def test_the_limit_can_be_set_and_a_model_within_it_is_built(monkeypatch):
    from gptdeploy.model import GPT

    monkeypatch.setenv(MEMORY_LIMIT, "1.5G")
    assert memory_limit() == int(1.5 * 2**30)
    GPT(GPTConfig.preset("tiny"))
    monkeypatch.setenv(MEMORY_LIMIT, "1M")
    with pytest.raises(ConfigError, match="more than the 1.05 MB available; choose a smaller config"):
        GPT(GPTConfig.preset("small"))
    monkeypatch.setenv(MEMORY_LIMIT, "lots")
    with pytest.raises(ConfigError, match="GPTDEPLOY_MEMORY_LIMIT='lots' is not a size"):
        memory_limit()


def test_a_kv_cache_beyond_the_limit_is_refused_before_it_is_allocated(monkeypatch, tokenizer, bundle_dir):
    from gptdeploy.errors import BackendError
    from gptdeploy.runtimes.base import load_runtime
    from gptdeploy.runtimes.torch_runtime import TorchRuntime
    from tests.helpers import tiny_model

    model = tiny_model()
    monkeypatch.setenv(MEMORY_LIMIT, "100K")
    with pytest.raises(BackendError, match="a KV cache of 64 slots x 128 tokens needs about .* use fewer slots"):
        TorchRuntime(model, tokenizer, max_slots=64)
    with pytest.raises(BackendError, match="a KV cache of 64 slots x 128 tokens needs about"):
        load_runtime(bundle_dir, artifact="onnx-fused-ort", max_slots=64)
