"""The official openai client against the server process: what it returns equals offline generate() on the same
model, greedy and seeded, alone and 16 at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from gptdeploy.chat_template import ChatTemplate
from gptdeploy.generate import GenerationConfig, generate
from tests.serve.conftest import API_KEY, MODEL

openai = pytest.importorskip("openai", reason="the server tests need the openai client (the dev extra installs it)")

PROMPTS = ["Mia lives", "The market", "Tom had 12 apples", "a b c", "Pip the dog", "Riverton is", "She has", "Q: x"]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def offline(runtime, prompt: str, **settings):
    return generate(runtime, prompt, GenerationConfig(**settings))


def test_models_lists_the_served_model(client, reference):
    (model,) = client.models.list().data
    assert model.id == MODEL and model.max_model_len == reference.info.max_seq_len


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0, top_p=0.9, seed=7)],
                         ids=["greedy", "seeded"])  # fmt: skip
def test_a_completion_equals_offline_generate(client, reference, sampling):
    response = client.completions.create(model=MODEL, prompt="Mia lives", max_tokens=12, **sampling)
    expected = offline(reference, "Mia lives", max_new_tokens=12, **sampling)
    (choice,) = response.choices
    assert choice.text == expected.text
    assert choice.finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == len(expected.tokens)
    assert response.id.startswith("cmpl-")


def test_streaming_joins_to_the_offline_text_and_reports_usage(client, reference):
    stream = client.completions.create(model=MODEL, prompt="The market", max_tokens=20, temperature=0.8, seed=3,
                                       stream=True, stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    expected = offline(reference, "The market", max_new_tokens=20, temperature=0.8, seed=3)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(expected.tokens)


def test_chat_uses_the_models_template(client, reference):
    messages = [{"role": "user", "content": "What is 12 plus 30?"}]
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0.5, seed=1)
    prompt = ChatTemplate(reference.tokenizer).render(messages)
    assert prompt == "Q: What is 12 plus 30?\nA:"
    expected = offline(reference, prompt, max_new_tokens=8, temperature=0.5, seed=1)
    assert response.choices[0].message.content == expected.text and response.choices[0].message.role == "assistant"
    assert response.usage.prompt_tokens == expected.prompt_tokens

    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0.5, seed=1,
                                            stream=True)  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in stream) == expected.text


def test_a_stop_string_ends_the_text_where_offline_generate_ends_it(client, reference):
    sampling = dict(temperature=1.0, seed=2)
    full = offline(reference, "Tom had 12 apples", max_new_tokens=24, ignore_eos=True, **sampling).text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = offline(reference, "Tom had 12 apples", max_new_tokens=24, ignore_eos=True, stop_strings=(stop,),
                       **sampling)  # fmt: skip
    response = client.completions.create(model=MODEL, prompt="Tom had 12 apples", max_tokens=24, stop=[stop],
                                         extra_body={"ignore_eos": True}, **sampling)  # fmt: skip
    assert response.choices[0].text == expected.text and len(expected.text) < len(full)
    assert response.choices[0].finish_reason == "stop"


def test_n_choices_are_the_offline_batch_of_the_same_prompt(client, reference):
    response = client.completions.create(model=MODEL, prompt="Pip the dog", n=3, max_tokens=8, temperature=1.0, seed=5)
    expected = generate(reference, ["Pip the dog"] * 3, GenerationConfig(max_new_tokens=8, temperature=1.0, seed=5))
    assert [c.text for c in sorted(response.choices, key=lambda c: c.index)] == [r.text for r in expected]


def test_logprobs_are_the_offline_ones(client, reference):
    response = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                              temperature=0, logprobs=True, top_logprobs=2)  # fmt: skip
    prompt = ChatTemplate(reference.tokenizer).render([{"role": "user", "content": "hi"}])
    expected = offline(reference, prompt, max_new_tokens=4, logprobs=2)
    content = response.choices[0].logprobs.content
    assert [entry.logprob for entry in content] == pytest.approx([p.logprob for p in expected.logprobs], abs=1e-5)
    assert all(len(entry.top_logprobs) == 2 for entry in content)

    completion = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0, logprobs=2)
    assert completion.choices[0].logprobs.token_logprobs == pytest.approx([p.logprob for p in expected.logprobs],
                                                                          abs=1e-5)  # fmt: skip


@pytest.mark.slow
def test_sixteen_concurrent_requests_each_equal_their_offline_result(client, reference, server):
    """More requests than slots (4): they queue, batch with each other, and each still gets its own answer."""
    jobs = [(PROMPTS[i % len(PROMPTS)], dict(temperature=0.0) if i % 2 else dict(temperature=0.9, seed=i))
            for i in range(16)]  # fmt: skip

    def ask(job):
        prompt, sampling = job
        return client.completions.create(model=MODEL, prompt=prompt, max_tokens=10, **sampling)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(ask, jobs))
    assert len({r.id for r in responses}) == 16
    for (prompt, sampling), response in zip(jobs, responses, strict=True):
        assert response.choices[0].text == offline(reference, prompt, max_new_tokens=10, **sampling).text
    assert server.metric("gptdeploy_active_slots") == 0 and server.metric("gptdeploy_queue_depth") == 0
