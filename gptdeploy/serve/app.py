"""The FastAPI app over a `Service`: OpenAI's /v1/completions, /v1/chat/completions and /v1/models, the probes
/health (alive), /ready (loaded, not draining) and /metrics (Prometheus). Every error is OpenAI's error body with
the status a client can act on: 400 naming the field, 401, 404, 413, 429 with Retry-After, 503.

A stream is server-sent events ending with `data: [DONE]`; when the client goes away mid-stream, Starlette cancels
the response, `Service.follow` cancels its requests and their slots are free at the engine's next step.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from gptdeploy.errors import GenerationError, ServerError
from gptdeploy.serve import protocol
from gptdeploy.serve.middleware import LimitBody, Observe
from gptdeploy.serve.protocol import ChatRequest, CompletionRequest, FieldError, error_body
from gptdeploy.serve.service import ContextLengthError, NotReadyError, QueueFullError, Service, Update

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
RETRY_AFTER_SECONDS = 1


class ApiError(ServerError):
    """An error with its HTTP status and OpenAI error type and code."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None):
        super().__init__(message)
        self.status, self.type, self.code = status, type_, code


def create_app(service: Service, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The app; its lifespan starts loading the service's model and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="gptdeploy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LimitBody, max_bytes=max_body_bytes)
    app.add_middleware(Observe, metrics=service.metrics)
    add_error_handlers(app)
    app.include_router(probe_routes(service))
    app.include_router(openai_routes(service), dependencies=[Depends(key_check(api_key))] if api_key else [])
    return app


def key_check(api_key: str):
    expected = api_key.encode()

    async def check(authorization: str | None = Header(None)) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, expected):  # constant time: the reply's timing tells nothing of the key
            raise ApiError(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY'",
                           "invalid_request_error", "invalid_api_key")  # fmt: skip

    return check


def probe_routes(service: Service) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> dict:
        service.check_ready()
        return {"status": "ready", "model": service.model_name}

    @router.get("/metrics")
    async def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    return router


def openai_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def check_model(name: str) -> None:
        if name != service.model_name:
            raise ApiError(404, f"model {name!r} does not exist; this server has {service.model_name!r}",
                           "invalid_request_error", "model_not_found")  # fmt: skip

    def token_text(token: int) -> str:
        return service.runtime.tokenizer.decode([token], skip_special=False)

    @router.get("/models")
    async def models() -> dict:
        model = {"id": service.model_name, "object": "model", "created": 0, "owned_by": "gptdeploy",
                 "max_model_len": service.context_length}  # fmt: skip
        return {"object": "list", "data": [model]}

    @router.post("/completions")
    async def completions(body: CompletionRequest):
        check_model(body.model)
        config = body.config(body.logprobs)
        requests, wake = service.submit(body.prompts, config, body.n, body.max_tokens)
        prompt_tokens = sum(len(r.prompt_ids) for r in requests[:: body.n])
        id_, updates = protocol.new_id("cmpl"), service.follow(requests, wake)
        text_of = token_text if body.logprobs is not None else None

        if body.stream:

            async def chunks() -> AsyncIterator[dict]:
                async for update in updates:
                    check_outcome(update)
                    yield protocol.completion_chunk(id_, service.model_name, update, text_of)
                if body.include_usage:
                    used = protocol.usage(prompt_tokens, sum(len(r.generated) for r in requests))
                    yield protocol.usage_chunk(id_, service.model_name, "text_completion", used)

            return event_stream(chunks(), id_)
        texts, logprobs, reasons = await collect(updates, len(requests))
        choices = [{"index": i, "text": texts[i], "finish_reason": reasons[i],
                    "logprobs": protocol.completion_logprobs(logprobs[i], text_of) if text_of else None}
                   for i in range(len(requests))]  # fmt: skip
        used = protocol.usage(prompt_tokens, sum(len(r.generated) for r in requests))
        return JSONResponse(protocol.completion_body(id_, service.model_name, choices, used),
                            headers={"x-request-id": id_})  # fmt: skip

    @router.post("/chat/completions")
    async def chat(body: ChatRequest):
        check_model(body.model)
        config = body.config(body.logprobs_count)
        service.check_ready()
        try:
            prompt = service.template.render(body.messages)
        except GenerationError as error:
            raise FieldError("messages", str(error)) from error
        requests, wake = service.submit([prompt], config, body.n, body.token_limit)
        prompt_tokens = len(requests[0].prompt_ids)
        id_, updates, model = protocol.new_id("chatcmpl"), service.follow(requests, wake), service.model_name

        def logprobs_of(update_logprobs):
            return protocol.chat_logprobs(update_logprobs, token_text) if body.logprobs else None

        if body.stream:

            async def chunks() -> AsyncIterator[dict]:
                for index in range(len(requests)):
                    yield protocol.chat_chunk(id_, model, index, {"role": "assistant", "content": ""}, None, None)
                async for update in updates:
                    check_outcome(update)
                    delta = {"content": update.text} if update.text else {}
                    yield protocol.chat_chunk(id_, model, update.index, delta, update.finish_reason,
                                              logprobs_of(update.logprobs))  # fmt: skip
                if body.include_usage:
                    used = protocol.usage(prompt_tokens, sum(len(r.generated) for r in requests))
                    yield protocol.usage_chunk(id_, model, "chat.completion.chunk", used)

            return event_stream(chunks(), id_)
        texts, logprobs, reasons = await collect(updates, len(requests))
        choices = [{"index": i, "message": {"role": "assistant", "content": texts[i]},
                    "logprobs": logprobs_of(logprobs[i]), "finish_reason": reasons[i]}
                   for i in range(len(requests))]  # fmt: skip
        used = protocol.usage(prompt_tokens, sum(len(r.generated) for r in requests))
        return JSONResponse(protocol.chat_body(id_, model, choices, used), headers={"x-request-id": id_})

    def check_outcome(update: Update) -> None:
        """A request the engine could not finish: its error, for the client."""
        if update.finish_reason == "error":
            raise ApiError(500, f"the engine failed: {service.engine_loop.error}", "server_error")
        if update.finish_reason == "cancelled":
            raise NotReadyError("the server is shutting down")

    async def collect(updates: AsyncIterator[Update], count: int):
        texts, logprobs, reasons = [""] * count, [[] for _ in range(count)], [None] * count
        async for update in updates:
            check_outcome(update)
            texts[update.index] += update.text
            logprobs[update.index] += update.logprobs
            reasons[update.index] = update.finish_reason
        return texts, logprobs, reasons

    return router


