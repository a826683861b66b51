"""What every runtime promises, checked through generate() and the raw protocol on a tiny random model."""

import numpy as np
import pytest

from gptdeploy.errors import ContextOverflowError, GenerationError
from gptdeploy.generate import GenerationConfig, generate, stream
from gptdeploy.runtimes.base import Runtime

PROMPTS = ["Mia lives in", "The market in Hillford opens on Monday and", "Q: What is 2 plus 3?\nA:"]
GREEDY = GenerationConfig(max_new_tokens=12, ignore_eos=True)
SAMPLED = GenerationConfig(max_new_tokens=12, temperature=1.0, top_k=40, top_p=0.95, seed=11, ignore_eos=True)


def test_satisfies_the_protocol(runtime):
    assert isinstance(runtime, Runtime)
    assert runtime.info.vocab_size == runtime.tokenizer.vocab_size
    assert runtime.info.max_seq_len == 128


def test_seeded_sampling_is_reproducible(runtime):
    first, again = generate(runtime, PROMPTS, SAMPLED), generate(runtime, PROMPTS, SAMPLED)
    assert [r.tokens for r in first] == [r.tokens for r in again]
    other = generate(runtime, PROMPTS, GenerationConfig(**{**SAMPLED.__dict__, "seed": 12}))
    assert [r.tokens for r in first] != [r.tokens for r in other]


def test_temperature_zero_follows_the_argmax_of_a_full_recompute(runtime):
    result = generate(runtime, PROMPTS[1], GREEDY)
    ids = np.array([runtime.tokenizer.encode(PROMPTS[1], bos=True) + result.tokens])
    runtime.reset(1)
    logits = runtime.forward(ids, np.ones_like(ids), all_logits=True)[0]  # (T, vocab)
    prompt_len = result.prompt_tokens
    assert logits[prompt_len - 1 : -1].argmax(-1).tolist() == result.tokens


def test_max_new_tokens_never_counts_the_prompt(runtime):
    for n in (1, 5):
        results = generate(runtime, PROMPTS, GenerationConfig(max_new_tokens=n, ignore_eos=True))
        assert all(len(r.tokens) == n and r.finish_reason == "length" for r in results)


def test_stop_tokens_end_generation_before_the_token(runtime):
    reference = generate(runtime, PROMPTS[0], GREEDY)
    stop = reference.tokens[4]
    result = generate(runtime, PROMPTS[0], GenerationConfig(**{**GREEDY.__dict__, "stop_token_ids": (stop,)}))
    assert result.tokens == reference.tokens[: reference.tokens.index(stop)]
    assert result.finish_reason == "stop"


def test_stop_strings_cut_the_text_before_the_string(runtime):
    reference = generate(runtime, PROMPTS[1], GREEDY)
    stop = reference.text[5:8]
    result = generate(runtime, PROMPTS[1], GenerationConfig(**{**GREEDY.__dict__, "stop_strings": ("@@", stop)}))
    assert result.text == reference.text[: reference.text.index(stop)]
    assert result.finish_reason == "stop"
    assert reference.text.startswith(result.text) and len(result.tokens) < len(reference.tokens)


def test_a_batch_of_different_lengths_equals_each_prompt_alone(runtime):
    batch = generate(runtime, PROMPTS, GREEDY)
    alone = [generate(runtime, prompt, GREEDY) for prompt in PROMPTS]
    assert [r.tokens for r in batch] == [r.tokens for r in alone]


def test_rows_finishing_early_leave_the_others_unchanged(runtime):
    reference = generate(runtime, PROMPTS, GREEDY)
    mixed = GenerationConfig(**{**GREEDY.__dict__, "stop_token_ids": (reference[0].tokens[2],)})
    results = generate(runtime, PROMPTS, mixed)
    assert results[0].finish_reason == "stop"
    for got, expected in zip(results[1:], reference[1:], strict=True):
        stop = mixed.stop_token_ids[0]
        cut = expected.tokens.index(stop) if stop in expected.tokens else len(expected.tokens)
        assert got.tokens == expected.tokens[:cut]


def test_cached_decoding_equals_full_recompute(runtime):
    ids = np.array([runtime.tokenizer.encode(PROMPTS[1], bos=True)])
    runtime.reset(1)
    full = runtime.forward(ids, np.ones_like(ids), all_logits=True)[0]
    runtime.reset(1)
    stepwise = [runtime.forward(ids[:, :4], np.ones((1, 4)), all_logits=True)[0]]
    for t in range(4, ids.shape[1]):
        stepwise.append(runtime.forward(ids[:, t : t + 1], np.ones((1, t + 1)))[:, None][0])
    assert np.abs(np.concatenate(stepwise) - full).max() <= 1e-4


@pytest.mark.parametrize("config", [GREEDY, SAMPLED, GenerationConfig(max_new_tokens=20, stop_strings=("e",))])
def test_streamed_pieces_concatenate_to_the_final_text(runtime, config):
    pieces = list(stream(runtime, PROMPTS[2], config))
    assert "".join(pieces) == generate(runtime, PROMPTS[2], config).text
    assert all(pieces)


def test_generation_stops_when_the_context_is_full(runtime):
    words = ["word"]
    while len(runtime.tokenizer.encode(" ".join(words), bos=True)) < runtime.info.max_seq_len - 10:
        words.append("word")
    prompt = " ".join(words)
    room = runtime.info.max_seq_len - len(runtime.tokenizer.encode(prompt, bos=True))
    result = generate(runtime, prompt, GenerationConfig(max_new_tokens=100, ignore_eos=True))
    assert result.finish_reason == "context_full"
    assert len(result.tokens) == room + 1  # the last token is sampled but never needs a slot in the cache


def test_feeding_past_the_context_raises(runtime):
    runtime.reset(1)
    ids = np.zeros((1, runtime.info.max_seq_len), dtype=np.int64)
    runtime.forward(ids, np.ones_like(ids))
    with pytest.raises(ContextOverflowError, match="exceed the model's context of 128"):
        runtime.forward(ids[:, :1], np.ones((1, runtime.info.max_seq_len + 1)))


def test_bad_shapes_are_refused(runtime):
    runtime.reset(2)
    with pytest.raises(GenerationError, match="input_ids must be"):
        runtime.forward(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(GenerationError, match="attention_mask must be"):
        runtime.forward(np.zeros((2, 3)), np.ones((2, 4)))
    with pytest.raises(GenerationError, match="token ids must be in"):
        runtime.forward(np.full((2, 1), runtime.info.vocab_size), np.ones((2, 1)))
