"""Build a TensorRT engine from a bundle's ONNX graph, on the machine that will run it, into the same bundle.

Engines are specific to a TensorRT version and a GPU, so a Jetson builds its own from the bundle it was shipped.
Precision comes from the graph, not from builder flags: TensorRT 11 builds strongly typed networks only (no
FP16/INT8 flags, no calibrators), and on TensorRT 10 we ask for the same strongly typed mode, so an fp16 graph
with fp32 islands or an int8 QDQ graph builds to exactly the types it declares. Capabilities are detected with
`hasattr` on the installed module, never from its version string.

The engine gets two optimization profiles derived from the model config, because one range for both phases picks
kernels that are wrong for both: prefill (batch 1..B, sequence 1..S, empty past) and decode (batch 1..B, one new
token, past 0..S-1). The stage runner then judges the engine on the bundle's golden references, like every artifact,
and adds it to the manifest with its TensorRT version, GPU, compute capability and profiles only if it passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from gptdeploy.bundle import Artifact, load_bundle
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BackendError, ConfigError, ExportError
from gptdeploy.export.pipeline import Stage, StageResult, add_stage
from gptdeploy.fileio import atomic_write
from gptdeploy.graph_contract import TOKEN_INPUTS, encoder_input_names, graph_io, past_names
from gptdeploy.validation import checked_arguments

logger = logging.getLogger(__name__)


Shape = tuple[int, ...]
ENCODER_BATCH = 8  # texts per call an encoder engine takes at most


@dataclass(frozen=True)
class Profile:
    """One optimization profile: input name -> (min, opt, max) shapes."""

    name: str
    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def to_dict(self) -> dict:
        return {"name": self.name, "shapes": {k: [list(s) for s in v] for k, v in self.shapes.items()}}


def derive_profiles(config: GPTConfig, max_seq: int) -> list[Profile]:
    """Prefill and decode profiles, in that order (the runtime selects them by index), for one slot per call.

    The graph's inputs are ids, mask and positions, then the past (1, kv_heads, past, head_dim) of every layer.
    Kernels are tuned for the `opt` shapes: a prompt a quarter of the context long for prefill (prompts are short
    next to the context), and a cache half-way through the context for decode.
    """
    if not 2 <= max_seq <= config.block_size:
        raise ConfigError(f"--max-seq must be in 2..{config.block_size} (the model's context), got {max_seq}")
    if not config.causal:  # an encoder: one pass over whole texts, a batch of them at a time
        texts = ((1, 1), (ENCODER_BATCH // 2, max(1, max_seq // 4)), (ENCODER_BATCH, max_seq))
        return [Profile("encoder", {name: texts for name in encoder_input_names()})]
    (ids, mask, positions), past = TOKEN_INPUTS, past_names(config.n_layer)
    B, S, H, D = 1, max_seq, config.kv_heads, config.head_dim
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


def parser_errors(parser) -> list[str]:
    """Each parser error with the name and op type of the node it is about."""
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node_name() or error.node()} ({error.node_operator()})" if error.node() >= 0 else "graph"
        lines.append(f"{where}: {error.desc()}")
    return lines


def tensorrt_stage(
    config: GPTConfig,
    source: Artifact,
    max_seq: int | None = None,
    timing_cache: str | Path | None = None,
    workspace: int | None = None,
    device: str = "cuda:0",
) -> Stage:
    """The stage that builds an engine for this machine's GPU from the ONNX artifact `source`.

    `workspace` caps TensorRT's scratch memory in bytes; `timing_cache` is read if it exists and written after the
    build (later builds on this GPU then skip most kernel timing).
    """
    from gptdeploy.runtimes.trt_runtime import cuda_device, import_tensorrt

    if source.kind != "onnx":
        raise ExportError(f"artifact {source.name!r} is a {source.kind} artifact; build engines from ONNX graphs")
    max_seq = max_seq or config.block_size
    profiles = derive_profiles(config, max_seq)
    trt = import_tensorrt()
    gpu = cuda_device(device)
    gpu.close()  # only its identity is needed here; TensorRT manages the build's memory
    recipe = {"tensorrt_version": trt.__version__, "gpu": gpu.name, "compute_capability": gpu.compute_capability,
              "profiles": [p.to_dict() for p in profiles], "max_seq": max_seq,
              "workspace_bytes": workspace, "strongly_typed": True, "tf32": source.precision != "fp32"}  # fmt: skip
    cache = Path(timing_cache) if timing_cache else None

    def build(graph: Path, engine: Path) -> dict:
        logger.info("building a TensorRT %s engine from %s on %s (compute capability %s)", trt.__version__,
                    source.name, gpu.name, gpu.compute_capability)  # fmt: skip
        started = time.perf_counter()
        serialized = _build(trt, graph, graph_io(config)["inputs"], profiles, source.precision, cache, workspace)
        engine.write_bytes(serialized)
        logger.info("built a %.1f MiB engine in %.0f s", serialized.nbytes / 2**20, time.perf_counter() - started)
        return {"build_seconds": round(time.perf_counter() - started, 1)}

    return Stage(engine_name(source), "tensorrt", source.precision, build, recipe, source_precisions=None,
                 device=device)  # fmt: skip


def _build(trt, graph: Path, expected: list[str], profiles: list[Profile], precision: str, cache: Path | None,
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
    if parsed != expected:
        raise ExportError(f"the graph's inputs {parsed} differ from gptdeploy's {expected}; re-export the bundle")
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


@checked_arguments(ExportError)
def build_engine(
    bundle: str | Path,
    source: str | None = None,
    precision: str = "fp32",
    max_seq: int | None = None,
    timing_cache: str | Path | None = None,
    workspace: int | None = None,
    device: str = "cuda:0",
    force: bool = False,
    tasks: bool | None = None,
) -> StageResult:
    """Build an engine from the ONNX artifact `source` (else the first of `precision`) and add it to the bundle,
    only if it passes parity like every artifact."""
    opened = load_bundle(bundle, verify=False)  # add_stage verifies it; this only picks the source
    origin = opened.artifact("onnx", precision, source)
    stage = tensorrt_stage(opened.config, origin, max_seq, timing_cache, workspace, device)
    return add_stage(bundle, stage, origin.name, force, tasks)
