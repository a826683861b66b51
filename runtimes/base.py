"""The `Runtime` protocol every backend implements, the bookkeeping they share, and `load_runtime`.

A runtime owns its KV cache as `max_slots` slots, each holding one sequence from position 0 with its own length,
in memory allocated once. It knows nothing about sampling, stopping, text or scheduling: `prefill` appends tokens
(a prompt or a chunk of one) to a slot, `decode` appends one token to each of a set of slots, `free` gives a slot
back. Everything above it (the engine, generate, stream, the C API, the server) is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from gptdeploy.bundle import MANIFEST_FILE, Artifact, Bundle, load_bundle
from gptdeploy.checkpoint import CONFIG_FILE
from gptdeploy.config import GPTConfig
from gptdeploy.encoder import Encoder
from gptdeploy.errors import BackendError, ContextOverflowError, GenerationError
from gptdeploy.resources import require_memory
from gptdeploy.tokenizer import TOKENIZER_FILE, Tokenizer
from gptdeploy.validation import checked_arguments

BACKENDS = ("torch", "onnxruntime", "tensorrt")
INSTALL_HINTS = {
    "torch": "pip install 'gptdeploy[train]' (pick the torch build that suits your machine first, see pytorch.org)",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for CUDA)",
    "tensorrt": "pip install 'gptdeploy[gpu]' on an x86-64 or SBSA machine with an NVIDIA GPU; on a Jetson use the "
    "TensorRT that JetPack installs (apt), never pip",
}
DEFAULT_SLOTS = 8


@dataclass(frozen=True)
class RuntimeInfo:
    backend: str  # torch | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8 | ...
    device: str  # cpu, cuda:0, ...
    vocab_size: int
    max_seq_len: int  # tokens one slot holds
    max_slots: int  # sequences held at once
    batched_decode: bool  # decode() of several slots is one pass of the model (else one pass per slot)


@runtime_checkable
class Runtime(Protocol):
    info: RuntimeInfo
    tokenizer: Tokenizer | None  # None for token-level callers (benchmarks, tests); generate() needs one

    def prefill(self, slot: int, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append tokens to the slot (a prompt, or the next chunk of one) while other slots keep theirs.

        Returns float32 logits (vocab,) of the last appended position, or (T, vocab) of every one with all_logits.
        Raises ContextOverflowError past info.max_seq_len.
        """

    def decode(self, slots: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """Append tokens[i] to slots[i] (each already holds tokens); float32 logits (len(slots), vocab)."""

    def free(self, slot: int) -> None:
        """Forget the slot's tokens; the next prefill reuses its memory."""

    def reset(self) -> None:
        """Free every slot."""

    def length(self, slot: int) -> int:
        """Tokens the slot holds."""

    def close(self) -> None: ...

    def __enter__(self) -> Runtime: ...

    def __exit__(self, *exc_info: object) -> None: ...


def check_cache_memory(config: GPTConfig, max_slots: int, bytes_per_value: int) -> None:
    """Refuse, before allocating it, a KV cache of `max_slots` full contexts larger than the memory available."""
    require_memory(config.kv_cache_bytes(max_slots, bytes_per_value), f"a KV cache of {max_slots} slots x "
                   f"{config.block_size} tokens", "use fewer slots (--max-slots)", BackendError)  # fmt: skip


class SlotRuntime:
    """Bookkeeping every backend shares: each slot's length and the checks on every call, so a backend sees only
    valid requests. Subclasses implement `_prefill`, `_decode` and `_free` on their own cache memory."""

    info: RuntimeInfo
    tokenizer: Tokenizer | None

    def __init__(self, max_slots: int) -> None:
        if max_slots < 1:
            raise GenerationError(f"max_slots must be at least 1, got {max_slots}")
        self.lengths = np.zeros(max_slots, dtype=np.int64)

    def prefill(self, slot: int, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        self._check_slot(slot)
        tokens = np.array(self._check_tokens(tokens), dtype=np.int64)
        start = int(self.lengths[slot])
        self._check_room(slot, start + len(tokens), len(tokens))
        logits = self._prefill(slot, tokens, start, all_logits)
        self.lengths[slot] = start + len(tokens)
        return logits

    def decode(self, slots: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """Checked on Python lists: a step holds a handful of slots, and numpy's per-call cost on tiny arrays added
        several percent to a small model's decode step."""
        slot_list, token_list = np.asarray(slots, dtype=np.int64).reshape(-1).tolist(), self._check_tokens(tokens)
        if len(slot_list) != len(token_list) or len(set(slot_list)) != len(slot_list):
            raise GenerationError(f"decode takes one token for each of distinct slots, got slots {slot_list} "
                                  f"and {len(token_list)} tokens")  # fmt: skip
        for slot in slot_list:
            self._check_slot(slot)
            length = int(self.lengths[slot])
            if length == 0:
                raise GenerationError(f"slot {slot} is empty: prefill it before decoding")
            self._check_room(slot, length + 1, 1)
        slots = np.array(slot_list, dtype=np.int64)
        logits = self._decode(slots, np.array(token_list, dtype=np.int64), self.lengths[slots])
        self.lengths[slots] += 1
        return logits

    def free(self, slot: int) -> None:
        self._check_slot(slot)
        self.lengths[slot] = 0
        self._free(slot)

    def reset(self) -> None:
        for slot in range(len(self.lengths)):
            self.free(slot)

    def length(self, slot: int) -> int:
        self._check_slot(slot)
        return int(self.lengths[slot])

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < len(self.lengths):
            raise GenerationError(f"slot must be in 0..{len(self.lengths) - 1}, got {slot}")

    def _check_tokens(self, tokens: Sequence[int]) -> list[int]:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1).tolist()
        if not tokens:
            raise GenerationError("no tokens to append")
        if min(tokens) < 0 or max(tokens) >= self.info.vocab_size:
            raise GenerationError(f"token ids must be in [0, {self.info.vocab_size}), got "
                                  f"{min(tokens)}..{max(tokens)}")  # fmt: skip
        return tokens

    def _check_room(self, slot: int, length: int, new: int) -> None:
        if length > self.info.max_seq_len:
            raise ContextOverflowError(f"{length} tokens exceed the model's context of {self.info.max_seq_len} "
                                       f"(slot {slot}: {length - new} cached + {new} new)")  # fmt: skip

    def close(self) -> None:
        """Release backend resources; the default holds nothing that outlives garbage collection."""

    def __enter__(self) -> SlotRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _prefill(self, slot: int, tokens: np.ndarray, start: int, all_logits: bool) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, slots: np.ndarray, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _free(self, slot: int) -> None:
        """Most backends need nothing: a slot's memory is simply written over by its next prefill."""


BACKEND_OF_KIND = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}  # artifact kind -> the backend that runs it


@checked_arguments(BackendError)
def load_runtime(
    path: str | Path,
    backend: str = "auto",
    device: str | None = None,
    precision: str = "fp32",
    max_slots: int = DEFAULT_SLOTS,
    artifact: str | None = None,
) -> Runtime:
    """Open the model folder at `path`: a checkpoint runs on torch, a bundle's artifact on the backend of its kind.

    In a bundle, `artifact` names the graph or engine to run; without it, the first artifact of `precision` that
    `backend` runs ('auto': the first of `precision`, an fp32 ONNX graph by default). `device` None means the
    backend's default: cpu, or cuda for TensorRT.
    """
    opened = _locate(path, backend, max_slots, artifact, precision)
    if isinstance(opened, Path):
        return _backend_module("torch").TorchRuntime.load(opened, device or "cpu", precision, max_slots)
    return open_artifact(*opened, device, max_slots)


@checked_arguments(BackendError)
def load_encoder(
    path: str | Path, backend: str = "auto", device: str | None = None, artifact: str | None = None
) -> Encoder:
    """Open an encoder (a model pretrained with the MLM objective, or fine-tuned from one to classify) at `path`: a
    checkpoint runs on torch, a bundle's fp32 graph (or `artifact`) on the backend of its kind."""
    opened = _locate(path, backend, 1, artifact, "fp32" if artifact is None else "auto")
    if isinstance(opened, Path):
        return _backend_module("torch").TorchEncoder.load(opened, device or "cpu")
    return open_encoder(*opened, device)


def open_encoder(bundle: Bundle, artifact: Artifact, device: str | None = None) -> Encoder:
    """An encoder on one artifact of a bundle (registered or still being judged by a stage)."""
    if bundle.config.causal:
        raise BackendError(f"{bundle.path} holds a decoder (a causal model): fill-mask and classify need an encoder "
                           "pretrained with --objective mlm")  # fmt: skip
    if artifact.kind not in BACKEND_OF_KIND:
        raise BackendError(f"artifact {artifact.name!r} is of kind {artifact.kind!r}, which no backend runs")
    backend = _backend_module(BACKEND_OF_KIND[artifact.kind])
    return backend.encoder_from_artifact(bundle, artifact, Tokenizer.load(bundle.file(TOKENIZER_FILE)), device)


def _locate(path: str | Path, backend: str, max_slots: int, artifact: str | None,
            precision: str) -> Path | tuple[Bundle, Artifact]:  # fmt: skip
    """A checkpoint folder (torch runs it), or the bundle and the artifact of it that `backend` runs."""
    path = Path(path)
    if not path.is_dir():
        raise BackendError(f"model folder {path} does not exist")
    if backend not in ("auto", *BACKENDS):
        raise BackendError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if max_slots < 1:
        raise BackendError(f"max_slots must be at least 1, got {max_slots}")
    if not (path / MANIFEST_FILE).is_file():
        if not (path / CONFIG_FILE).is_file():
            raise BackendError(f"{path} is neither a gptdeploy checkpoint ({CONFIG_FILE}) nor a bundle "
                               f"({MANIFEST_FILE})")  # fmt: skip
        if backend not in ("auto", "torch"):
            raise BackendError(f"{path} is a checkpoint, not a bundle: {backend} runs the graphs and engines of a "
                               "bundle; export it with `gptdeploy export`")  # fmt: skip
        if artifact is not None:
            raise BackendError(f"{path} is not a bundle: --artifact only applies to bundles")
        return path
    if backend == "torch":
        raise BackendError(f"{path} is a bundle: torch runs checkpoints; pick --backend onnxruntime or tensorrt")
    bundle = load_bundle(path)
    kind = None if backend == "auto" else next(k for k, b in BACKEND_OF_KIND.items() if b == backend)
    return bundle, bundle.runnable(kind, precision, artifact)


def open_artifact(
    bundle: Bundle, artifact: Artifact, device: str | None = None, max_slots: int = DEFAULT_SLOTS
) -> Runtime:
    """A runtime on one artifact of a bundle, registered or still being judged by a stage: the backend of its kind."""
    if artifact.kind not in BACKEND_OF_KIND:
        raise BackendError(f"artifact {artifact.name!r} is of kind {artifact.kind!r}, which no backend runs")
    backend = _backend_module(BACKEND_OF_KIND[artifact.kind])
    tokenizer = Tokenizer.load(bundle.file(TOKENIZER_FILE))
    return backend.from_artifact(bundle, artifact, tokenizer, device, max_slots)


def _backend_module(backend: str):
    """The module of a backend, imported only now: each needs its own heavy library."""
    try:
        if backend == "torch":
            from gptdeploy.runtimes import torch_runtime

            return torch_runtime
        if backend == "onnxruntime":
            from gptdeploy.runtimes import ort_runtime

            return ort_runtime
        from gptdeploy.runtimes import trt_runtime

        return trt_runtime
    except ModuleNotFoundError as error:
        if error.name not in ("torch", "onnxruntime", "tensorrt"):
            raise
        raise BackendError(f"backend {backend!r} needs {error.name}: {INSTALL_HINTS[backend]}") from error
