"""The ONNX Runtime backend: a bundle's decoder graph on the CPU, CUDA or TensorRT execution providers.

Two graph forms run here, told apart by their inputs (`gptdeploy/graph_contract.py`):
- the slot graph (`gptdeploy optimize --target onnxruntime`): one cache buffer per layer and key/value, allocated
  once at (max_slots, kv_heads, context, head_dim) and bound as both past and present, so GroupQueryAttention
  writes each step's keys and values in place. A decode of several slots is one call over the rows they span.
- the exported graph (past in, present out, grown by concatenation): each slot keeps its own past, and a call runs
  one slot (no batched decode). Standard ONNX, for checking and for other targets; slower for serving.

A graph that ONNX Runtime cannot load or run, or whose inputs and outputs do not match the model config it comes
with, is a `BackendError` naming the file, never ONNX Runtime's own exception.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gptdeploy.bundle import Artifact, Bundle
from gptdeploy.config import GPTConfig
from gptdeploy.encoder import EncoderInfo
from gptdeploy.errors import BackendError
from gptdeploy.graph_contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    LOGITS_TO_KEEP,
    POSITION_IDS,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
    encoder_input_names,
    encoder_output_names,
    input_names,
    output_names,
    past_names,
    present_names,
    slot_input_names,
)
from gptdeploy.runtimes.base import DEFAULT_SLOTS, RuntimeInfo, SlotRuntime, check_cache_memory
from gptdeploy.tokenizer import Tokenizer

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
CACHE_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def session_options(threads: int | None = None, spinning: bool = True) -> ort.SessionOptions:
    """Threads for one session; spinning off when ORT shares the cores with another runtime (benchmarks)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_graph(
    graph: str | Path,
    config: GPTConfig,
    tokenizer: Tokenizer | None,
    device: str = "cpu",
    precision: str = "fp32",
    max_slots: int = DEFAULT_SLOTS,
    options: ort.SessionOptions | None = None,
) -> OrtSlotRuntime | OrtGraphRuntime:
    """A runtime on the graph file at `graph`, of the class its form needs."""
    session = make_session(graph, device, options)
    check_graph_matches(session, Path(graph), config)
    inputs = {value.name: value.type for value in session.get_inputs()}
    info = RuntimeInfo("onnxruntime", precision, device, config.vocab_size, config.block_size, max_slots,
                       SEQLENS_K in inputs)  # fmt: skip
    runtime_class = OrtSlotRuntime if SEQLENS_K in inputs else OrtGraphRuntime
    cache_dtype = CACHE_TYPES.get(inputs[past_names(config.n_layer)[0]])
    if cache_dtype is None:
        raise BackendError(f"{graph}: a KV cache of {inputs[past_names(config.n_layer)[0]]} is not one gptdeploy "
                           "writes (float or float16); re-export the bundle")  # fmt: skip
    return runtime_class(session, Path(graph), info, config, tokenizer, cache_dtype)


