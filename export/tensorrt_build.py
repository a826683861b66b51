"""Build a TensorRT engine from a bundle's ONNX graph, on the machine that will run it, into the same bundle.

Engines are specific to a TensorRT version and a GPU, so a Jetson builds its own from the bundle it was shipped.
Precision comes from the graph, not from builder flags: TensorRT 11 builds strongly typed networks only (no
FP16/INT8 flags, no calibrators), and on TensorRT 10 we ask for the same strongly typed mode, so an fp16 graph
with fp32 islands or an int8 QDQ graph builds to exactly the types it declares. Capabilities are detected with
`hasattr` on the installed module, never from its version string.

The engine gets two optimization profiles derived from the model config, because one range for both phases picks
kernels that are wrong for both: prefill (batch 1..B, sequence 1..S, empty past) and decode (batch 1..B, one new
token, past 0..S-1). After the build the engine runs the bundle's golden references; only an engine that passes
is added to the manifest, with its TensorRT version, GPU, compute capability, profiles and parity.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from gptdeploy.bundle import (
    GOLDEN_FILE,
    TOKENIZER_FILE,
    Artifact,
    add_artifact,
    folder_files,
    load_bundle,
    staged_folder,
)
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BackendError, ConfigError, ExportError
from gptdeploy.fileio import atomic_write

logger = logging.getLogger(__name__)

ENGINE_FILE = "model.plan"
DEFAULT_MAX_BATCH = 8

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """One optimization profile: input name -> (min, opt, max) shapes."""

    name: str
    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def to_dict(self) -> dict:
        return {"name": self.name, "shapes": {k: [list(s) for s in v] for k, v in self.shapes.items()}}


def derive_profiles(config: GPTConfig, input_names: list[str], max_batch: int, max_seq: int) -> list[Profile]:
    """Prefill and decode profiles, in that order (the runtime selects them by index).

    The graph's inputs are ids, mask and positions, then the past (B, kv_heads, past, head_dim) of every layer.
    Kernels are tuned for the `opt` shapes: one prompt a quarter of the context long for prefill (prompts come
    one at a time and are short next to the context), and a full batch half-way through the context for decode,
    where batching pays.
    """
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, got {max_batch}")
    if not 2 <= max_seq <= config.block_size:
        raise ConfigError(f"--max-seq must be in 2..{config.block_size} (the model's context), got {max_seq}")
    ids, mask, positions, *past = input_names
    B, S, H, D = max_batch, max_seq, config.kv_heads, config.head_dim
    prompt = max(1, S // 4)
    tokens = ((1, 1), (1, prompt), (B, S))
    prefill = {ids: tokens, mask: tokens, positions: tokens}
    prefill.update({name: ((1, H, 0, D), (1, H, 0, D), (B, H, 0, D)) for name in past})
    step = ((1, 1), (B, 1), (B, 1))
    decode = {ids: step, mask: ((1, 1), (B, S // 2 + 1), (B, S)), positions: step}
    decode.update({name: ((1, H, 0, D), (B, H, S // 2, D), (B, H, S - 1, D)) for name in past})
    return [Profile("prefill", prefill), Profile("decode", decode)]


def network_flags(trt) -> int:
    """Creation flags for a strongly typed network on the installed TensorRT.

    TensorRT 11 has no precision builder flags and every network is strongly typed (its STRONGLY_TYPED creation
    flag is kept but ignored); TensorRT 10 still has FP16/INT8 flags and needs STRONGLY_TYPED asked for.
    """
    if not hasattr(trt.BuilderFlag, "FP16"):
        return 0
    if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise BackendError(f"TensorRT {trt.__version__} has no strongly typed networks; gptdeploy needs >= 10")
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def engine_name(source: Artifact) -> str:
    """The engine artifact built from `source`: onnx-fp32 -> tensorrt-fp32, onnx-fused-std -> tensorrt-fused-std."""
    return "tensorrt-" + source.name.removeprefix("onnx-")


def engine_folder(name: str) -> str:
    """Where an engine lives in the bundle, beside the graphs: tensorrt-fp32 -> engine-fp32/."""
    return "engine-" + name.removeprefix("tensorrt-")


def parser_errors(parser) -> list[str]:
    """Each parser error with the name and op type of the node it is about."""
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node_name() or error.node()} ({error.node_operator()})" if error.node() >= 0 else "graph"
        lines.append(f"{where}: {error.desc()}")
    return lines


def build_engine(
    bundle_dir: str | Path,
    source: str | None = None,
    precision: str = "fp32",
    max_batch: int = DEFAULT_MAX_BATCH,
    max_seq: int | None = None,
    timing_cache: str | Path | None = None,
    workspace: int | None = None,
    device: str = "cuda:0",
    check: bool = True,
) -> Artifact:
    """Build an engine from the ONNX artifact `source` (else the first of `precision`) and add it to the bundle.

    `workspace` caps TensorRT's scratch memory in bytes; `timing_cache` is read if it exists and written after the
    build (later builds on this GPU then skip most kernel timing). With `check`, the engine must pass parity on
    the bundle's golden references before it is added.
    """
    from gptdeploy.runtimes.trt_runtime import cuda_device, import_tensorrt

    bundle = load_bundle(bundle_dir)
    onnx_artifact = bundle.artifact("onnx", precision, source)
    if onnx_artifact.kind != "onnx":
        raise ExportError(f"artifact {onnx_artifact.name!r} is a {onnx_artifact.kind} artifact; build from ONNX")
    max_seq = max_seq or bundle.config.block_size
    inputs = list(bundle.manifest["io"]["inputs"])
    profiles = derive_profiles(bundle.config, inputs, max_batch, max_seq)
    trt = import_tensorrt()
    gpu = cuda_device(device)
    gpu.close()  # only its identity is needed here; TensorRT manages the build's memory
    start = time.perf_counter()
    logger.info("building a TensorRT %s engine from %s on %s (compute capability %s)", trt.__version__,
                onnx_artifact.name, gpu.name, gpu.compute_capability)  # fmt: skip
    serialized = _build(trt, bundle.file(onnx_artifact.path), inputs, profiles, onnx_artifact.precision,
                        Path(timing_cache) if timing_cache else None, workspace)  # fmt: skip
    seconds = time.perf_counter() - start
    name = engine_name(onnx_artifact)
    folder = engine_folder(name)
    details = {"source": onnx_artifact.name, "tensorrt_version": trt.__version__, "gpu": gpu.name,
               "compute_capability": gpu.compute_capability, "profiles": [p.to_dict() for p in profiles],
               "max_batch": max_batch, "max_seq": max_seq, "workspace_bytes": workspace, "strongly_typed": True,
               "tf32": onnx_artifact.precision != "fp32", "build_seconds": round(seconds, 1),
               "engine_bytes": serialized.nbytes}  # fmt: skip
    logger.info("built a %.1f MiB engine in %.0f s", serialized.nbytes / 2**20, seconds)
    with staged_folder(bundle.path, folder) as staging:
        with open(staging / ENGINE_FILE, "wb") as stream:
            stream.write(serialized)
        if check:
            details["parity"] = _check_parity(bundle, staging / ENGINE_FILE, onnx_artifact.precision, device)
    artifact = Artifact(name, "tensorrt", onnx_artifact.precision, f"{folder}/{ENGINE_FILE}",
                        folder_files(bundle.path, folder), None, details)  # fmt: skip
    add_artifact(bundle.path, artifact, replace_existing=True)
    return artifact


def _build(trt, graph: Path, inputs: list[str], profiles: list[Profile], precision: str, cache: Path | None,
           workspace: int | None):  # fmt: skip
    """Parse, configure and build; returns the serialized engine (an IHostMemory)."""
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(graph)):  # resolves external weights next to the graph
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {graph.name}: " + "; ".join(parser_errors(parser))
                          + " (`gptdeploy check BUNDLE --target tensorrt` lists every problem)")  # fmt: skip
    parsed = [network.get_input(i).name for i in range(network.num_inputs)]
    if parsed != inputs:
        raise ExportError(f"the graph's inputs {parsed} differ from the bundle's {inputs}; re-export the bundle")
    config = builder.create_builder_config()
    if workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 matmuls would miss fp32 parity
    for index, profile in enumerate(profiles):
        optimization_profile = builder.create_optimization_profile()
        for name, (low, opt, high) in profile.shapes.items():
            optimization_profile.set_shape(name, low, opt, high)
        if config.add_optimization_profile(optimization_profile) != index:
            raise ExportError(f"TensorRT rejected the {profile.name} profile {profile.to_dict()['shapes']}")
    if cache is not None:
        _attach_timing_cache(config, cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {graph.name} (see its log above)")
    if cache is not None:
        atomic_write(cache, lambda tmp: tmp.write_bytes(bytes(config.get_timing_cache().serialize())))
        logger.info("saved the timing cache to %s", cache)
    return serialized


def _attach_timing_cache(config, path: Path) -> None:
    """Start from the saved cache when there is one from this TensorRT and GPU, else from an empty one."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):  # False: refuse a cache from another device or version
        logger.warning("the timing cache %s is from another GPU or TensorRT; starting an empty one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif data:
        logger.info("reusing the timing cache %s (%d bytes)", path, len(data))


def _check_parity(bundle, engine: Path, precision: str, device: str) -> dict:
    from gptdeploy.golden import load_golden
    from gptdeploy.parity import check_parity
    from gptdeploy.runtimes.trt_runtime import TrtRuntime
    from gptdeploy.tokenizer import Tokenizer

    logger.info("checking the engine against the golden references")
    tokenizer = Tokenizer.load(bundle.file(TOKENIZER_FILE))
    with TrtRuntime(engine, bundle.config, tokenizer, bundle.manifest["io"], device, precision) as runtime:
        report = check_parity(runtime, load_golden(bundle.file(GOLDEN_FILE)))
    if not report:
        raise ExportError(f"the TensorRT {precision} engine failed parity: {'; '.join(report.failures)}")
    return report.to_dict()
