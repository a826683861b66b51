"""Every refusal of the server process, with raw httpx: OpenAI's error body and the status a client acts on."""

from __future__ import annotations

import json
import threading

import pytest

from tests.serve.conftest import API_KEY, MODEL, httpx

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post(server, path: str, body, headers=AUTH, **kwargs):
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(f"{server.url}{path}", content=content, headers={"content-type": "application/json", **headers},
                      timeout=30, **kwargs)  # fmt: skip


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def completion(**fields):
    return {"model": MODEL, "prompt": "Mia lives", "max_tokens": 4, **fields}


def chat(**fields):
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}


@pytest.mark.parametrize(
    ("path", "body", "param", "words"),
    [
        ("/v1/completions", completion(temperature="hot"), "temperature", "valid number"),
        ("/v1/completions", completion(temperature=-1), "temperature", "temperature must be >= 0"),
        ("/v1/completions", completion(top_p=0), "top_p", "top_p must be in (0, 1]"),
        ("/v1/completions", completion(max_tokens=0), "max_tokens", "greater than or equal to 1"),
        ("/v1/completions", completion(n=0), "n", "greater than or equal to 1"),
        ("/v1/completions", completion(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
        ("/v1/completions", completion(echo=True), "echo", "not supported"),
        ("/v1/completions", completion(prompt=""), None, "prompt is empty"),
        ("/v1/completions", {"prompt": "x"}, "model", "Field required"),
        ("/v1/chat/completions", chat(messages=[{"role": "robot", "content": "x"}]), "messages", "role must be one"),
        ("/v1/chat/completions", chat(top_logprobs=2), "top_logprobs", "needs logprobs"),
        ("/v1/chat/completions", chat(frequency_penalty=0.5), "frequency_penalty", "not supported"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(server, path, body, param, words):
    error = error_of(post(server, path, body), 400)
    assert error["param"] == param and words in error["message"] and error["type"] == "invalid_request_error"


def test_invalid_json_is_a_400(server):
    error = error_of(post(server, "/v1/completions", b'{"model": "tiny", "prompt": '), 400)
    assert "not valid JSON" in error["message"]


def test_a_prompt_longer_than_the_context_says_the_lengths(server):
    error = error_of(post(server, "/v1/completions", completion(prompt="word " * 300)), 400)
    assert error["code"] == "context_length_exceeded" and "context is 128 tokens" in error["message"]
    error = error_of(post(server, "/v1/chat/completions", chat(max_tokens=125)), 400)
    assert error["code"] == "context_length_exceeded" and "+ 125 to generate" in error["message"]


def test_an_unknown_model_or_route_is_a_404(server):
    assert error_of(post(server, "/v1/completions", completion(model="gpt-4")), 404)["code"] == "model_not_found"
    error_of(httpx.get(f"{server.url}/v1/nothing", headers=AUTH), 404)


def test_a_body_over_the_limit_is_a_413_declared_or_streamed(server):
    huge = completion(prompt="x" * (1 << 20))
    assert error_of(post(server, "/v1/completions", huge), 413)["code"] == "request_too_large"
    data = json.dumps(huge).encode()
    chunked = (data[i : i + 65536] for i in range(0, len(data), 65536))  # no content-length: counted as it comes
    response = httpx.post(f"{server.url}/v1/completions", content=chunked, headers=AUTH, timeout=30)
    assert "content-length" not in response.request.headers
    error_of(response, 413)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": API_KEY}])
def test_a_missing_or_wrong_api_key_is_a_401(server, headers):
    assert error_of(post(server, "/v1/completions", completion(), headers=headers), 401)["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/health").status_code == 200  # the probes need no key


def test_one_bad_request_does_not_disturb_another(server):
    results = {}

    def good():
        results["good"] = post(server, "/v1/completions", completion(max_tokens=30, ignore_eos=True))

    thread = threading.Thread(target=good)
    thread.start()
    for _ in range(5):
        error_of(post(server, "/v1/completions", completion(temperature=-1)), 400)
    thread.join()
    assert results["good"].status_code == 200 and results["good"].json()["usage"]["completion_tokens"] == 30


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    cancelled = server.metric("gptdeploy_finished_generations_total", 'reason="cancelled"')
    lengths = server.metric("gptdeploy_finished_generations_total", 'reason="length"')
    body = completion(max_tokens=120, ignore_eos=True, stream=True)
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=AUTH, timeout=30) as response:
        assert response.status_code == 200
        next(response.iter_lines())
        response.close()  # the client goes away after its first event
    for _ in range(100):
        if server.metric("gptdeploy_finished_generations_total", 'reason="cancelled"') == cancelled + 1:
            break
        threading.Event().wait(0.05)
    assert server.metric("gptdeploy_finished_generations_total", 'reason="cancelled"') == cancelled + 1
    assert server.metric("gptdeploy_active_slots") == 0
    assert server.metric("gptdeploy_finished_generations_total", 'reason="length"') == lengths  # it never ran out
