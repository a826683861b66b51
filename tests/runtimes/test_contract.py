"""What every runtime promises, checked through generate(), the engine and the raw slot protocol on a tiny random
model."""

import numpy as np
import pytest

from gptdeploy.engine import Engine
from gptdeploy.errors import ContextOverflowError, GenerationError
from gptdeploy.generate import GenerationConfig, generate, stream
from gptdeploy.runtimes.base import Runtime

PROMPTS = ["Mia lives in", "The market in Hillford opens on Monday and", "Q: What is 2 plus 3?\nA:"]
GREEDY = GenerationConfig(max_new_tokens=12, ignore_eos=True)
SAMPLED = GenerationConfig(max_new_tokens=12, temperature=1.0, top_k=40, top_p=0.95, seed=11, ignore_eos=True)
OTHERS = ["Tom had 12 apples and gave 5 to Mia, so", "The river", "Sort the letters q b x d and then the letters"]


def test_satisfies_the_protocol(runtime):
    assert isinstance(runtime, Runtime)
    assert runtime.info.vocab_size == runtime.tokenizer.vocab_size
    assert runtime.info.max_seq_len == 128 and runtime.info.max_slots == 8


def test_seeded_sampling_is_reproducible(runtime):
    first, again = generate(runtime, PROMPTS, SAMPLED), generate(runtime, PROMPTS, SAMPLED)
    assert [r.tokens for r in first] == [r.tokens for r in again]
    other = generate(runtime, PROMPTS, GenerationConfig(**{**SAMPLED.__dict__, "seed": 12}))
    assert [r.tokens for r in first] != [r.tokens for r in other]


def test_temperature_zero_follows_the_argmax_of_a_full_recompute(runtime):
    result = generate(runtime, PROMPTS[1], GREEDY)
    ids = runtime.tokenizer.encode(PROMPTS[1], bos=True) + result.tokens
    runtime.reset()
    logits = runtime.prefill(0, ids, all_logits=True)  # (T, vocab)
    assert logits[result.prompt_tokens - 1 : -1].argmax(-1).tolist() == result.tokens


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


@pytest.mark.parametrize("config", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_request_gets_the_same_tokens_alone_together_or_joining_a_running_engine(runtime, config):
    """The engine's invariant: tokens do not depend on what else runs, when the request joins, or chunking."""
    alone = generate(runtime, PROMPTS[1], config).tokens
    assert generate(runtime, [PROMPTS[1], *OTHERS], config)[0].tokens == alone  # a batch submitted together
    for joins_after in (0, 1, 3, 7):
        engine = Engine(runtime, prefill_chunk=4)  # prompts cut into chunks, interleaved with the others' decoding
        for index, other in enumerate(OTHERS):
            engine.submit(other, config, index=index + 10)
        for _ in range(joins_after):
            engine.step()
        joined = engine.submit(PROMPTS[1], config, index=0)
        engine.run()
        assert joined.generated == alone, f"joined after {joins_after} steps"


def test_rows_finishing_early_leave_the_others_unchanged(runtime):
    reference = generate(runtime, PROMPTS, GREEDY)
    mixed = GenerationConfig(**{**GREEDY.__dict__, "stop_token_ids": (reference[0].tokens[2],)})
    results = generate(runtime, PROMPTS, mixed)
    assert results[0].finish_reason == "stop"
    for got, expected in zip(results[1:], reference[1:], strict=True):
        stop = mixed.stop_token_ids[0]
        cut = expected.tokens.index(stop) if stop in expected.tokens else len(expected.tokens)
        assert got.tokens == expected.tokens[:cut]


def test_more_prompts_than_slots_wait_for_a_free_one(runtime):
    prompts = [f"{PROMPTS[i % 3]} {i}" for i in range(runtime.info.max_slots + 3)]
    together = generate(runtime, prompts, GREEDY)
    assert [r.tokens for r in together] == [generate(runtime, p, GREEDY).tokens for p in prompts]


def test_cached_decoding_and_chunked_prefill_equal_a_full_recompute(runtime):
    ids = np.array(runtime.tokenizer.encode(PROMPTS[1], bos=True))
    runtime.reset()
    full = runtime.prefill(0, ids, all_logits=True)
    runtime.reset()
    stepwise = [runtime.prefill(3, ids[:2], all_logits=True), runtime.prefill(3, ids[2:4], all_logits=True)]
    for t in range(4, len(ids)):
        stepwise.append(runtime.decode([3], ids[t : t + 1]))
    assert np.abs(np.concatenate(stepwise) - full).max() <= 1e-4


def test_a_decode_of_several_slots_equals_each_slot_alone(runtime):
    encoded = [runtime.tokenizer.encode(p, bos=True) for p in PROMPTS]
    runtime.reset()
    alone = []
    for ids in encoded:
        runtime.prefill(5, ids[:-1])
        alone.append(runtime.decode([5], ids[-1:])[0])
        runtime.free(5)
    for slot, ids in zip((6, 1, 3), encoded, strict=True):  # out of order, with gaps between them
        runtime.prefill(slot, ids[:-1])
    together = runtime.decode([6, 1, 3], [ids[-1] for ids in encoded])
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-4)


def test_a_freed_slot_is_reused_as_if_new(runtime):
    ids = runtime.tokenizer.encode(PROMPTS[0], bos=True)
    runtime.reset()
    fresh = runtime.prefill(2, ids)
    runtime.prefill(2, runtime.tokenizer.encode(OTHERS[0]))
    runtime.free(2)
    assert runtime.length(2) == 0
    np.testing.assert_allclose(runtime.prefill(2, ids), fresh, atol=1e-5)


def test_the_kv_cache_never_moves_during_an_engine_run(preallocated_runtime):
    runtime = preallocated_runtime
    before = runtime.cache_pointers()
    engine = Engine(runtime, prefill_chunk=4)
    for index, prompt in enumerate([*PROMPTS, *OTHERS] * 2):
        engine.submit(prompt, GREEDY, index)
        engine.step()
        assert runtime.cache_pointers() == before
    engine.run()
    assert runtime.cache_pointers() == before


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
    runtime.reset()
    runtime.prefill(0, np.zeros(runtime.info.max_seq_len, dtype=np.int64))
    with pytest.raises(ContextOverflowError, match="exceed the model's context of 128"):
        runtime.decode([0], [1])
    with pytest.raises(ContextOverflowError, match="exceed the model's context of 128"):
        runtime.prefill(1, np.zeros(runtime.info.max_seq_len + 1, dtype=np.int64))


def test_bad_requests_are_refused(runtime):
    runtime.reset()
    with pytest.raises(GenerationError, match=r"slot must be in 0\.\.7"):
        runtime.prefill(8, [1, 2])
    with pytest.raises(GenerationError, match="slot 1 is empty"):
        runtime.decode([1], [3])
    runtime.prefill(1, [1, 2])
    with pytest.raises(GenerationError, match="one token for each of distinct slots"):
        runtime.decode([1, 1], [3, 4])
    with pytest.raises(GenerationError, match="token ids must be in"):
        runtime.decode([1], [runtime.info.vocab_size])
    with pytest.raises(GenerationError, match="no tokens"):
        runtime.prefill(2, [])
    assert runtime.length(1) == 2  # a refused call changes nothing
