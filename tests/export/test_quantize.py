"""Quantized artifacts on tiny random models: the graphs, the guardrail's mechanics, refusals, the CLI.

Random weights exaggerate quantization drift, so most tests pass an explicit loose budget and assert on what was
built and recorded; the issue's budgets are measured on the trained demo model.
"""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from gptdeploy.errors import ExportError, GptDeployError
from gptdeploy.parity import Tolerance

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")

LOOSE = Tolerance(max_logit_diff=10.0, mean_kl=10.0, near_tie=100.0, top1_agreement=0.0, max_accuracy_drop=100.0)
IMPOSSIBLE = Tolerance(max_logit_diff=10.0, mean_kl=10.0, near_tie=100.0, top1_agreement=1.01)
QUANTIZED_OPS = {
    "int8": {"DynamicQuantizeLinear", "MatMulInteger"},
    "int8-static": {"QuantizeLinear", "DequantizeLinear"},
    "int4": {"MatMulNBits"},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    from gptdeploy.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    model = tiny_model(seed=3, n_kv_head=2)  # GPT-2 layout (tied LM head) with grouped-query attention
    return save_checkpoint(tmp_path_factory.mktemp("quantize") / "checkpoint", model, tokenizer)


@pytest.fixture(scope="module")
def heldout():
    """6 held-out examples, 2 per task: enough to check the accuracy bookkeeping, fast on a tiny model."""
    from gptdeploy.corpus.tasks import generate_tasks

    return generate_tasks()[1][::50]


@pytest.fixture(scope="module")
def exported(checkpoint, heldout):
    """A bundle that recorded PyTorch's task accuracy at export, like one of a model tuned on the shipped tasks."""
    from gptdeploy.export.pipeline import export_bundle

    return export_bundle(checkpoint, checkpoint.parent / "bundle", tasks=True, heldout=heldout).bundle


@pytest.fixture
def bundle(exported, tmp_path):
    return shutil.copytree(exported, tmp_path / "bundle")


@pytest.fixture
def quantize(heldout):
    """quantize_bundle held to the small held-out set."""
    from gptdeploy.export.quantize import quantize_bundle

    return lambda bundle, precision, **options: quantize_bundle(bundle, precision, heldout=heldout, **options)


def load_graph(bundle, name):
    from gptdeploy.bundle import load_bundle

    return onnx.load(str(bundle / load_bundle(bundle).artifact(name=name).path))


def fp32_weight_matmuls(model):
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return [node.name for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in floats]


def snapshot(bundle):
    """Every path under the bundle with its bytes (None for folders): equal snapshots mean nothing changed."""
    return {p.relative_to(bundle).as_posix(): p.read_bytes() if p.is_file() else None for p in bundle.rglob("*")}


@pytest.mark.parametrize("precision", ["int8", "int8-static", "int4"])
def test_integer_schemes_quantize_every_weight_matmul_and_run(bundle, quantize, precision):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.runtimes.base import load_runtime

    result = quantize(bundle, precision, tolerance=LOOSE)
    name = f"onnx-{precision}"
    artifact = load_bundle(bundle).artifact(name=name)  # verifies every file's sha256
    graph = load_graph(bundle, name)
    ops = {node.op_type for node in graph.graph.node}
    assert QUANTIZED_OPS[precision] <= ops
    assert fp32_weight_matmuls(graph) == [], "a weight MatMul (e.g. the tied LM head) was left in fp32"
    if precision != "int4":  # standard ops only (int4 uses ONNX Runtime's contrib ops): a strictly valid graph
        onnx.checker.check_model(graph, full_check=True)
    assert artifact.precision == ("int8" if precision.startswith("int8") else "int4")
    assert artifact.details == result.artifact.details and artifact.details.recipe["scheme"]
    assert artifact.details.source == "onnx-fp32" and artifact.details.parity["passed"]
    assert artifact.details.guardrail.kept_fp32 == [] and len(artifact.details.guardrail.steps) == 1
    assert 0 < artifact.details.size_bytes < load_bundle(bundle).artifact(name="onnx-fp32").details.size_bytes
    with load_runtime(bundle, artifact=name) as runtime:
        assert runtime.info.precision == artifact.precision
        assert len(generate(runtime, "Mia lives in", GenerationConfig(max_new_tokens=5, ignore_eos=True)).tokens) == 5


@pytest.mark.parametrize("io_dtype", ["fp32", "fp16"])
def test_fp16_keeps_norms_and_softmax_in_fp32_with_io_of_either_dtype(bundle, quantize, io_dtype):
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.runtimes.base import load_runtime

    result = quantize(bundle, "fp16", io_dtype=io_dtype, tolerance=LOOSE)
    graph = load_graph(bundle, "onnx-fp16")
    onnx.checker.check_model(graph, full_check=True)  # topologically sorted, types consistent
    graph = onnx.shape_inference.infer_shapes(graph)
    dtypes = {v.name: v.type.tensor_type.elem_type for v in [*graph.graph.value_info, *graph.graph.output]}
    dtypes |= {t.name: t.data_type for t in graph.graph.initializer}
    weights = {t.name for t in graph.graph.initializer}
    matmul_weights = {dtypes[n.input[1]] for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in weights}
    fp32_islands = {dtypes[n.output[0]] for n in graph.graph.node if n.op_type in ("LayerNormalization", "Softmax")}
    assert matmul_weights == {onnx.TensorProto.FLOAT16}
    assert fp32_islands == {onnx.TensorProto.FLOAT}
    expected = onnx.TensorProto.FLOAT16 if io_dtype == "fp16" else onnx.TensorProto.FLOAT
    boundary = [
        v for v in [*graph.graph.input, *graph.graph.output] if v.name.startswith(("past", "present", "logits"))
    ]
    assert {v.type.tensor_type.elem_type for v in boundary} == {expected}
    assert result.artifact.details.recipe["io_dtype"] == io_dtype and result.artifact.details.guardrail is None
    assert result.parity.top1_agreement > 0.9, "fp16 should barely move a tiny model's logits"
    with load_runtime(bundle, artifact="onnx-fp16") as runtime:
        assert len(generate(runtime, "Tom had", GenerationConfig(max_new_tokens=4, ignore_eos=True)).tokens) == 4


def test_a_missed_budget_keeps_the_most_sensitive_layers_in_fp32_until_it_passes(bundle, quantize, tmp_path, exported):
    from gptdeploy.bundle import load_bundle

    everything = quantize(shutil.copytree(exported, tmp_path / "probe"), "int8", tolerance=LOOSE)
    tight = Tolerance(max_logit_diff=10.0, mean_kl=everything.parity.mean_kl / 2, near_tie=100.0, top1_agreement=0.0)
    result = quantize(bundle, "int8", tolerance=tight)
    guardrail = load_bundle(bundle).artifact(name="onnx-int8").details.guardrail
    kept = result.steps[-1].kept_fp32
    assert kept and guardrail.kept_fp32 == kept
    assert set(guardrail.sensitivity) == {"embeddings", "lm_head", "block.0", "block.1"}
    ranked = sorted(guardrail.sensitivity, key=guardrail.sensitivity.get, reverse=True)
    assert kept == ranked[: len(kept)], "layers are kept in order of measured sensitivity"
    steps = guardrail.steps
    assert [s["passed"] for s in steps] == [False] * (len(steps) - 1) + [True]
    assert "mean KL" in steps[0]["failures"][0] and steps[-1]["mean_kl"] <= tight.mean_kl
    graph = load_graph(bundle, "onnx-int8").graph
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    floats |= {n.output[0] for n in graph.node if n.op_type == "Transpose" and n.input[0] in floats}
    head = next(n for n in graph.node if n.output[0] == "logits")
    assert (head.op_type == "MatMul" and head.input[1] in floats) == ("lm_head" in kept)


def test_nothing_within_budget_raises_naming_the_best_and_leaves_the_bundle_unchanged(bundle, quantize):
    before = snapshot(bundle)
    with pytest.raises(ExportError, match=r"missed its budget .*: top-1 agreement .* the best candidate \(keeping"):
        quantize(bundle, "int4", tolerance=IMPOSSIBLE)
    assert snapshot(bundle) == before


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (dict(precision="int3"), "unknown precision 'int3'"),
        (dict(precision="int8", source="onnx-missing"), "has no 'onnx-missing' artifact"),
        (dict(precision="int8", io_dtype="fp16"), "--io-dtype fp16 applies to --precision fp16 only"),
        (dict(precision="int8", name="onnx-fp32"), "is the source artifact"),
        (dict(precision="int8", name="onnx-int8"), "already has an artifact 'onnx-int8'; pass --force"),
        (dict(precision="int4", source="onnx-int8"), "is made from fp32 onnx artifacts; 'onnx-int8' is onnx int8"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(bundle, quantize, request_, message):
    quantize(bundle, "int8", tolerance=LOOSE)
    before = snapshot(bundle)
    with pytest.raises(GptDeployError, match=message):
        quantize(bundle, **{"tolerance": LOOSE, **request_})
    assert snapshot(bundle) == before


def test_force_replaces_an_artifact_of_the_same_name(bundle, quantize):
    from gptdeploy.bundle import load_bundle

    quantize(bundle, "int8", tolerance=LOOSE, name="onnx-small")
    quantize(bundle, "int4", tolerance=LOOSE, name="onnx-small", force=True)
    names = [(a.name, a.precision) for a in load_bundle(bundle).artifacts]
    assert names == [("onnx-fp32", "fp32"), ("onnx-small", "int4")]
    # the int4 version got a folder of its own while the int8 one stayed valid; the int8 folder went after the commit
    assert load_bundle(bundle).artifact(name="onnx-small").path == "decoder-small.2/model.onnx"
    assert sorted(p.name for p in bundle.iterdir() if p.is_dir()) == ["decoder-fp32", "decoder-small.2"]


def test_task_accuracy_is_held_to_the_budget_against_pytorchs(bundle, quantize, heldout):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.evaluate import exact_match
    from gptdeploy.runtimes.base import load_runtime

    recorded = load_bundle(bundle).reference_accuracy
    with pytest.raises(ExportError, match=r"task accuracy .* points below PyTorch's"):
        quantize(bundle, "fp16", tolerance=replace(LOOSE, max_accuracy_drop=-1.0))  # must beat PyTorch
    result = quantize(bundle, "fp16", tolerance=LOOSE)
    with load_runtime(bundle, artifact="onnx-fp16") as runtime:
        measured = exact_match(runtime, heldout).accuracy
    assert result.artifact.details.task_accuracy == measured == result.steps[-1].accuracy
    assert recorded is not None and abs(recorded - measured) <= LOOSE.max_accuracy_drop / 100
    assert quantize(bundle, "int8", tolerance=LOOSE, tasks=False).artifact.details.task_accuracy is None


def test_prepare_weights_turns_a_transposed_lm_head_into_a_plain_weight_matmul():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from gptdeploy.export.quantize_transforms import layer_groups, prepare_weights

    weight = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)  # (vocab, width), shared
    nodes = [
        helper.make_node("Gather", ["W", "ids"], ["h"], "embed"),
        helper.make_node("FusedMatMul", ["h", "W"], ["a"], "head_fused", domain="com.microsoft", transB=1),
        helper.make_node("Relu", ["a"], ["r"], "relu"),
        helper.make_node("Transpose", ["W"], ["Wt"], "transpose"),
        helper.make_node("MatMul", ["h", "Wt"], ["logits"], "head"),
    ]
    graph = helper.make_graph(
        nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 6]) for n in ("r", "logits")],
        [numpy_helper.from_array(weight, "W")],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )
    ids = np.array([1, 4], dtype=np.int64)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"ids": ids})

    def prepared_ops(quantized):
        prepared = prepare_weights(onnx.ModelProto.FromString(model.SerializeToString()), quantized)
        return [node.op_type for node in prepared.graph.node]

    assert prepared_ops({"head_fused"}) == ["Gather", "MatMul", "Relu", "Transpose", "MatMul"]  # "head" stays fp32
    assert prepared_ops({"embed"}) == ["Gather", "MatMul", "Relu", "MatMul"]  # the quantized table is not theirs
    prepared = prepare_weights(model)
    assert [n.op_type for n in prepared.graph.node] == ["Gather", "MatMul", "Relu", "MatMul"]
    groups = layer_groups(prepared, n_layer=0, embeddings=True)
    assert groups == {"embeddings": ["embed"], "lm_head": ["head"], "head_fused": ["head_fused"]}
    for got, want in zip(
        ort.InferenceSession(prepared.SerializeToString()).run(None, {"ids": ids}), expected, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_layer_groups_split_the_weight_matmuls_by_block(exported):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.quantize_transforms import LM_HEAD, layer_groups, load_prepared

    graph = load_prepared(exported / "decoder-fp32" / "model.onnx")
    groups = layer_groups(graph, load_bundle(exported).config.n_layer, embeddings=True)
    assert list(groups) == ["embeddings", LM_HEAD, "block.0", "block.1"]
    assert len(groups["embeddings"]) == 2 and len(groups["block.0"]) == len(groups["block.1"]) == 4
    assert groups[LM_HEAD] == [next(n.name for n in graph.graph.node if n.output[0] == "logits")]


def test_cli_quantize_prints_json_and_refuses_an_existing_name(bundle):
    from click.testing import CliRunner

    from gptdeploy.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["quantize", str(bundle), "--precision", "fp16", "--io-dtype", "fp16", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["artifact"] == "onnx-fp16" and data["precision"] == "fp16" and data["parity"]["passed"]
    assert data["source"] == "onnx-fp32" and data["recipe"]["io_dtype"] == "fp16" and data["guardrail"] is None
    again = runner.invoke(main, ["quantize", str(bundle), "--precision", "fp16"])
    assert again.exit_code == 1 and "Error:" in again.output and "pass --force" in again.output
    assert "Traceback" not in again.output
    wrong = runner.invoke(main, ["quantize", str(bundle), "--precision", "int3"])
    assert wrong.exit_code == 2 and "int8-static" in wrong.output
