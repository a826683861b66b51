"""`gptdeploy serve --ray`: two Ray Serve replicas on a local Ray instance that the command starts. Requests spread
over both; when one replica is killed, its requests in flight fail cleanly, nothing hangs, and new requests go on.
One test, since starting Ray takes most of its time."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.serve.conftest import MODEL, httpx, start_server, stop_server

pytest.importorskip("ray.serve", reason="the Ray Serve test needs ray: pip install 'gptdeploy[ray]'")


def ask(server, max_tokens: int) -> tuple[object, str | None]:
    """(status code or the transport error's name, the replica that answered)."""
    body = {"model": MODEL, "prompt": "Mia lives", "max_tokens": max_tokens, "ignore_eos": True}
    try:
        response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
    except httpx.TransportError as error:
        return type(error).__name__, None
    if response.status_code == 200:
        assert response.json()["usage"]["completion_tokens"] == max_tokens
    return response.status_code, response.headers.get("x-gptdeploy-replica")


@pytest.mark.slow
def test_two_replicas_share_requests_and_survive_losing_one(tmp_path, tokenizer):
    """A context of 4096 tokens, so the requests of 600 tokens are still running when their replica is killed."""
    from gptdeploy.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    save_checkpoint(tmp_path / "model", tiny_model(block_size=4096), tokenizer)
    server = start_server(tmp_path / "model", "--ray", "--replicas", "2", "--max-slots", "2", seconds=180)
    try:
        with ThreadPoolExecutor(8) as pool:
            spread = list(pool.map(lambda _: ask(server, 8), range(24)))
            assert {status for status, _ in spread} == {200}
            replicas = {replica for _, replica in spread}
            assert len(replicas) == 2

            victim = int(spread[0][1])
            in_flight = [pool.submit(ask, server, 600) for _ in range(8)]
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            outcomes = [future.result(timeout=90) for future in in_flight]  # nothing hangs
        failed = [status for status, _ in outcomes if status != 200]
        assert failed and all(status in (500, 502, 503) or isinstance(status, str) for status in failed), outcomes
        after = [ask(server, 8) for _ in range(8)]
        assert {status for status, _ in after} == {200}, after
    finally:
        code = stop_server(server, seconds=120)
    assert code == 0


def test_build_app_reads_serve_run_arguments(checkpoint_dir):
    """`serve run gptdeploy.serve.ray_app:build_app model=... replicas=2 ...` passes text; it becomes typed options."""
    from gptdeploy.serve.ray_app import build_app

    app = build_app({"model": str(checkpoint_dir), "replicas": "2", "max_slots": "3", "num_gpus": "0.5"})
    deployment = app._bound_deployment  # Ray keeps the bound deployment here; no public accessor
    (options,) = deployment.init_args
    assert (deployment.num_replicas, deployment.ray_actor_options["num_gpus"]) == (2, 0.5)
    assert (options.max_slots, options.model_name) == (3, checkpoint_dir.name)
