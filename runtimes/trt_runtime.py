"""The TensorRT backend: a bundle's engine behind the `Runtime` protocol, on the name-based TensorRT 10/11 API.

The KV cache stays on the GPU in two buffers per cache tensor, allocated once with a region per slot. A step of a
slot reads its past from its region of one buffer and the engine writes the present (past + new tokens, contiguous)
into its region of the other, then that slot's two swap: the present of one step is laid out exactly as the next
step's past, so decoding copies nothing through the host. Prompts run on the engine's prefill profile and single
tokens on its decode profile (profile order is the builder's contract). Only the logits the caller needs come back.

The engines are built from the exported graph, whose cache grows by concatenation, so each slot runs on its own
(`batched_decode` is False): the engine above still interleaves requests, one slot per call. TensorRT 10.15 and 11
also offer an in-place cache (`INetworkDefinition.add_kv_cache_update`: an IKVCacheUpdateLayer writes each row's
new keys at its own write index into a network input it aliases as an output), which would let one engine decode
every slot in one call like the ONNX Runtime slot graph does. It needs a network built through that API (or an
ONNX parser that maps opset-24 TensorScatter to it) and a GPU to check parity on; neither is available where this
was written, so it is not used.

CUDA memory and the stream come from torch.cuda or cuda-python, whichever is installed. The module imports
without TensorRT; opening an engine without it raises a `BackendError` that says how to install it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptdeploy.bundle import Artifact, Bundle
from gptdeploy.config import GPTConfig
from gptdeploy.encoder import EncoderInfo
from gptdeploy.errors import BackendError
from gptdeploy.graph_contract import (
    ATTENTION_MASK,
    CLASS_SCORES,
    INPUT_IDS,
    LOGITS,
    TOKEN_INPUTS,
    encoder_input_names,
    encoder_output_names,
    input_names,
    output_names,
    past_names,
    present_names,
)
from gptdeploy.runtimes.base import DEFAULT_SLOTS, RuntimeInfo, SlotRuntime
from gptdeploy.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

TRT_MISSING = "TensorRT is not installed; pip install 'gptdeploy[gpu]'"
CUDA_MISSING = "TensorRT needs torch with CUDA or cuda-python to manage GPU memory; pip install cuda-python"
PREFILL, DECODE = 0, 1  # optimization profile indices, in the order the engine builder adds them


def import_tensorrt():
    """The tensorrt module, or a clear error: callers never see a bare ImportError."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendError(TRT_MISSING) from error
    return tensorrt


def rebuild_command(bundle: str | Path, source: str, recipe: dict) -> str:
    """The command that rebuilds an engine like this one (made from `source` with the build `recipe`) here."""
    return f"gptdeploy build-engine {bundle} --from {source} --max-seq {recipe.get('max_seq')} --force"


def check_engine_compatible(recipe: dict, trt_version: str, gpu: str, compute_capability: str, fix: str) -> None:
    """Refuse an engine built by another TensorRT or for another GPU architecture: it cannot deserialize, or
    runs kernels chosen for a different chip. `recipe` is what the build recorded; `fix` rebuilds it here."""
    built_with = recipe.get("tensorrt_version")
    if built_with != trt_version:
        raise BackendError(f"the engine was built with TensorRT {built_with}, this machine has {trt_version}; "
                           f"rebuild it here: {fix}")  # fmt: skip
    built_for = recipe.get("compute_capability")
    if built_for != compute_capability:
        raise BackendError(f"the engine was built for {recipe.get('gpu')} (compute capability {built_for}), this "
                           f"GPU is {gpu} ({compute_capability}); rebuild it here: {fix}")  # fmt: skip
    if recipe.get("gpu") != gpu:
        logger.warning("engine built on %s, running on %s (same compute capability %s)", recipe.get("gpu"), gpu,
                       compute_capability)  # fmt: skip


@dataclass(frozen=True)
class BufferPlan:
    """Device memory one runtime allocates up front, in bytes."""

    kv_region: int  # one slot's past or present of one cache tensor: (kv_heads, max_len, head_dim)
    kv_tensor: int  # one past or present buffer: a region per slot
    kv_total: int  # two buffers (read/write) for each key and value of each layer
    ids: int  # one of input_ids / attention_mask / position_ids at (1, max_len)


