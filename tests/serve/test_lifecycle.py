"""Load and shutdown: 503 while loading and draining, 429 when the queue is full, SIGTERM drains and exits 0, and a
model that cannot load ends `gptdeploy serve` with one error line."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from click.testing import CliRunner

from gptdeploy.cli import main
from tests.serve.conftest import MODEL, httpx, start_server, stop_server

LONG = {"model": MODEL, "prompt": "Mia lives", "max_tokens": 200, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}}  # fmt: skip


@pytest.fixture(scope="module")
def one_slot_server(tmp_path_factory, tokenizer):
    """One slot and a queue of one: the second request waits, the third is refused. A context of 4096 tokens lets a
    request hold the slot for seconds. The last test stops it."""
    from gptdeploy.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    model = tmp_path_factory.mktemp("long-context") / "model"
    save_checkpoint(model, tiny_model(block_size=4096), tokenizer)
    server = start_server(model, "--max-slots", "1", "--max-queue", "1", "--grace-period", "20")
    yield server
    stop_server(server)


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_full_queue_is_a_429_with_retry_after(one_slot_server):
    server, queued = one_slot_server, {}
    hold = {**LONG, "max_tokens": 4000}  # seconds of work: it holds the slot until this client leaves
    with httpx.stream("POST", f"{server.url}/v1/completions", json=hold, timeout=30) as running:
        lines = running.iter_lines()  # kept: a line iterator that is dropped closes the connection
        next(lines)
        body = {"model": MODEL, "prompt": "The market", "max_tokens": 3}
        waiting = threading.Thread(target=lambda: queued.update(r=httpx.post(f"{server.url}/v1/completions",
                                                                               json=body, timeout=30)))  # fmt: skip
        waiting.start()
        wait_for(lambda: server.metric("gptdeploy_queue_depth") == 1)
        refused = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
    waiting.join(timeout=30)
    assert queued["r"].status_code == 200  # it got the slot once the first client left


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(one_slot_server):
    server = one_slot_server
    with httpx.stream("POST", f"{server.url}/v1/completions", json=LONG, timeout=30) as running:
        lines = running.iter_lines()
        first = next(lines)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            late = httpx.post(f"{server.url}/v1/completions", json={**LONG, "stream": False}, timeout=5)
            assert late.status_code == 503
        except httpx.TransportError:
            pass  # refused: the listening socket is closed
        rest = [first, *lines]
    events = [line.removeprefix("data: ") for line in rest if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 200
    assert [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-2]][-1] == "length"
    assert server.process.wait(timeout=30) == 0


@pytest.fixture
def gated_app(checkpoint_dir):
    """An app in this process whose model loads only when the gate opens."""
    from gptdeploy.runtimes.base import load_runtime
    from gptdeploy.serve.app import create_app
    from gptdeploy.serve.service import Service

    gate = threading.Event()

    def loader():
        gate.wait(30)
        return load_runtime(checkpoint_dir, max_slots=2)

    service = Service(loader, MODEL)
    return create_app(service), service, gate


def test_503_while_loading_and_while_draining(gated_app):
    from fastapi.testclient import TestClient

    app, service, gate = gated_app
    body = {"model": MODEL, "prompt": "Mia lives", "max_tokens": 2}
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503
        loading = client.post("/v1/completions", json=body)
        assert loading.status_code == 503 and "still loading" in loading.json()["error"]["message"]
        gate.set()
        assert service.loaded.wait(30)
        assert client.get("/ready").status_code == 200
        assert client.post("/v1/completions", json=body).status_code == 200
        service.drain()
        assert client.get("/ready").status_code == 503
        draining = client.post("/v1/completions", json=body)
        assert draining.status_code == 503 and "shutting down" in draining.json()["error"]["message"]


def test_a_model_that_cannot_load_ends_serve_with_one_error_line(tmp_path):
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "missing"), "--port", "0"])
    assert result.exit_code == 1 and "Error: model folder" in result.output and "does not exist" in result.output
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--replicas", "2"])
    assert result.exit_code == 2 and "--replicas needs --ray" in result.output


def test_prefill_chunk_reaches_the_engine_and_a_bad_one_is_refused(checkpoint_dir, tmp_path):
    from fastapi.testclient import TestClient

    from gptdeploy.serve.app import create_app
    from gptdeploy.serve.options import ServeOptions

    service = ServeOptions(str(checkpoint_dir), max_slots=2, model_name=MODEL, prefill_chunk=3).service()
    with TestClient(create_app(service)) as client:
        service.start(wait=True)
        assert service.engine_loop.engine.prefill_chunk == 3
        answer = client.post("/v1/completions", json={"model": MODEL, "prompt": "Mia lives in", "max_tokens": 2})
        assert answer.status_code == 200 and answer.json()["usage"]["prompt_tokens"] > 3  # prefilled in chunks
        service.close()
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--prefill-chunk", "0"])
    assert result.exit_code == 2 and "--prefill-chunk" in result.output
