"""The engine's scheduling on a scripted runtime (what it calls and when), and its memory over many requests on a
real one. What a request generates is checked against every real backend in tests/runtimes/test_contract.py."""

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from gptdeploy.engine import Engine, EngineLoop, GenerationConfig
from gptdeploy.errors import GenerationError
from gptdeploy.generate import generate
from tests.helpers import ScriptedRuntime

FOUR = GenerationConfig(max_new_tokens=4, ignore_eos=True)


class RecordingRuntime(ScriptedRuntime):
    """Records every prefill (slot, tokens) and decode (slots) call."""

    def __init__(self, tokenizer, max_slots: int = 3, seconds_per_call: float = 0.0):
        super().__init__(tokenizer, [5, 6, 7, 8, 9], max_seq_len=64, max_slots=max_slots)
        self.calls: list[tuple] = []
        self.seconds_per_call = seconds_per_call

    def _prefill(self, slot, tokens, start, all_logits):
        self.calls.append(("prefill", slot, start, len(tokens)))
        time.sleep(self.seconds_per_call)
        return super()._prefill(slot, tokens, start, all_logits)

    def _decode(self, slots, tokens, starts):
        self.calls.append(("decode", tuple(slots.tolist())))
        time.sleep(self.seconds_per_call)
        return super()._decode(slots, tokens, starts)


def prompt(tokenizer, length: int) -> str:
    """Text that encodes to `length` tokens after bos."""
    words = list("abcdefghijklmnopqrstuvwxyz") * 4
    for count in range(1, len(words)):
        text = " ".join(words[:count])
        if len(tokenizer.encode(text, bos=True)) >= length:
            return text
    raise AssertionError("no text that long")


def test_requests_take_the_lowest_free_slot_and_wait_when_none_is_free(tokenizer):
    runtime = RecordingRuntime(tokenizer, max_slots=2)
    engine = Engine(runtime)
    requests = [engine.submit(prompt(tokenizer, 3), FOUR, index) for index in range(3)]
    engine.step()
    assert [r.slot for r in requests] == [0, 1, None]
    engine.run()
    assert requests[2].slot == 0  # the first slot freed
    assert all(r.result().tokens == [5, 6, 7, 8] and r.finish_reason == "length" for r in requests)
    assert runtime.lengths.tolist() == [0, 0]  # finished requests gave their slots back


def test_long_prompts_are_prefilled_in_chunks_and_short_ones_go_first(tokenizer):
    runtime = RecordingRuntime(tokenizer)
    engine = Engine(runtime, prefill_chunk=4)
    long = engine.submit(prompt(tokenizer, 10), FOUR)
    engine.step()  # the long prompt's first chunk, then its... nothing to decode yet
    short = engine.submit(prompt(tokenizer, 3), FOUR)
    engine.step()
    assert runtime.calls[:2] == [("prefill", 0, 0, 4), ("prefill", 1, 0, 3)]  # short first, whole, before chunk 2
    engine.run()
    chunks = [(start, size) for kind, slot, *rest in runtime.calls if kind == "prefill" and slot == 0
              for start, size in [rest]]  # fmt: skip
    assert chunks == [(0, 4), (4, 4), (8, len(long.prompt_ids) - 8)]
    assert short.first_token_at < long.first_token_at
    assert ("decode", (0, 1)) in runtime.calls  # once both are decoding, one call for both


def test_a_cancelled_request_ends_at_the_next_step_and_frees_its_slot(tokenizer):
    runtime = RecordingRuntime(tokenizer, max_slots=1)
    engine = Engine(runtime)
    first = engine.submit(prompt(tokenizer, 3), GenerationConfig(max_new_tokens=50, ignore_eos=True))
    second = engine.submit(prompt(tokenizer, 3), FOUR)
    engine.step()
    engine.cancel(first)
    engine.run()
    assert first.finish_reason == "cancelled" and len(first.generated) < 50
    assert second.finish_reason == "length" and second.slot == 0