def event_stream(chunks: AsyncIterator[dict], id_: str) -> StreamingResponse:
    """Server-sent events: one `data:` line per chunk, then `data: [DONE]`; an error after the stream started (the
    status is sent by then) is an error chunk instead."""

    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except (ApiError, NotReadyError) as error:
            status = error.status if isinstance(error, ApiError) else 503
            yield f"data: {json.dumps(error_payload(error, status)[1])}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"x-request-id": id_, "cache-control": "no-cache"})  # fmt: skip


def error_payload(error: Exception, status: int) -> tuple[int, dict]:
    if isinstance(error, ApiError):
        return error.status, error_body(str(error), error.type, code=error.code)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, error_body(str(error), kind)


def add_error_handlers(app: FastAPI) -> None:
    def reply(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            return reply(400, error_body(f"the body is not valid JSON: {first.get('msg')}", "invalid_request_error"))
        param = location[0] if location else None
        where = ".".join(location) or "body"
        return reply(400, error_body(f"{where}: {first.get('msg')}", "invalid_request_error", param))

    @app.exception_handler(ContextLengthError)
    async def too_long(_: Request, error: ContextLengthError) -> JSONResponse:
        return reply(400, error_body(str(error), "invalid_request_error", None, "context_length_exceeded"))

    @app.exception_handler(GenerationError)
    async def bad_request(_: Request, error: GenerationError) -> JSONResponse:
        return reply(400, error_body(str(error), "invalid_request_error", getattr(error, "param", None)))

    @app.exception_handler(NotReadyError)
    async def not_ready(_: Request, error: NotReadyError) -> JSONResponse:
        return reply(503, error_body(str(error), "server_error", code="not_ready"))

    @app.exception_handler(QueueFullError)
    async def queue_full(_: Request, error: QueueFullError) -> JSONResponse:
        return reply(429, error_body(str(error), "rate_limit_error", code="queue_full"),
                     {"Retry-After": str(RETRY_AFTER_SECONDS)})  # fmt: skip

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return reply(*error_payload(error, error.status))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return reply(error.status_code, error_body(str(error.detail), "invalid_request_error"), error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return reply(500, error_body(f"unexpected {type(error).__name__}: {error}", "server_error"))
