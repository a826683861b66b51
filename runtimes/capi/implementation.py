"""The Python side of libgptdeploy.so: the body of each gptdeploy.h function, on top of `load_runtime` and the
engine, so a C caller gets exactly the tokens a Python caller gets. Each model runs an `EngineLoop`: generations
from any number of threads share its KV slots and are batched together.

Runs only inside the library's embedded interpreter (`install` is called by its init code). Every entry point
checks its raw C arguments (NULL, UTF-8, struct_size), turns gptdeploy's errors into a gd_status with the message
in the calling thread's gd_last_error(), and never lets an exception reach C.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gptdeploy.engine import Engine, EngineLoop, GenerationConfig, Request
from gptdeploy.errors import (
    BackendError,
    BundleError,
    CheckpointError,
    GptDeployError,
    NonFiniteLogitsError,
    TokenizerError,
)
from gptdeploy.runtimes.base import Runtime, load_runtime

logger = logging.getLogger(__name__)

MESSAGE_BYTES = 2000  # shim.c keeps messages in 2048-byte buffers
FINISH_REASONS = {
    "length": "GD_FINISH_LENGTH",
    "stop": "GD_FINISH_STOP",
    "eos": "GD_FINISH_EOS",
    "context_full": "GD_FINISH_CONTEXT_FULL",
}
MODEL_SLOTS = 4  # generations one model runs at once; more wait for a free slot
LOAD_OPTIONS = ("backend", "device", "precision", "artifact")


def status_of(error: GptDeployError) -> str:
    """The gd_status a library error becomes."""
    if isinstance(error, BackendError):
        return "GD_E_BACKEND"
    if isinstance(error, (BundleError, CheckpointError, TokenizerError, NonFiniteLogitsError)):
        return "GD_E_BAD_MODEL"
    return "GD_E_INVALID_ARGUMENT"  # GenerationError (sampling parameters, prompts) and the rest


class CallError(Exception):
    """A call ends with this gd_status (its name in gptdeploy.h) and message."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Model:
    """What a gd_model handle points to: a runtime and the engine loop that shares it between calls."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.loop = EngineLoop(Engine(runtime))
        self.streaming: set[int] = set()  # threads inside one of this model's stream callbacks

    def run(self, prompt: str, config: GenerationConfig, listener: Callable[[Request], None] | None = None) -> Request:
        return self.loop.submit(prompt, config, listener=listener)

    def check(self, request: Request) -> None:
        """A generation the engine had to abandon is a failure of the call, with the reason."""
        if request.finish_reason == "error":
            raise CallError("GD_E_INTERNAL", f"the model's engine failed: {self.loop.error}")
        if request.finish_reason == "cancelled":
            raise CallError("GD_E_CANCELLED", "the model was freed while this generation was running")

    @contextmanager
    def in_callback(self) -> Iterator[None]:
        me = threading.get_ident()
        self.streaming.add(me)
        try:
            yield
        finally:
            self.streaming.discard(me)

    def close(self) -> None:
        self.loop.close()
        self.runtime.close()


def c_entry(method: Callable[..., None]) -> Callable[..., int]:
    """Run an implementation and return its gd_status: GD_OK, or the failure's, with the message recorded."""

    @functools.wraps(method)
    def entry(self: CApi, *args: Any) -> int:
        try:
            method(self, *args)
            return self.lib.GD_OK
        except CallError as failure:
            return self.fail(failure.status, str(failure))
        except GptDeployError as error:
            return self.fail(status_of(error), str(error))
        except Exception as error:
            logger.exception("the C API hit a bug")
            return self.fail("GD_E_INTERNAL", f"internal error, please report it: {type(error).__name__}: {error}")

    return entry


