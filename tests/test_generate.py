import pytest

from gptdeploy.errors import GenerationError
from gptdeploy.generate import GenerationConfig, generate, stream
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from tests.helpers import ScriptedRuntime, tiny_model

TEXT = "héllo 中文 🚀 done"


@pytest.fixture
def scripted(tokenizer):
    return ScriptedRuntime(tokenizer, [*tokenizer.encode(TEXT), tokenizer.eos_id])


def test_eos_ends_generation_and_is_left_out(scripted, tokenizer):
    result = generate(scripted, "Hello", GenerationConfig(max_new_tokens=100))
    assert result.finish_reason == "eos"
    assert result.text == TEXT and result.tokens == tokenizer.encode(TEXT)


def test_ignore_eos_runs_to_max_new_tokens(scripted):
    result = generate(scripted, "Hello", GenerationConfig(max_new_tokens=40, ignore_eos=True))
    assert result.finish_reason == "length" and len(result.tokens) == 40


def test_streaming_never_splits_a_multibyte_character(scripted, tokenizer):
    assert len(tokenizer.encode("中")) == 3, "the test tokenizer should need several byte tokens per character"
    pieces = list(stream(scripted, "Hello", GenerationConfig(max_new_tokens=100)))
    assert "".join(pieces) == TEXT
    assert len(pieces) > 5 and not any("\ufffd" in piece for piece in pieces)


def test_stop_strings_spanning_tokens_are_found_and_never_streamed(scripted):
    config = GenerationConfig(max_new_tokens=100, stop_strings=("文 🚀",))
    result = generate(scripted, "Hello", config)
    assert result.text == "héllo 中" and result.finish_reason == "stop"
    assert "".join(stream(scripted, "Hello", config)) == "héllo 中"


def test_the_earliest_of_several_stop_strings_wins(scripted):
    result = generate(scripted, "Hello", GenerationConfig(max_new_tokens=100, stop_strings=("done", "llo")))
    assert result.text == "hé"


def test_timings_are_measured(scripted):
    result = generate(scripted, "Hello", GenerationConfig(max_new_tokens=5, ignore_eos=True))
    assert result.prefill_seconds > 0 and result.decode_seconds > 0 and result.tokens_per_second > 0
    assert result.prompt_tokens == len(scripted.tokenizer.encode("Hello", bos=True))


def test_sampled_results_do_not_depend_on_how_the_request_is_split_into_batches(tokenizer):
    prompts = ["Mia lives in", "The market", "Q: What is 2 plus 3?\nA:"]
    config = GenerationConfig(max_new_tokens=10, temperature=1.0, seed=5, ignore_eos=True)
    whole = generate(TorchRuntime(tiny_model(), tokenizer, max_slots=8), prompts, config)
    split = generate(TorchRuntime(tiny_model(), tokenizer, max_slots=2), prompts, config)
    assert [r.tokens for r in whole] == [r.tokens for r in split]


@pytest.mark.parametrize(
    "prompt, settings, message",
    [
        ("", {}, "prompt 0 is empty"),
        ("word " * 100, {}, "more than the model's context of 64"),
        ("hi", {"temperature": -1.0}, "temperature must be >= 0"),
        ("hi", {"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ("hi", {"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ("hi", {"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ("hi", {"stop_strings": ("",)}, "stop strings must be non-empty text"),
        ("hi", {"stop_token_ids": (1.5,)}, "field stop_token_ids must be a tuple of int, got \\(1.5,\\)"),
        ("hi", {"max_new_tokens": "8"}, "field max_new_tokens must be int"),
    ],
)
def test_invalid_requests_raise_one_clear_error(scripted, prompt, settings, message):
    with pytest.raises(GenerationError, match=message):
        generate(scripted, prompt, GenerationConfig(**settings))


def test_an_empty_batch_is_refused(scripted):
    with pytest.raises(GenerationError, match="no prompts"):
        generate(scripted, [], GenerationConfig())