def test_listeners_hear_every_change_and_the_end(tokenizer):
    engine = Engine(RecordingRuntime(tokenizer))
    heard = []
    request = engine.submit(prompt(tokenizer, 3), FOUR, listener=lambda r: heard.append((len(r.generated), r.done)))
    engine.run()
    assert heard[-1] == (4, True) and [count for count, _ in heard] == sorted(count for count, _ in heard)
    assert request.finished.is_set()


def test_a_prompt_that_cannot_run_is_refused_at_submit(tokenizer):
    engine = Engine(RecordingRuntime(tokenizer))
    with pytest.raises(GenerationError, match="prompt 4 is empty"):
        engine.submit("", FOUR, index=4)
    with pytest.raises(GenerationError, match="more than the model's context of 64"):
        engine.submit(prompt(tokenizer, 80), FOUR)
    assert not engine.busy


def test_the_loop_serves_many_threads_at_once(tokenizer):
    runtime = RecordingRuntime(tokenizer, max_slots=4, seconds_per_call=0.005)  # slow enough for requests to meet
    loop = EngineLoop(Engine(runtime))
    results, threads = {}, []
    for index in range(12):

        def work(index=index):
            request = loop.submit(prompt(tokenizer, 2 + index % 5), FOUR, index)
            request.finished.wait(10)
            results[index] = request.result().tokens

        threads.append(threading.Thread(target=work))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    loop.close()
    assert results == {index: [5, 6, 7, 8] for index in range(12)}
    assert max(len(call[1]) for call in runtime.calls if call[0] == "decode") > 1  # decoded together


def test_a_failing_runtime_ends_every_request_with_the_error(tokenizer):
    class Broken(RecordingRuntime):
        def _decode(self, slots, tokens, starts):
            raise RuntimeError("the device went away")

    loop = EngineLoop(Engine(Broken(tokenizer)))
    request = loop.submit(prompt(tokenizer, 3), FOUR)
    assert request.finished.wait(10) and request.finish_reason == "error"
    assert "the device went away" in str(loop.error)
    with pytest.raises(GenerationError, match="the engine stopped after an error"):
        loop.submit(prompt(tokenizer, 3), FOUR)
    loop.close()


@pytest.mark.slow
def test_memory_stays_flat_over_a_thousand_requests(tokenizer):
    """A real runtime and engine: what a thousand requests leave behind, measured as resident memory."""
    from gptdeploy.runtimes.torch_runtime import TorchRuntime
    from tests.helpers import tiny_model

    def resident_kib() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    engine = Engine(TorchRuntime(tiny_model(), tokenizer, max_slots=4))
    prompts = [prompt(tokenizer, 2 + i % 9) for i in range(20)]

    def batch() -> None:
        for index in range(100):
            engine.submit(prompts[index % 20], GenerationConfig(max_new_tokens=3, ignore_eos=True), index)
        engine.run()

    batch()  # warm-up: allocator pools, lazily built kernels
    before = resident_kib()
    for _ in range(10):
        batch()
    growth = resident_kib() - before
    assert growth < 4096, f"resident memory grew by {growth} KiB over 1,000 requests"
    assert not engine.busy and sorted(engine.free_slots) == [0, 1, 2, 3] and not np.any(engine.runtime.lengths)


def test_logprobs_are_the_models_own_for_every_generated_token(tokenizer):
    from gptdeploy.runtimes.torch_runtime import TorchRuntime
    from tests.helpers import tiny_model

    runtime = TorchRuntime(tiny_model(seed=2), tokenizer, max_slots=2)
    config = GenerationConfig(max_new_tokens=5, ignore_eos=True, temperature=0.9, seed=4, logprobs=3)
    engine = Engine(runtime)
    request = engine.submit("Mia lives", config)
    engine.run()
    result = request.result()
    assert [p.token for p in result.logprobs] == result.tokens and all(len(p.top) == 3 for p in result.logprobs)
    runtime.reset()
    logits = runtime.prefill(0, tokenizer.encode("Mia lives", bos=True)).astype(np.float64)
    expected = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    first = result.logprobs[0]
    assert first.logprob == pytest.approx(expected[first.token], abs=1e-9)
    assert [t for t, _ in first.top] == np.argsort(-expected)[:3].tolist()
    assert generate(runtime, "Mia lives", replace(config, logprobs=None)).logprobs is None
