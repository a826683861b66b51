"""Servers started as real processes on a free port of 127.0.0.1, and the offline reference they must equal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest

httpx = pytest.importorskip("httpx", reason="the server tests need httpx (the dev extra installs it)")
pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install 'gptdeploy[serve]'")

API_KEY = "sk-test-key"
MODEL = "tiny"


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics, 0 when absent (a labelled counter appears at its first increment)."""
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model, *options: str, seconds: float = 90) -> Server:
    """`gptdeploy serve` in a session of its own (so whatever it starts can be stopped with it), once ready."""
    port = free_port()
    command = [sys.executable, "-m", "gptdeploy", "serve", str(model), "--port", str(port), "--model-name", MODEL,
               *options]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the server) not a pipe: a full one would block
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env=env)  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"the server exited with {process.returncode}: {log.read()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise AssertionError(f"the server was not ready within {seconds} s")


def stop_server(server: Server, seconds: float = 30) -> int:
    """SIGTERM, and its exit code; the whole session is killed if it does not exit in time."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        raise


@pytest.fixture(scope="module")
def server(checkpoint_dir):
    """The tiny checkpoint served with 4 slots and an API key."""
    server = start_server(checkpoint_dir, "--max-slots", "4", "--api-key", API_KEY)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def reference(checkpoint_dir):
    """The offline runtime the server's answers are compared with."""
    from gptdeploy.runtimes.base import load_runtime

    with load_runtime(checkpoint_dir, max_slots=4) as runtime:
        yield runtime