def buffer_plan(config: GPTConfig, slots: int, max_len: int, kv_itemsize: int, id_itemsize: int) -> BufferPlan:
    region = config.kv_heads * max_len * config.head_dim * kv_itemsize
    return BufferPlan(region, slots * region, 2 * 2 * config.n_layer * slots * region, max_len * id_itemsize)


def profile_for(cached: int) -> int:
    """The profile a step runs on: prefill for an empty cache, decode (one token per row) on top of a cache."""
    return PREFILL if cached == 0 else DECODE


class TrtRuntime(SlotRuntime):
    def __init__(
        self,
        engine_path: str | Path,
        config: GPTConfig,
        tokenizer: Tokenizer | None,
        device: str = "cuda",
        precision: str = "fp32",
        max_slots: int = DEFAULT_SLOTS,
        recipe: dict | None = None,
        rebuild: str = "gptdeploy build-engine BUNDLE",
    ):
        """Open an engine file; with its build `recipe`, only after checking it was built for this TensorRT and GPU
        (`rebuild` is the command the refusal suggests)."""
        super().__init__(max_slots)
        trt = import_tensorrt()
        self.config, self.tokenizer = config, tokenizer
        self.past_names, self.present_names = past_names(config.n_layer), present_names(config.n_layer)
        self.gpu = cuda_device(device)
        if recipe is not None:
            check_engine_compatible(recipe, trt.__version__, self.gpu.name, self.gpu.compute_capability, rebuild)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {engine_path}; rebuild it: {rebuild}")
        self._check_io()
        self.context = self.engine.create_execution_context()
        self.dtypes = {name: np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                       for name in input_names(config.n_layer) + output_names(config.n_layer)}  # fmt: skip
        _, _, mask_max = self.engine.get_tensor_profile_shape(ATTENTION_MASK, DECODE)
        self.max_len = int(mask_max[1])
        self.info = RuntimeInfo("tensorrt", precision, self.gpu.name_for_info, config.vocab_size,
                                min(config.block_size, self.max_len), max_slots, False)  # fmt: skip
        plan = buffer_plan(config, max_slots, self.max_len, self.dtypes[self.past_names[0]].itemsize, 8)
        logger.info("allocating %.1f MiB of KV cache on %s", plan.kv_total / 2**20, self.gpu.name_for_info)
        self.region = plan.kv_region
        self.kv = [[self.gpu.alloc(plan.kv_tensor) for _ in self.past_names] for _ in range(2)]  # [read/write][tensor]
        self.ids = {name: self.gpu.alloc(plan.ids) for name in TOKEN_INPUTS}
        self.logits = self.gpu.alloc(0)
        self.read = np.zeros(max_slots, dtype=np.int64)  # which buffer holds each slot's past
        self.profile = -1

    def _check_io(self) -> None:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        missing = sorted(set(input_names(self.config.n_layer) + output_names(self.config.n_layer)) - set(names))
        if missing or self.engine.num_optimization_profiles < 2:
            raise BackendError(f"the engine lacks tensors {missing} or its prefill/decode profiles "
                               f"({self.engine.num_optimization_profiles} profiles); rebuild it")  # fmt: skip

    def cache_pointers(self) -> list[int]:
        """Where the KV cache lives: two buffers per cache tensor, allocated once."""
        return [buffer.ptr for pair in self.kv for buffer in pair]

    def _prefill(self, slot: int, tokens: np.ndarray, start: int, all_logits: bool) -> np.ndarray:
        if start == 0:
            logits = self._step(slot, tokens, 0, all_logits)
            return logits if all_logits else logits[-1]
        steps = [self._step(slot, tokens[t : t + 1], start + t, True) for t in range(len(tokens))]  # decode profile
        logits = np.concatenate(steps)
        return logits if all_logits else logits[-1]

    def _decode(self, slots: np.ndarray, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.stack([self._step(int(slot), tokens[i : i + 1], int(starts[i]), False)[-1]
                         for i, slot in enumerate(slots)])  # fmt: skip

    def _free(self, slot: int) -> None:
        self.read[slot] = 0

    def _step(self, slot: int, ids: np.ndarray, cached: int, all_logits: bool) -> np.ndarray:
        """Run `ids` (T,) on top of the slot's `cached` tokens; logits (T, vocab) with all_logits, else (1, vocab)."""
        c, T = self.config, len(ids)
        profile = profile_for(cached)
        if profile != self.profile:
            if not self.context.set_optimization_profile_async(profile, self.gpu.stream_handle):
                raise BackendError(f"TensorRT refused optimization profile {profile}")
            self.profile = profile
        mask = np.ones((1, cached + T), dtype=np.int64)
        positions = np.arange(cached, cached + T, dtype=np.int64)[None]
        for name, array in zip(TOKEN_INPUTS, (ids[None], mask, positions), strict=True):
            array = np.ascontiguousarray(array, dtype=self.dtypes[name])
            self.gpu.upload(self.ids[name], array)
            self._bind(name, self.ids[name], 0, array.shape)
        offset, read = slot * self.region, int(self.read[slot])
        for i, name in enumerate(self.past_names):
            self._bind(name, self.kv[read][i], offset, (1, c.kv_heads, cached, c.head_dim))
        for i, name in enumerate(self.present_names):
            self._bind(name, self.kv[1 - read][i], offset)
        logits_dtype = self.dtypes[LOGITS]
        row = c.vocab_size * logits_dtype.itemsize
        if self.logits.nbytes < T * row:
            self.gpu.release(self.logits)
            self.logits = self.gpu.alloc(T * row)
        self._bind(LOGITS, self.logits, 0)
        if not self.context.execute_async_v3(self.gpu.stream_handle):
            raise BackendError("TensorRT failed to run the engine (see its log above)")
        self.read[slot] = 1 - read
        first = 0 if all_logits else T - 1
        raw = self.gpu.download(self.logits, first * row, (T - first) * row, (T - first) * row, 1)
        return raw.view(logits_dtype).reshape(T - first, c.vocab_size).astype(np.float32)

    def _bind(self, name: str, buffer: DeviceBuffer, offset: int, shape: tuple[int, ...] | None = None) -> None:
        if shape is not None and not self.context.set_input_shape(name, shape):
            raise BackendError(f"shape {shape} of {name!r} is outside the engine's profiles; rebuild it with a "
                               "larger --max-seq")  # fmt: skip
        if not self.context.set_tensor_address(name, buffer.ptr + offset):
            raise BackendError(f"TensorRT refused the buffer for {name!r}")

    def close(self) -> None:
        if self.engine is None:
            return
        self.gpu.synchronize()
        self.context = self.engine = None
        self.kv, self.ids, self.logits = [], {}, None
        self.gpu.close()


def from_artifact(bundle: Bundle, artifact: Artifact, tokenizer: Tokenizer, device: str | None,
                  max_slots: int) -> TrtRuntime:  # fmt: skip
    """An engine of the bundle, checked against this machine's TensorRT and GPU once its build is recorded."""
    details = artifact.details
    recipe = details.recipe if details is not None else None
    rebuild = rebuild_command(bundle.path, details.source, details.recipe) if details is not None else ""
    return TrtRuntime(bundle.file(artifact.path), bundle.config, tokenizer, device or "cuda", artifact.precision,
                      max_slots, recipe, rebuild)  # fmt: skip


class TrtEncoder:
    """An encoder engine (built from the encoder graph, one optimization profile): a batch of right-padded texts per
    call, inputs uploaded, token logits (and class scores) downloaded; no cache. Name-based TensorRT 10/11 API."""

    def __init__(self, engine_path: str | Path, config: GPTConfig, tokenizer: Tokenizer, labels: list[str],
                 device: str = "cuda", precision: str = "fp32", recipe: dict | None = None,
                 rebuild: str = "gptdeploy build-engine BUNDLE"):  # fmt: skip
        trt = import_tensorrt()
        self.config, self.tokenizer = config, tokenizer
        self.gpu = cuda_device(device)
        if recipe is not None:
            check_engine_compatible(recipe, trt.__version__, self.gpu.name, self.gpu.compute_capability, rebuild)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            Path(engine_path).read_bytes()
        )
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {engine_path}; rebuild it: {rebuild}")
        self.outputs = encoder_output_names(config.num_labels)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted(encoder_input_names() + self.outputs):
            raise BackendError(f"the engine's tensors {names} are not gptdeploy's encoder IO; rebuild it: {rebuild}")
        self.context = self.engine.create_execution_context()
        self.dtypes = {name: np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))) for name in names}
        _, _, high = self.engine.get_tensor_profile_shape(INPUT_IDS, 0)
        self.max_batch, max_len = int(high[0]), int(high[1])
        self.info = EncoderInfo("tensorrt", precision, self.gpu.name_for_info, min(config.block_size, max_len),
                                list(labels))  # fmt: skip
        self.buffers: dict[str, DeviceBuffer] = {}

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """A batch larger than the engine's profile runs in chunks of the most it takes."""
        if len(input_ids) > self.max_batch:
            parts = [self.run(input_ids[i : i + self.max_batch], attention_mask[i : i + self.max_batch])
                     for i in range(0, len(input_ids), self.max_batch)]  # fmt: skip
            return {name: np.concatenate([part[name] for part in parts]) for name in self.outputs}
        B, T = input_ids.shape
        for name, array in ((INPUT_IDS, input_ids), (ATTENTION_MASK, attention_mask)):
            array = np.ascontiguousarray(array, dtype=self.dtypes[name])
            self.gpu.upload(self._buffer(name, array.nbytes), array)
            if not self.context.set_input_shape(name, array.shape):
                raise BackendError(f"shape {array.shape} of {name!r} is outside the engine's profile; rebuild it "
                                   "with a larger --max-seq")  # fmt: skip
        shapes = {LOGITS: (B, T, self.config.vocab_size), CLASS_SCORES: (B, self.config.num_labels)}
        for name in (INPUT_IDS, ATTENTION_MASK, *self.outputs):
            nbytes = int(np.prod(shapes[name])) * self.dtypes[name].itemsize if name in shapes else 0
            buffer = self._buffer(name, nbytes) if name in shapes else self.buffers[name]
            if not self.context.set_tensor_address(name, buffer.ptr):
                raise BackendError(f"TensorRT refused the buffer for {name!r}")
        if not self.context.execute_async_v3(self.gpu.stream_handle):
            raise BackendError("TensorRT failed to run the engine (see its log above)")
        results = {}
        for name in self.outputs:
            size = int(np.prod(shapes[name])) * self.dtypes[name].itemsize
            raw = self.gpu.download(self.buffers[name], 0, size, size, 1)
            results[name] = raw.view(self.dtypes[name]).reshape(shapes[name]).astype(np.float32)
        return results

    def _buffer(self, name: str, nbytes: int) -> DeviceBuffer:
        """The device buffer of a tensor, grown (never shrunk) to hold `nbytes`."""
        buffer = self.buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                self.gpu.release(buffer)
            buffer = self.buffers[name] = self.gpu.alloc(nbytes)
        return buffer

    def close(self) -> None:
        if self.engine is None:
            return
        self.gpu.synchronize()
        for buffer in self.buffers.values():
            self.gpu.release(buffer)
        self.context = self.engine = None
        self.buffers = {}
        self.gpu.close()

    def __enter__(self) -> TrtEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encoder_from_artifact(bundle: Bundle, artifact: Artifact, tokenizer: Tokenizer, device: str | None) -> TrtEncoder:
    details = artifact.details
    recipe = details.recipe if details is not None else None
    rebuild = rebuild_command(bundle.path, details.source, details.recipe) if details is not None else ""
    labels = bundle.manifest["reference"].get("labels") or []
    return TrtEncoder(bundle.file(artifact.path), bundle.config, tokenizer, labels, device or "cuda",
                      artifact.precision, recipe, rebuild)  # fmt: skip


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    handle: object = None  # what keeps the memory alive (a torch tensor), if anything


