"""Fusion replaces decomposed attention by one operator per layer and keeps fp32 parity, for both targets."""

import shutil
from dataclasses import replace

import numpy as np
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
    for variant in ("gpt2", "llama", "llama-mha"):
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


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_gpt2_attention_fuses_into_one_node_per_layer(bundle, target):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.fusion import optimize_bundle

    result = optimize_bundle(bundle, target)
    loaded = load_bundle(bundle)
    artifact = loaded.artifact(name=result.artifact.name)
    nodes = attention_nodes(loaded.file(artifact.path))
    assert len(nodes) == loaded.config.n_layer
    if target == "onnxruntime":  # the cache flows through the operator: past in, present out
        for layer, node in enumerate(nodes):
            assert f"past_key_values.{layer}.key" in node.input and f"present.{layer}.value" in node.output
        assert {node.domain for node in nodes} == {"com.microsoft"}
        fusions = result.artifact.details.recipe["fusions"]
        assert fusions["skip_layer_normalization"] > 0 and fusions["gelu"] > 0
    else:  # what TensorRT's parser takes: 4 inputs, one output; the cache Concats stay outside
        assert {node.domain for node in nodes} == {""} and artifact.opset == 23
        assert all(len(node.input) == 4 and len(node.output) == 1 for node in nodes)
        assert not [op for op in result.artifact.details.op_counts if "::" in op]  # standard operators only
    assert artifact.details.parity["passed"] and artifact.details.source == "onnx-fp32"
    assert result.parity.max_rel_logit_diff <= 1e-4
    assert greedy_tokens(bundle, artifact.name) == greedy_tokens(bundle, "onnx-fp32")


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_llama_family_fuses_attention_with_parity(exported, tmp_path, target):
    from gptdeploy.export.fusion import optimize_bundle

    bundle = shutil.copytree(exported["llama"], tmp_path / "llama")
    result = optimize_bundle(bundle, target)
    assert result.artifact.details.recipe["fusions"]["sdpa"] == 2 and result.parity
    assert greedy_tokens(bundle, result.artifact.name) == greedy_tokens(bundle, "onnx-fp32")


@pytest.mark.parametrize("variant", ["llama-mha", "llama"])
def test_llama_norms_and_rotary_fuse_for_onnxruntime(exported, tmp_path, variant):
    """RMSNorm and the rotary embedding become ORT's fused operators: no decomposed RMSNorm, rotate-half or cos/sin
    left; with as many key/value heads as query heads the cache also flows through MultiHeadAttention."""
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.fusion import optimize_bundle

    bundle = shutil.copytree(exported[variant], tmp_path / variant)
    result = optimize_bundle(bundle, "onnxruntime")
    loaded = load_bundle(bundle)
    ops, n_layer = result.artifact.details.op_counts, loaded.config.n_layer
    assert ops["com.microsoft::SkipSimplifiedLayerNormalization"] == 2 * n_layer
    assert ops["SimplifiedLayerNormalization"] == 1  # the first block's, before any residual add
    assert ops["com.microsoft::RotaryEmbedding"] == 2 * n_layer
    assert ops["com.microsoft::MultiHeadAttention"] == n_layer and "com.microsoft::GroupQueryAttention" not in ops
    assert not {"Pow", "ReduceMean", "Sqrt", "Reciprocal", "Neg", "Slice", "Softmax"} & set(ops)
    nodes = attention_nodes(loaded.file(result.artifact.path))
    if loaded.config.kv_heads == loaded.config.n_head:  # past in, present out of the operator, nothing else left
        for layer, node in enumerate(nodes):
            assert f"past_key_values.{layer}.key" in node.input and f"present.{layer}.value" in node.output
        assert "Transpose" not in ops  # nor a head split/merge around the operator
    else:  # the head repeat sits between the cache Concat and the operator
        assert ops["Concat"] >= 2 * n_layer and ops["Expand"] >= 2 * n_layer
    assert result.parity and result.parity.batch_matches_single
    assert greedy_tokens(bundle, result.artifact.name) == greedy_tokens(bundle, "onnx-fp32")


def test_fused_graph_runs_a_padded_batch_like_single_prompts(bundle):
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.runtimes.base import load_runtime

    optimize_bundle(bundle, "onnxruntime")
    ids = np.array([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = (np.arange(5) >= np.array([[2], [0]])).astype(np.int64)
    with load_runtime(bundle, "onnxruntime", artifact="onnx-fused-ort") as runtime:
        runtime.reset(2)
        batched = runtime.forward(ids, mask)
        runtime.reset(1)
        alone = runtime.forward(ids[:1, 2:], mask[:1, 2:])
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-4)


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
