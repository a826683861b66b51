"""Fusion replaces decomposed attention by one operator per layer and keeps fp32 parity, for both targets."""

import shutil
from dataclasses import replace

import pytest

from gptdeploy.errors import BundleError, ExportError

pytest.importorskip("onnxscript", reason="the ONNX exporter and the fusion rules need the optional onnxscript package")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    """One exported bundle per model family, fused copies are made from it."""
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import MODEL_VARIANTS, tiny_model

    root = tmp_path_factory.mktemp("fusion")
    bundles = {}
    variants = {**MODEL_VARIANTS, "llama-mha": {**MODEL_VARIANTS["llama"], "n_kv_head": None}}
    for variant in ("gpt2", "llama", "llama-mha", "qwen2", "qwen3"):
        save_checkpoint(root / variant, tiny_model(seed=3, **variants[variant]), tokenizer)
        bundles[variant] = export_bundle(root / variant, root / f"{variant}-bundle", tasks=False).bundle
    return bundles


@pytest.fixture
def bundle(exported, tmp_path):
    return shutil.copytree(exported["gpt2"], tmp_path / "bundle")


def attention_nodes(path):
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return [node for node in graph.node if node.op_type in ("Attention", "MultiHeadAttention", "GroupQueryAttention")]


def greedy_tokens(bundle, artifact: str) -> list[list[int]]:
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.runtimes.base import load_runtime

    with load_runtime(bundle, "onnxruntime", artifact=artifact) as runtime:
        results = generate(runtime, ["Mia lives in", "The river"], GenerationConfig(max_new_tokens=12))
    return [result.tokens for result in results]


@pytest.mark.parametrize("variant", ["gpt2", "llama", "llama-mha", "qwen2", "qwen3"])
def test_the_onnxruntime_target_is_the_slot_graph_for_every_family(exported, tmp_path, variant):
    """One GroupQueryAttention per layer with the cache bound in and out, packed QKV, fused norms, nothing
    decomposed left; fp32 parity and the same greedy tokens as the exported graph."""
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.graph_contract import SEQLENS_K
    from gptdeploy.runtimes.base import load_runtime

    bundle = shutil.copytree(exported[variant], tmp_path / variant)
    result = optimize_bundle(bundle, "onnxruntime")
    loaded = load_bundle(bundle)
    ops, n_layer = result.artifact.details.op_counts, loaded.config.n_layer
    nodes = attention_nodes(loaded.file(result.artifact.path))
    assert ops["com.microsoft::GroupQueryAttention"] == n_layer == len(nodes)
    for layer, node in enumerate(nodes):
        assert node.input[3] == f"past_key_values.{layer}.key" and node.output[1] == f"present.{layer}.key"
        packed = not loaded.config.qk_norm  # one MatMul feeds query, key and value unless q and k are normalized
        assert (list(node.input[1:3]) == ["", ""]) == packed
    skip = "SkipSimplifiedLayerNormalization" if variant != "gpt2" else "SkipLayerNormalization"
    assert ops[f"com.microsoft::{skip}"] == 2 * n_layer
    gated = variant != "gpt2"  # SwiGLU: gate and up are two MatMuls on halves of one weight
    assert ops["MatMul"] == (5 if gated else 4) * n_layer + 1  # per layer, and the LM head
    assert not {"Softmax", "Concat", "Pow", "ReduceMean", "Sqrt", "Tanh", "Expand"} & set(ops)
    per_head_norms = 2 * n_layer if loaded.config.qk_norm else 0  # Qwen3 normalizes each head's query and key
    assert ops.get("SimplifiedLayerNormalization", 0) == (0 if variant == "gpt2" else 1 + per_head_norms)
    with load_runtime(bundle, "onnxruntime", artifact=result.artifact.name) as runtime:
        assert runtime.info.batched_decode and SEQLENS_K in [i.name for i in runtime.session.get_inputs()]
    assert result.parity.max_rel_logit_diff <= 1e-4 and result.parity.batch_matches_single
    assert greedy_tokens(bundle, result.artifact.name) == greedy_tokens(bundle, "onnx-fp32")


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_the_slot_graph_quantizes_with_its_contrib_norms(exported, tmp_path, precision):
    """Issue 18 bug 3: int4 from the fused graph crashed converting SimplifiedLayerNormalization's opset; the slot
    graph is written at the opset int4 needs, so nothing is converted."""
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.quantize import quantize_bundle
    from gptdeploy.parity import Tolerance

    bundle = shutil.copytree(exported["llama"], tmp_path / "llama")
    optimize_bundle(bundle, "onnxruntime")
    loose = Tolerance(max_logit_diff=10.0, mean_kl=10.0, near_tie=100.0, top1_agreement=0.0)
    result = quantize_bundle(bundle, precision, source="onnx-fused-ort", tasks=False, tolerance=loose)
    ops = result.artifact.details.op_counts
    assert ops["com.microsoft::GroupQueryAttention"] == 2 and ops["com.microsoft::SkipSimplifiedLayerNormalization"]
    assert ops.get("com.microsoft::MatMulNBits" if precision == "int4" else "MatMulInteger")
    assert greedy_tokens(bundle, result.artifact.name)