def cuda_device(device: str = "cuda"):
    """GPU memory and a stream on `device` ('cuda' or 'cuda:N'): through torch.cuda when torch sees a GPU, else
    through cuda-python."""
    if device != "cuda" and not device.startswith("cuda:"):
        raise BackendError(f"TensorRT runs on CUDA GPUs: device must be cuda or cuda:N, got {device!r}")
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchCuda(index)
    except ImportError:
        pass
    try:
        return _CudaPython(index)
    except ImportError as error:
        raise BackendError(CUDA_MISSING) from error


class _TorchCuda:
    """Device memory as torch uint8 tensors; every copy is queued on one stream that TensorRT also runs on."""

    def __init__(self, index: int):
        import torch

        self.torch = torch
        self.device = torch.device("cuda", index)
        self.stream = torch.cuda.Stream(self.device)
        self.stream_handle = self.stream.cuda_stream
        self.name = torch.cuda.get_device_name(self.device)
        self.compute_capability = "{}.{}".format(*torch.cuda.get_device_capability(self.device))
        self.name_for_info = f"cuda:{index}"

    def alloc(self, nbytes: int) -> DeviceBuffer:
        with self.torch.cuda.stream(self.stream):  # the caching allocator then ties the block to our stream
            tensor = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device=self.device)
        return DeviceBuffer(tensor.data_ptr(), nbytes, tensor)

    def release(self, buffer: DeviceBuffer) -> None:
        buffer.handle = None  # the caching allocator reuses the memory once the tensor is gone

    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        source = self.torch.from_numpy(array.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            buffer.handle[: source.numel()].copy_(source)

    def download(self, buffer: DeviceBuffer, offset: int, width: int, pitch: int, rows: int) -> np.ndarray:
        """`rows` rows of `width` bytes, `pitch` bytes apart from `offset`, as one contiguous host array."""
        with self.torch.cuda.stream(self.stream):
            rows_view = self.torch.as_strided(buffer.handle, (rows, width), (pitch, 1), offset)
            host = rows_view.to("cpu")
        self.stream.synchronize()
        return host.numpy().reshape(-1)

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        with self.torch.cuda.stream(self.stream):
            dst.handle[dst_offset : dst_offset + nbytes].copy_(src.handle[src_offset : src_offset + nbytes])

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.synchronize()


class _CudaPython:
    """Device memory through the CUDA runtime bindings of cuda-python (Jetson images often lack a CUDA torch)."""

    def __init__(self, index: int):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python before 12.6
        self.cudart = cudart
        self._call(cudart.cudaSetDevice(index))
        self.stream = self._call(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)
        props = self._call(cudart.cudaGetDeviceProperties(index))
        self.name = props.name.decode(errors="replace").rstrip("\x00")
        self.compute_capability = f"{props.major}.{props.minor}"
        self.name_for_info = f"cuda:{index}"
        self.allocations: list[int] = []

    def _call(self, result):
        error, *values = result
        if error != self.cudart.cudaError_t.cudaSuccess:
            message = self.cudart.cudaGetErrorString(error)[1].decode(errors="replace")
            raise BackendError(f"CUDA error {error.name}: {message}")
        return values[0] if len(values) == 1 else values

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = int(self._call(self.cudart.cudaMalloc(max(nbytes, 1))))
        self.allocations.append(ptr)
        return DeviceBuffer(ptr, nbytes)

    def release(self, buffer: DeviceBuffer) -> None:
        if buffer.ptr in self.allocations:
            self.allocations.remove(buffer.ptr)
            self._call(self.cudart.cudaFree(buffer.ptr))

    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        """A synchronous copy from pageable memory: the legacy default stream orders it after our stream's work."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.cudart.cudaMemcpy(buffer.ptr, array.ctypes.data, array.nbytes, kind))

    def download(self, buffer: DeviceBuffer, offset: int, width: int, pitch: int, rows: int) -> np.ndarray:
        self.synchronize()
        host = np.empty(rows * width, dtype=np.uint8)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.cudart.cudaMemcpy2D(host.ctypes.data, width, buffer.ptr + offset, pitch, width, rows, kind))
        return host

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._call(self.cudart.cudaMemcpyAsync(dst.ptr + dst_offset, src.ptr + src_offset, nbytes, kind,
                                               self.stream))  # fmt: skip

    def synchronize(self) -> None:
        self._call(self.cudart.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        self.synchronize()
        for ptr in self.allocations:
            self._call(self.cudart.cudaFree(ptr))
        self.allocations = []
        self._call(self.cudart.cudaStreamDestroy(self.stream))