def make_session(graph: str | Path, device: str, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on `graph` with the execution providers `device` asks for (each checked to load)."""
    kind = device.split(":")[0]
    if kind not in PROVIDERS:
        raise BackendError(f"onnxruntime device must be cpu, cuda[:N] or tensorrt[:N], got {device!r}")
    wanted = PROVIDERS[kind]
    if wanted[0] not in ort.get_available_providers():
        raise BackendError(f"{wanted[0]} is not in this onnxruntime build; replace onnxruntime by onnxruntime-gpu")
    device_id = int(device.split(":")[1]) if ":" in device else 0
    providers = [(name, {"device_id": device_id}) if name != "CPUExecutionProvider" else name for name in wanted]
    try:
        session = ort.InferenceSession(str(graph), sess_options=options or session_options(), providers=providers)
    except Exception as error:  # onnxruntime's exceptions share no public base class
        raise BackendError(f"ONNX Runtime cannot load {graph}: {one_line(error)}; re-export the bundle") from error
    if session.get_providers()[0] != wanted[0]:  # listed as available, but it failed to load
        raise BackendError(f"{wanted[0]} failed to load (got {session.get_providers()}); check CUDA/cuDNN")
    return session


def one_line(error: BaseException) -> str:
    """ONNX Runtime's message on one line, without its source-location prefix."""
    text = " ".join(str(error).split())
    return text[:400] + (" ..." if len(text) > 400 else "")


def check_graph_matches(session: ort.InferenceSession, graph: Path, config: GPTConfig) -> None:
    """The graph's IO names (of either form), and the sizes it fixes (vocabulary, KV heads, head size), must be the
    config's: a manifest that describes another graph fails here, not inside a kernel."""
    inputs = {value.name: value.shape for value in session.get_inputs()}
    outputs = {value.name: value.shape for value in session.get_outputs()}
    learned = config.positions == "learned"
    wanted = slot_input_names(config.n_layer, learned) if SEQLENS_K in inputs else input_names(config.n_layer)
    if set(inputs) != set(wanted) or set(outputs) != set(output_names(config.n_layer)):
        raise BackendError(f"{graph} has inputs {sorted(inputs)[:4]}... and {len(outputs)} outputs, not gptdeploy's "
                           f"decoder IO for the {config.n_layer} layers its model config says; re-export the "
                           "bundle")  # fmt: skip
    expected = {LOGITS: (outputs[LOGITS], 2, config.vocab_size)}
    for name in past_names(config.n_layer):
        expected[name] = (inputs[name], 1, config.kv_heads)
        expected[name + ".head_dim"] = (inputs[name], 3, config.head_dim)
    for name, (shape, axis, size) in expected.items():
        if len(shape) <= axis or (isinstance(shape[axis], int) and shape[axis] != size):
            raise BackendError(f"{graph}: {name.removesuffix('.head_dim')} has shape {shape}, but the model config "
                               f"implies {size} at axis {axis}; the bundle's manifest does not describe this graph: "
                               "re-export the bundle")  # fmt: skip


def run_bound(session: ort.InferenceSession, binding: ort.IOBinding, graph: Path) -> None:
    """Run a bound call; ONNX Runtime's failure becomes a BackendError naming the graph."""
    try:
        session.run_with_iobinding(binding)
    except Exception as error:  # onnxruntime's exceptions share no public base class
        raise BackendError(f"ONNX Runtime failed running {graph}: {one_line(error)}; the graph does not match its "
                           "bundle's model config: re-export the bundle") from error  # fmt: skip


def from_artifact(
    bundle: Bundle, artifact: Artifact, tokenizer: Tokenizer, device: str | None, max_slots: int
) -> OrtSlotRuntime | OrtGraphRuntime:
    return open_graph(bundle.file(artifact.path), bundle.config, tokenizer, device or "cpu", artifact.precision,
                      max_slots)  # fmt: skip


class OrtRuntime(SlotRuntime):
    """What both graph forms share: the session and the device the cache lives on."""

    def __init__(self, session: ort.InferenceSession, graph: Path, info: RuntimeInfo, config: GPTConfig,
                 tokenizer: Tokenizer | None, cache_dtype: type):  # fmt: skip
        super().__init__(info.max_slots)
        self.session, self.graph, self.info, self.config, self.tokenizer = session, graph, info, config, tokenizer
        self.cache_dtype = cache_dtype
        self.ort_device = "cpu" if info.device == "cpu" else "cuda"
        self.device_id = int(info.device.split(":")[1]) if ":" in info.device else 0
        self.past_names, self.present_names = past_names(config.n_layer), present_names(config.n_layer)


class OrtSlotRuntime(OrtRuntime):
    """The slot graph over one preallocated buffer per cache tensor; rows of the buffer are the slots."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        shape = (self.info.max_slots, c.kv_heads, c.block_size, c.head_dim)
        check_cache_memory(c, self.info.max_slots, np.dtype(self.cache_dtype).itemsize)
        # Zeroed, so attention never meets uninitialized memory past a row's end, and written now (np.full, not the
        # lazily mapped np.zeros), so the memory is resident: a slot's first use would otherwise page-fault inside a
        # request's step (200 ms for a gpt2-124m slot). On the CPU the OrtValue wraps the numpy array itself (kept
        # here); on a GPU it is a copy in device memory.
        self.host = [np.full(shape, 0, dtype=self.cache_dtype) for _ in self.past_names]
        self.buffers = [ort.OrtValue.ortvalue_from_numpy(array, self.ort_device, self.device_id) for array in self.host]
        if self.ort_device != "cpu":
            self.host = []
        self.row_bytes = int(np.prod(shape[1:])) * np.dtype(self.cache_dtype).itemsize
        self.element_type = np.dtype(self.cache_dtype).type
        self.learned_positions = POSITION_IDS in {value.name for value in self.session.get_inputs()}
        self.decode_bindings: OrderedDict[tuple[int, int], DecodeBinding] = OrderedDict()

    def cache_pointers(self) -> list[int]:
        """Where the KV cache lives: one buffer per cache tensor, allocated once."""
        return [buffer.data_ptr() for buffer in self.buffers]

    def _run(self, first: int, tokens: np.ndarray, starts: np.ndarray, keep: int) -> np.ndarray:
        """Append tokens (n, T) to rows first..first+n-1 whose lengths are `starts`; logits (n, keep, vocab)."""
        n, T = tokens.shape
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, tokens)
        if self.learned_positions:
            binding.bind_cpu_input(POSITION_IDS, starts[:, None] + np.arange(T, dtype=np.int64))
        binding.bind_cpu_input(SEQLENS_K, (starts + T - 1).astype(np.int32))
        binding.bind_cpu_input(TOTAL_SEQUENCE_LENGTH, np.array(starts.max() + T, dtype=np.int32))
        binding.bind_cpu_input(LOGITS_TO_KEEP, np.array([keep], dtype=np.int64))
        binding.bind_output(LOGITS, "cpu")
        self.bind_rows(binding, first, n)
        run_bound(self.session, binding, self.graph)
        return binding.get_outputs()[0].numpy()

    def bind_rows(self, binding: ort.IOBinding, first: int, n: int) -> None:
        """Rows first..first+n-1 of every cache buffer as both past and present: a view, written in place."""
        shape = [n, *self.buffers[0].shape()[1:]]
        for past, present, buffer in zip(self.past_names, self.present_names, self.buffers, strict=True):
            pointer = buffer.data_ptr() + first * self.row_bytes  # rows are contiguous
            binding.bind_input(past, self.ort_device, self.device_id, self.element_type, shape, pointer)
            binding.bind_output(present, self.ort_device, self.device_id, self.element_type, shape, pointer)

    def _decode_rows(self, first: int, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """One token for each of the rows first..first+n-1; logits (n, vocab). On the CPU through a binding kept
        per span of rows (the per-call cost of binding every cache tensor is most of a small model's step)."""
        if self.ort_device != "cpu":
            return self._run(first, tokens[:, None], starts, 1)[:, -1]
        key = (first, len(tokens))
        binding = self.decode_bindings.pop(key, None) or DecodeBinding(self, first, len(tokens))
        self.decode_bindings[key] = binding  # most recently used last
        if len(self.decode_bindings) > 2 * self.info.max_slots:
            self.decode_bindings.popitem(last=False)
        return binding.run(tokens, starts)

    def _prefill(self, slot: int, tokens: np.ndarray, start: int, all_logits: bool) -> np.ndarray:
        logits = self._run(slot, tokens[None], np.array([start]), len(tokens) if all_logits else 1)[0]
        return logits if all_logits else logits[-1]

    def _decode(self, slots: np.ndarray, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """One call per span of rows covering the slots. A row inside a span that is not decoded (free, or between
        prefill chunks) rides along: it writes a token's keys just after its last one, where its next tokens go
        anyway, and its logits are dropped; a full row has no room for that, so it splits the span."""
        rows = slots.tolist()
        if rows == list(range(rows[0], rows[0] + len(rows))):  # one span in order, the usual case: no regrouping
            return self._decode_rows(rows[0], tokens, starts)
        logits = np.empty((len(slots), self.info.vocab_size), dtype=np.float32)
        for first, last in self._spans(sorted(rows)):
            inside = np.flatnonzero((slots >= first) & (slots <= last))
            feed = np.zeros(last - first + 1, dtype=np.int64)
            feed[slots[inside] - first] = tokens[inside]
            run = self._decode_rows(first, feed, self.lengths[first : last + 1].copy())
            logits[inside] = run[slots[inside] - first]
        return logits

    def _spans(self, rows: list[int]) -> list[tuple[int, int]]:
        """[first, last] spans covering the sorted rows, merged across gaps whose rows have room for one token."""
        spans: list[tuple[int, int]] = []
        for row in rows:
            gap = range(spans[-1][1] + 1, row) if spans else range(0)
            if spans and all(self.lengths[other] < self.info.max_seq_len for other in gap):
                spans[-1] = (spans[-1][0], row)
            else:
                spans.append((row, row))
        return spans


class DecodeBinding:
    """A decode call over rows first..first+n-1 of an `OrtSlotRuntime` on the CPU, bound once: the cache rows, and
    numpy arrays for the small inputs and the logits that ONNX Runtime reads and writes in place. A call only writes
    its tokens and lengths into those arrays and runs."""

    def __init__(self, runtime: OrtSlotRuntime, first: int, n: int):
        self.session, self.graph = runtime.session, runtime.graph
        self.ids = np.zeros((n, 1), dtype=np.int64)
        self.positions = np.zeros((n, 1), dtype=np.int64)
        self.seqlens = np.zeros(n, dtype=np.int32)
        self.total = np.zeros((), dtype=np.int32)
        self.logits = np.zeros((n, 1, runtime.info.vocab_size), dtype=np.float32)
        inputs = {INPUT_IDS: self.ids, SEQLENS_K: self.seqlens, TOTAL_SEQUENCE_LENGTH: self.total,
                  LOGITS_TO_KEEP: np.ones(1, dtype=np.int64)}  # fmt: skip
        if runtime.learned_positions:
            inputs[POSITION_IDS] = self.positions
        self.binding = self.session.io_binding()
        self.values = {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in inputs.items()}
        self.values[LOGITS] = ort.OrtValue.ortvalue_from_numpy(self.logits)  # the OrtValues share numpy's memory
        for name, value in self.values.items():
            if name == LOGITS:
                self.binding.bind_ortvalue_output(name, value)
            else:
                self.binding.bind_ortvalue_input(name, value)
        runtime.bind_rows(self.binding, first, n)

    def run(self, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        self.ids[:, 0] = tokens
        self.positions[:, 0] = starts
        self.seqlens[:] = starts
        self.total[...] = starts.max() + 1
        run_bound(self.session, self.binding, self.graph)
        return self.logits[:, 0].copy()


class OrtGraphRuntime(OrtRuntime):
    """The exported graph: each slot keeps its own past (grown by concatenation inside the graph); one slot per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pasts: list[list[ort.OrtValue] | None] = [None] * self.info.max_slots

    def _empty(self) -> list[ort.OrtValue]:
        c = self.config
        empty = np.zeros((1, c.kv_heads, 0, c.head_dim), dtype=self.cache_dtype)
        return [ort.OrtValue.ortvalue_from_numpy(empty, self.ort_device, self.device_id) for _ in self.past_names]

    def _prefill(self, slot: int, tokens: np.ndarray, start: int, all_logits: bool) -> np.ndarray:
        T = len(tokens)
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, tokens[None])
        binding.bind_cpu_input(ATTENTION_MASK, np.ones((1, start + T), dtype=np.int64))
        binding.bind_cpu_input(POSITION_IDS, np.arange(start, start + T, dtype=np.int64)[None])
        binding.bind_output(LOGITS, "cpu")
        past = self.pasts[slot] if start else self._empty()
        for past_name, present_name, value in zip(self.past_names, self.present_names, past, strict=True):
            binding.bind_ortvalue_input(past_name, value)
            binding.bind_output(present_name, self.ort_device, self.device_id)
        run_bound(self.session, binding, self.graph)
        outputs = binding.get_outputs()
        self.pasts[slot] = list(outputs[1:])
        logits = outputs[0].numpy()[0]  # (T, vocab)
        return logits.astype(np.float32, copy=False) if all_logits else np.array(logits[-1], dtype=np.float32)

    def _decode(self, slots: np.ndarray, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.stack([self._prefill(int(slot), tokens[i : i + 1], int(starts[i]), False)
                         for i, slot in enumerate(slots)])  # fmt: skip

    def _free(self, slot: int) -> None:
        self.pasts[slot] = None


class OrtEncoder:
    """An encoder graph (`gptdeploy/graph_contract.py`: input_ids, attention_mask -> logits, class_scores) in one
    ONNX Runtime session: one call per batch, no cache."""

    def __init__(self, graph: str | Path, config: GPTConfig, tokenizer: Tokenizer, labels: list[str],
                 device: str = "cpu", precision: str = "fp32"):  # fmt: skip
        self.graph, self.tokenizer = Path(graph), tokenizer
        self.session = make_session(graph, device)
        inputs = sorted(value.name for value in self.session.get_inputs())
        outputs = [value.name for value in self.session.get_outputs()]
        if inputs != sorted(encoder_input_names()) or outputs != encoder_output_names(config.num_labels):
            raise BackendError(f"{graph} has inputs {inputs} and outputs {outputs}, not gptdeploy's encoder IO for "
                               f"{config.num_labels} labels; re-export the bundle")  # fmt: skip
        self.info = EncoderInfo("onnxruntime", precision, device, config.block_size, list(labels))

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {INPUT_IDS: np.ascontiguousarray(input_ids, dtype=np.int64),
                 ATTENTION_MASK: np.ascontiguousarray(attention_mask, dtype=np.int64)}  # fmt: skip
        try:
            values = self.session.run(None, feeds)
        except Exception as error:  # onnxruntime's exceptions share no public base class
            raise BackendError(f"ONNX Runtime failed running {self.graph}: {one_line(error)}") from error
        names = [value.name for value in self.session.get_outputs()]
        return {name: value.astype(np.float32) for name, value in zip(names, values, strict=True)}

    def close(self) -> None:
        self.session = None

    def __enter__(self) -> OrtEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encoder_from_artifact(bundle: Bundle, artifact: Artifact, tokenizer: Tokenizer, device: str | None) -> OrtEncoder:
    labels = bundle.manifest["reference"].get("labels") or []
    return OrtEncoder(bundle.file(artifact.path), bundle.config, tokenizer, labels, device or "cpu",
                      artifact.precision)  # fmt: skip