class CApi:
    """The gdpy_* functions shim.c calls, over the live models (keyed by their handle's address)."""

    def __init__(self, ffi: Any, lib: Any):
        self.ffi, self.lib = ffi, lib
        self.models: dict[int, tuple[Any, Model]] = {}  # address -> (the cffi handle that keeps it alive, model)

    def fail(self, status: str, message: str) -> int:
        data = message.replace("\n", " ").encode("utf-8")[:MESSAGE_BYTES]
        self.lib.gd__set_error(data.decode("utf-8", "ignore").encode("utf-8"))  # never cut inside a character
        return getattr(self.lib, status)

    # --- argument checks -------------------------------------------------------------------------------------

    def require(self, pointer: Any, name: str) -> None:
        if pointer == self.ffi.NULL:
            raise CallError("GD_E_NULL_ARGUMENT", f"{name} is NULL")

    def text(self, pointer: Any, name: str) -> str:
        self.require(pointer, name)
        raw = self.ffi.string(pointer)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CallError(
                "GD_E_INVALID_UTF8",
                f"{name} is not valid UTF-8: byte {error.start} (0x{raw[error.start]:02x}) is {error.reason}",
            ) from error

    def check_size(self, pointer: Any, type_name: str, name: str) -> None:
        """A struct passed in must be the version this library knows (gptdeploy.h ABI 1 has one of each)."""
        size = self.ffi.sizeof(type_name)
        if pointer.struct_size != size:
            raise CallError(
                "GD_E_VERSION",
                f"{name}->struct_size is {pointer.struct_size} but this library's {type_name} has {size} bytes; "
                f"set it to sizeof({type_name}) from this library's gptdeploy.h",
            )

    def model(self, pointer: Any) -> Model:
        self.require(pointer, "model")
        entry = self.models.get(self.address(pointer))
        if entry is None:
            raise CallError(
                "GD_E_INVALID_ARGUMENT",
                f"model {self.address(pointer):#x} is not a live handle from gd_model_load (freed already?)",
            )
        return entry[1]

    def address(self, pointer: Any) -> int:
        return int(self.ffi.cast("uintptr_t", pointer))

    def config(self, params: Any) -> GenerationConfig:
        if params == self.ffi.NULL:
            return GenerationConfig()
        self.check_size(params, "gd_generation_params", "params")
        count = params.stop_string_count
        if count and params.stop_strings == self.ffi.NULL:
            raise CallError("GD_E_NULL_ARGUMENT", f"params->stop_strings is NULL but stop_string_count is {count}")
        stops = tuple(self.text(params.stop_strings[i], f"params->stop_strings[{i}]") for i in range(count))
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repetition_penalty=params.repetition_penalty,
            seed=params.seed,
            stop_strings=stops,
            ignore_eos=bool(params.ignore_eos),
        )

    def check_buffer(self, buffer: Any, capacity: int, name: str = "buffer") -> None:
        if buffer == self.ffi.NULL and capacity:
            raise CallError("GD_E_NULL_ARGUMENT", f"{name} is NULL but its capacity is {capacity}")

    def write_text(self, text: str, buffer: Any, capacity: int, out_required: Any, what: str) -> None:
        data = text.encode("utf-8") + b"\0"
        if out_required != self.ffi.NULL:
            out_required[0] = len(data)
        if len(data) > capacity:
            if capacity:
                buffer[0] = b"\0"
            raise CallError(
                "GD_E_BUFFER_TOO_SMALL",
                f"the {what} needs {len(data)} bytes (NUL included); the buffer holds {capacity}",
            )
        self.ffi.memmove(buffer, data, len(data))

    # --- the functions of gptdeploy.h ------------------------------------------------------------------------

    @c_entry
    def generation_params_init(self, params: Any) -> None:
        self.require(params, "params")
        defaults = GenerationConfig()
        params.struct_size = self.ffi.sizeof("gd_generation_params")
        params.max_new_tokens = defaults.max_new_tokens
        params.temperature = defaults.temperature
        params.top_k = defaults.top_k
        params.top_p = defaults.top_p
        params.min_p = defaults.min_p
        params.repetition_penalty = defaults.repetition_penalty
        params.seed = defaults.seed
        params.stop_strings = self.ffi.NULL
        params.stop_string_count = 0
        params.ignore_eos = int(defaults.ignore_eos)

    @c_entry
    def model_load(self, path: Any, options: Any, out_model: Any) -> None:
        self.require(out_model, "out_model")
        self.require(path, "path")
        raw = self.ffi.string(path)
        if not raw:
            raise CallError("GD_E_INVALID_ARGUMENT", "path is empty")
        folder = Path(os.fsdecode(raw))
        if not folder.exists():
            raise CallError(
                "GD_E_NOT_FOUND",
                f"model folder {folder} does not exist; pass the folder `gptdeploy export` (or `gptdeploy train`) "
                "wrote",
            )
        if not folder.is_dir():
            raise CallError("GD_E_BAD_MODEL", f"{folder} is a file; pass the bundle or checkpoint folder")
        settings = {}
        if options != self.ffi.NULL:
            self.check_size(options, "gd_load_options", "options")
            for name in LOAD_OPTIONS:
                if getattr(options, name) != self.ffi.NULL:
                    settings[name] = self.text(getattr(options, name), f"options->{name}")
        model = Model(load_runtime(folder, max_slots=MODEL_SLOTS, **settings))
        handle = self.ffi.new_handle(model)
        self.models[self.address(handle)] = (handle, model)
        out_model[0] = self.ffi.cast("gd_model *", handle)
        info = model.runtime.info
        logger.info("C API: loaded %s on %s/%s (%s)", folder, info.backend, info.device, info.precision)

    def model_free(self, pointer: Any) -> None:
        """gd_model_free returns nothing: a refusal only leaves its message in gd_last_error()."""
        self.free(pointer)

    @c_entry
    def free(self, pointer: Any) -> None:
        entry = self.models.pop(self.address(pointer), None)
        if entry is None:  # freed already: ignored, as gptdeploy.h promises
            return
        model = entry[1]
        if threading.get_ident() in model.streaming:
            self.models[self.address(pointer)] = entry
            raise CallError(
                "GD_E_BUSY",
                "gd_model_free was called from the model's own stream callback; free it after "
                "gd_generate_stream returns",
            )
        model.close()

    @c_entry
    def tokenize(self, model: Any, text: Any, tokens: Any, capacity: int, out_count: Any) -> None:
        opened, string = self.model(model), self.text(text, "text")
        self.require(out_count, "out_count")
        self.check_buffer(tokens, capacity, "tokens")
        ids = opened.runtime.tokenizer.encode(string)
        out_count[0] = len(ids)
        if len(ids) > capacity:
            raise CallError("GD_E_BUFFER_TOO_SMALL", f"the text has {len(ids)} tokens; the array holds {capacity}")
        if ids:
            tokens[0 : len(ids)] = ids

    @c_entry
    def detokenize(self, model: Any, tokens: Any, count: int, buffer: Any, capacity: int, out_required: Any) -> None:
        opened = self.model(model)
        if count:
            self.require(tokens, "tokens")
        self.check_buffer(buffer, capacity)
        ids = self.ffi.unpack(tokens, count) if count else []
        vocab = opened.runtime.tokenizer.vocab_size
        bad = next((i for i, token in enumerate(ids) if not 0 <= token < vocab), None)
        if bad is not None:
            raise CallError(
                "GD_E_INVALID_ARGUMENT", f"tokens[{bad}] is {ids[bad]}, outside the vocabulary [0, {vocab})"
            )
        self.write_text(opened.runtime.tokenizer.decode(ids), buffer, capacity, out_required, "text")

    @c_entry
    def generate(self, model: Any, prompt: Any, params: Any, buffer: Any, capacity: int, out_required: Any,
                 info: Any) -> None:  # fmt: skip
        opened, text, config = self.model(model), self.text(prompt, "prompt"), self.config(params)
        self.check_buffer(buffer, capacity)
        if info != self.ffi.NULL:
            self.check_size(info, "gd_generation_info", "info")
        request = opened.run(text, config)
        request.finished.wait()
        opened.check(request)
        result = request.result()
        self.write_text(result.text, buffer, capacity, out_required, "completion")
        if info != self.ffi.NULL:
            info.finish_reason = getattr(self.lib, FINISH_REASONS[result.finish_reason])
            info.prompt_tokens = result.prompt_tokens
            info.generated_tokens = len(result.tokens)
            info.prefill_seconds = result.prefill_seconds
            info.decode_seconds = result.decode_seconds

    @c_entry
    def generate_stream(self, model: Any, prompt: Any, params: Any, callback: Any, user_data: Any) -> None:
        opened, text, config = self.model(model), self.text(prompt, "prompt"), self.config(params)
        self.require(callback, "callback")
        texts: queue.SimpleQueue[str | None] = queue.SimpleQueue()  # the text so far after each step; None: done
        request = opened.run(text, config, lambda r: texts.put(None if r.done else r.stable_text()))
        emitted, count = 0, 0
        while True:
            latest = texts.get()
            latest = request.text() if latest is None else latest
            if len(latest) > emitted:
                data = latest[emitted:].encode("utf-8")  # a bytes object's buffer is NUL-terminated; cffi passes it
                emitted, count = len(latest), count + 1
                with opened.in_callback():
                    stop = self.lib.gd__call_stream_callback(callback, data, len(data), user_data)
                if stop:
                    opened.loop.cancel(request)
                    request.finished.wait()
                    raise CallError("GD_E_CANCELLED", f"the stream callback cancelled the generation after {count} "
                                                      "pieces")  # fmt: skip
            if request.done and latest == request.text():
                break
        opened.check(request)


def install(ffi: Any, lib: Any) -> CApi:
    """Attach the implementations to the library's gdpy_* functions (called once, by the library's init code)."""
    api = CApi(ffi, lib)
    for name in ("generation_params_init", "model_load", "tokenize", "detokenize", "generate", "generate_stream"):
        ffi.def_extern(name=f"gdpy_{name}", error=lib.GD_E_INTERNAL)(getattr(api, name))
    ffi.def_extern(name="gdpy_model_free")(api.model_free)
    return api