def test_head_sizes_onnxruntime_attention_cannot_run_are_refused_by_name(tokenizer, tmp_path):
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.errors import ExportError
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import MODEL_VARIANTS, tiny_model

    model = tiny_model(**{**MODEL_VARIANTS["qwen3"], "head_size": 24})
    save_checkpoint(tmp_path / "checkpoint", model, tokenizer)
    bundle = export_bundle(tmp_path / "checkpoint", tmp_path / "bundle", tasks=False).bundle
    before = sorted(path.name for path in bundle.iterdir())
    with pytest.raises(ExportError, match="multiple of 16 with rotary positions; this model's is 24"):
        optimize_bundle(bundle, "onnxruntime")
    assert sorted(path.name for path in bundle.iterdir()) == before


@pytest.mark.parametrize("variant", ["gpt2", "llama"])
def test_the_tensorrt_target_is_standard_attention_with_the_cache_outside(exported, tmp_path, variant):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.fusion import optimize_bundle

    bundle = shutil.copytree(exported[variant], tmp_path / variant)
    result = optimize_bundle(bundle, "tensorrt")
    loaded = load_bundle(bundle)
    artifact = loaded.artifact(name=result.artifact.name)
    nodes = attention_nodes(loaded.file(artifact.path))
    assert len(nodes) == loaded.config.n_layer and result.artifact.details.recipe["fusions"]["sdpa"] == 2
    assert {node.domain for node in nodes} == {""} and artifact.opset == 23
    assert all(len(node.input) == 4 and len(node.output) == 1 for node in nodes)  # what TensorRT's parser takes
    assert not [op for op in result.artifact.details.op_counts if "::" in op]  # standard operators only
    assert artifact.details.parity["passed"] and artifact.details.source == "onnx-fp32"
    assert greedy_tokens(bundle, artifact.name) == greedy_tokens(bundle, "onnx-fp32")


def test_the_slot_graph_needs_an_export_that_names_its_weights(bundle, tmp_path):
    import onnx

    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.slot_graph import write_slot_graph

    loaded = load_bundle(bundle)
    graph = onnx.load(str(loaded.file(loaded.artifact(name="onnx-fp32").path)))
    del graph.metadata_props[:]
    onnx.save(graph, str(tmp_path / "anonymous.onnx"))
    with pytest.raises(ExportError, match="does not say which initializer holds which weight"):
        write_slot_graph(tmp_path / "anonymous.onnx", tmp_path / "slots.onnx", loaded.config)


def test_bad_requests_fail_clearly_and_leave_the_bundle_as_it_was(bundle):
    from gptdeploy.bundle import MANIFEST_FILE
    from gptdeploy.export.fusion import optimize_bundle

    before = (bundle / MANIFEST_FILE).read_bytes()
    with pytest.raises(ExportError, match="unknown fusion target 'openvino'"):
        optimize_bundle(bundle, "openvino")
    with pytest.raises(BundleError, match="no 'onnx-int3' artifact"):
        optimize_bundle(bundle, "onnxruntime", source="onnx-int3")
    assert (bundle / MANIFEST_FILE).read_bytes() == before
    optimize_bundle(bundle, "onnxruntime")
    with pytest.raises(ExportError, match="already has an artifact 'onnx-fused-ort'; pass --force"):
        optimize_bundle(bundle, "onnxruntime")
    assert optimize_bundle(bundle, "onnxruntime", force=True).parity
    assert not [path for path in bundle.iterdir() if "partial" in path.name]


def test_failing_parity_registers_nothing(bundle, monkeypatch):
    from gptdeploy import parity
    from gptdeploy.bundle import MANIFEST_FILE
    from gptdeploy.export.fusion import optimize_bundle

    before, listing = (bundle / MANIFEST_FILE).read_bytes(), sorted(path.name for path in bundle.iterdir())
    impossible = replace(parity.TOLERANCES["fp32"], max_logit_diff=0.0)
    monkeypatch.setitem(parity.TOLERANCES, "fp32", impossible)
    with pytest.raises(ExportError, match="onnx-fused-std missed its budget against the PyTorch reference: max logit"):
        optimize_bundle(bundle, "tensorrt")
    assert (bundle / MANIFEST_FILE).read_bytes() == before
    assert sorted(path.name for path in bundle.iterdir()) == listing
