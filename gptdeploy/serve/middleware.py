"""Two plain ASGI middlewares (no BaseHTTPMiddleware, which would get between a streaming response and the client's
disconnect): a request body size limit, and per-request accounting."""

from __future__ import annotations

import json
import os

from gptdeploy.serve.metrics import Metrics
from gptdeploy.serve.protocol import error_body

ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics")
REPLICA_HEADER = b"x-gptdeploy-replica"  # which server process answered: how a scaled-out deployment is observed


class LimitBody:
    """Answers 413 to a body over `max_bytes` before the app reads any of it; otherwise hands the app the whole body,
    then the client's later messages (its disconnect)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        body = json.dumps(error_body(f"the request body is larger than this server's limit of {self.max_bytes} bytes",
                                     "invalid_request_error", code="request_too_large")).encode()  # fmt: skip
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Observe:
    """Counts every response by endpoint and status code, and names the answering process in a header."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.replica = str(os.getpid()).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"

        async def observed_send(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(endpoint, str(message["status"])).inc()
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER, self.replica)]}
            await send(message)

        return await self.app(scope, receive, observed_send)
