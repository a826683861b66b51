"""The ONNX Runtime backend: the bundle's decoder graph on the CPU, CUDA or TensorRT execution providers.

Inputs and outputs go through IO binding, and each step's `present.*` outputs are bound as the next step's
`past_key_values.*` inputs as ORT values, so the KV cache never round-trips through fresh numpy arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from gptdeploy.bundle import Artifact, Bundle
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BackendError
from gptdeploy.graph_contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    POSITION_IDS,
    past_names,
    position_ids,
    present_names,
)
from gptdeploy.runtimes.base import CachedRuntime, RuntimeInfo
from gptdeploy.tokenizer import Tokenizer

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def session_options(threads: int | None = None, spinning: bool = True) -> ort.SessionOptions:
    """Threads for one session; spinning off when ORT shares the cores with another runtime (benchmarks)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OrtRuntime(CachedRuntime):
    def __init__(
        self,
        graph: str | Path,
        config: GPTConfig,
        tokenizer: Tokenizer | None,
        device: str = "cpu",
        precision: str = "fp32",
        max_batch_size: int = 64,
        options: ort.SessionOptions | None = None,
    ):
        super().__init__()
        kind = device.split(":")[0]
        if kind not in PROVIDERS:
            raise BackendError(f"onnxruntime device must be cpu, cuda[:N] or tensorrt[:N], got {device!r}")
        wanted = PROVIDERS[kind]
        if wanted[0] not in ort.get_available_providers():
            raise BackendError(f"{wanted[0]} is not in this onnxruntime build; install 'gptdeploy[gpu]'")
        device_id = int(device.split(":")[1]) if ":" in device else 0
        providers = [(name, {"device_id": device_id}) if name != "CPUExecutionProvider" else name for name in wanted]
        self.session = ort.InferenceSession(str(graph), sess_options=options or session_options(), providers=providers)
        if self.session.get_providers()[0] != wanted[0]:  # listed as available, but it failed to load
            raise BackendError(f"{wanted[0]} failed to load (got {self.session.get_providers()}); check CUDA/cuDNN")
        self.ort_device = "cpu" if kind == "cpu" else "cuda"
        self.device_id = device_id
        self.config, self.tokenizer = config, tokenizer
        self.info = RuntimeInfo("onnxruntime", precision, device, config.vocab_size, config.block_size,
                                max_batch_size)  # fmt: skip
        self.past_names, self.present_names = past_names(config.n_layer), present_names(config.n_layer)
        cache_type = {value.name: value.type for value in self.session.get_inputs()}[self.past_names[0]]
        self.past_dtype = np.float16 if cache_type == "tensor(float16)" else np.float32
        self.past: list[ort.OrtValue] = []

    @classmethod
    def from_artifact(
        cls, bundle: Bundle, artifact: Artifact, tokenizer: Tokenizer, device: str | None, max_batch_size: int
    ) -> OrtRuntime:
        return cls(bundle.file(artifact.path), bundle.config, tokenizer, device or "cpu", artifact.precision,
                   max_batch_size)  # fmt: skip

    def _ort_value(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.ort_device, self.device_id)

    def _reset(self, batch_size: int) -> None:
        c = self.config
        empty = np.zeros((batch_size, c.kv_heads, 0, c.head_dim), dtype=self.past_dtype)
        self.past = [self._ort_value(empty) for _ in self.past_names]

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, all_logits: bool) -> np.ndarray:
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, input_ids)
        binding.bind_cpu_input(ATTENTION_MASK, attention_mask)
        binding.bind_cpu_input(POSITION_IDS, position_ids(attention_mask, input_ids.shape[1]))
        binding.bind_output(LOGITS, "cpu")
        for past_name, present_name, value in zip(self.past_names, self.present_names, self.past, strict=True):
            binding.bind_ortvalue_input(past_name, value)
            binding.bind_output(present_name, self.ort_device, self.device_id)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self.past = list(outputs[1:])
        logits = outputs[0].numpy()  # (B, T, vocab)
        if all_logits:
            return logits.astype(np.float32, copy=False)
        return np.ascontiguousarray(logits[:, -1], dtype=np.float32)  # copies only when the prompt had several tokens

    def _keep_rows(self, rows: np.ndarray) -> None:
        self.past = [self._ort_value(value.numpy()[rows]) for value in self.past]
