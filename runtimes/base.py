"""The `Runtime` protocol every backend implements, the bookkeeping they share, and `load_runtime`.

A runtime owns its KV cache and knows nothing about sampling, stopping or text: `reset(batch)`, then `forward`
appends tokens and returns logits. Everything above it (generate, stream, the C API) is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from gptdeploy.bundle import MANIFEST_FILE, Artifact, Bundle, load_bundle
from gptdeploy.checkpoint import CONFIG_FILE
from gptdeploy.errors import BackendError, ContextOverflowError, GenerationError
from gptdeploy.tokenizer import TOKENIZER_FILE, Tokenizer

BACKENDS = ("torch", "onnxruntime", "tensorrt")
INSTALL_HINTS = {
    "torch": "pip install torch (see pytorch.org for the build that suits your machine)",
    "onnxruntime": "pip install 'gptdeploy[cpu]' (or 'gptdeploy[gpu]' for CUDA)",
    "tensorrt": "pip install 'gptdeploy[gpu]' on a machine with an NVIDIA GPU",
}


@dataclass(frozen=True)
class RuntimeInfo:
    backend: str  # torch | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8 | ...
    device: str  # cpu, cuda:0, ...
    vocab_size: int
    max_seq_len: int  # cached + new tokens may not exceed this
    max_batch_size: int


@runtime_checkable
class Runtime(Protocol):
    info: RuntimeInfo
    tokenizer: Tokenizer | None  # None for token-level callers (benchmarks, tests); generate() needs one

    def reset(self, batch_size: int) -> None:
        """Empty the KV cache and size it for `batch_size` rows."""

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, all_logits: bool = False) -> np.ndarray:
        """Append (B, T) tokens to the cache; attention_mask (B, cached + T) marks real tokens (0 = left padding).

        Returns float32 logits (B, vocab) of the last position, or (B, T, vocab) with all_logits.
        Raises ContextOverflowError past info.max_seq_len.
        """

    def keep_rows(self, rows: np.ndarray) -> None:
        """Keep only these rows of the batch (finished rows stop costing compute)."""

    def close(self) -> None: ...

    def __enter__(self) -> Runtime: ...

    def __exit__(self, *exc_info: object) -> None: ...


class CachedRuntime:
    """Bookkeeping shared by every backend: cache length, batch size, input checks, context-manager protocol.

    Subclasses implement `_reset`, `_forward` and `_keep_rows` on their own cache storage.
    """

    info: RuntimeInfo
    tokenizer: Tokenizer | None

    def __init__(self) -> None:
        self.batch_size = 0
        self.length = 0  # tokens cached per row (padding included)

    def reset(self, batch_size: int) -> None:
        if not 1 <= batch_size <= self.info.max_batch_size:
            raise GenerationError(f"batch size must be in 1..{self.info.max_batch_size}, got {batch_size}")
        self._reset(batch_size)
        self.batch_size, self.length = batch_size, 0

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, all_logits: bool = False) -> np.ndarray:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        if self.batch_size == 0:
            raise GenerationError("call reset(batch_size) before forward")
        if input_ids.ndim != 2 or input_ids.shape[0] != self.batch_size or input_ids.shape[1] == 0:
            raise GenerationError(f"input_ids must be (batch={self.batch_size}, tokens>0), got {input_ids.shape}")
        new_length = self.length + input_ids.shape[1]
        if attention_mask.shape != (self.batch_size, new_length):
            raise GenerationError(
                f"attention_mask must be (batch, cached + new) = {(self.batch_size, new_length)}, "
                f"got {attention_mask.shape}"
            )
        if new_length > self.info.max_seq_len:
            raise ContextOverflowError(
                f"{new_length} tokens exceed the model's context of {self.info.max_seq_len} "
                f"({self.length} cached + {input_ids.shape[1]} new)"
            )
        if input_ids.min() < 0 or input_ids.max() >= self.info.vocab_size:
            raise GenerationError(f"token ids must be in [0, {self.info.vocab_size}), got {input_ids.min()}..")
        logits = self._forward(input_ids, attention_mask, all_logits)
        self.length = new_length
        return logits

    def keep_rows(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0 or rows.min() < 0 or rows.max() >= self.batch_size:
            raise GenerationError(f"rows to keep must be indices into the batch of {self.batch_size}, got {rows}")
        self._keep_rows(rows)
        self.batch_size = len(rows)

    def close(self) -> None:
        """Release backend resources; the default holds nothing that outlives garbage collection."""

    def __enter__(self) -> CachedRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _reset(self, batch_size: int) -> None:
        raise NotImplementedError

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, all_logits: bool) -> np.ndarray:
        raise NotImplementedError

    def _keep_rows(self, rows: np.ndarray) -> None:
        raise NotImplementedError


BACKEND_OF_KIND = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}  # artifact kind -> the backend that runs it


def load_runtime(
    path: str | Path,
    backend: str = "auto",
    device: str | None = None,
    precision: str = "fp32",
    max_batch_size: int = 64,
    artifact: str | None = None,
) -> Runtime:
    """Open the model folder at `path`: a checkpoint runs on torch, a bundle's artifact on the backend of its kind.

    In a bundle, `artifact` names the graph or engine to run; without it, the first artifact of `precision` that
    `backend` runs ('auto': the first of `precision`, an fp32 ONNX graph by default). `device` None means the
    backend's default: cpu, or cuda for TensorRT.
    """
    path = Path(path)
    if not path.is_dir():
        raise BackendError(f"model folder {path} does not exist")
    if backend not in ("auto", *BACKENDS):
        raise BackendError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if not (path / MANIFEST_FILE).is_file():
        if not (path / CONFIG_FILE).is_file():
            raise BackendError(f"{path} is neither a gptdeploy checkpoint ({CONFIG_FILE}) nor a bundle "
                               f"({MANIFEST_FILE})")  # fmt: skip
        if backend not in ("auto", "torch"):
            raise BackendError(f"{path} is a checkpoint, not a bundle: {backend} runs the graphs and engines of a "
                               "bundle; export it with `gptdeploy export`")  # fmt: skip
        if artifact is not None:
            raise BackendError(f"{path} is not a bundle: --artifact only applies to bundles")
        TorchRuntime = _backend_class("torch")
        return TorchRuntime.load(path, device=device or "cpu", precision=precision, max_batch_size=max_batch_size)
    if backend == "torch":
        raise BackendError(f"{path} is a bundle: torch runs checkpoints; pick --backend onnxruntime or tensorrt")
    bundle = load_bundle(path)
    kind = None if backend == "auto" else next(k for k, b in BACKEND_OF_KIND.items() if b == backend)
    return open_artifact(bundle, bundle.runnable(kind, precision, artifact), device, max_batch_size)


def open_artifact(bundle: Bundle, artifact: Artifact, device: str | None = None, max_batch_size: int = 64) -> Runtime:
    """A runtime on one artifact of a bundle, registered or still being judged by a stage: the backend of its kind."""
    if artifact.kind not in BACKEND_OF_KIND:
        raise BackendError(f"artifact {artifact.name!r} is of kind {artifact.kind!r}, which no backend runs")
    runtime_class = _backend_class(BACKEND_OF_KIND[artifact.kind])
    tokenizer = Tokenizer.load(bundle.file(TOKENIZER_FILE))
    return runtime_class.from_artifact(bundle, artifact, tokenizer, device, max_batch_size)


def _backend_class(backend: str) -> type:
    """The runtime class of a backend, imported only now: each needs its own heavy library."""
    try:
        if backend == "torch":
            from gptdeploy.runtimes.torch_runtime import TorchRuntime

            return TorchRuntime
        if backend == "onnxruntime":
            from gptdeploy.runtimes.ort_runtime import OrtRuntime

            return OrtRuntime
        from gptdeploy.runtimes.trt_runtime import TrtRuntime

        return TrtRuntime
    except ModuleNotFoundError as error:
        if error.name not in ("torch", "onnxruntime", "tensorrt"):
            raise
        raise BackendError(f"backend {backend!r} needs {error.name}: {INSTALL_HINTS[backend]}") from error
