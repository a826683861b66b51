"""The TensorRT pre-flight check on graphs that must pass (our exports) and small graphs that must fail."""

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from gptdeploy.errors import ConfigError
from gptdeploy.export.preflight import check_bundle, check_graph
from gptdeploy.export.tensorrt_support import max_opset, parse_trt_version

F, F16, I64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64


def save(tmp_path, nodes, inputs, outputs, initializers=(), opset=18, functions=(), opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in opsets)]
    model = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def value(name, dtype=F, shape=("B", 4)):
    return helper.make_tensor_value_info(name, dtype, shape)


def codes(check, severity="error"):
    return sorted({f.code for f in check.findings if f.severity == severity})


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import tiny_model

    root = tmp_path_factory.mktemp("preflight")
    save_checkpoint(root / "checkpoint", tiny_model(seed=2), tokenizer)
    return export_bundle(root / "checkpoint", root / "bundle", tasks=False).bundle


@pytest.mark.parametrize("version", ["10.3", "10.15", "11.4"])
def test_the_exported_fp32_graph_passes_on_every_supported_release(exported, version):
    result = check_bundle(exported, trt_version=version)
    (graph,) = result.graphs
    assert result and graph.findings == [], graph.findings
    # ids, mask, positions and the shape arithmetic are int64: native since TensorRT 9, so not a problem
    assert graph.int64_tensors >= 3 and graph.op_counts["Gather"] >= 1


def test_the_onnxruntime_fused_graph_fails_on_its_contrib_ops(exported, tmp_path):
    fusion = pytest.importorskip("gptdeploy.export.fusion", reason="fusion needs the optional onnxscript package")
    bundle = shutil.copytree(exported, tmp_path / "bundle")
    fused = fusion.optimize_bundle(bundle, "onnxruntime").artifact
    check = check_bundle(bundle, trt_version="11.4", artifact=fused.name).graphs[0]
    contrib = {f.op_type for f in check.errors if f.code == "contrib-op"}
    assert not check and "GroupQueryAttention" in contrib
    assert all(f.node for f in check.errors if f.code == "contrib-op")
    assert any(f.code == "io" for f in check.errors)  # the slot graph's IO is not what engine profiles are set for


def test_contrib_and_custom_domain_ops_fail_with_node_names(tmp_path):
    skip = helper.make_node("SkipLayerNormalization", ["x", "x", "g", "b"], ["y"], "skip_ln_0", domain="com.microsoft")
    nodes = [skip, helper.make_node("MyPlugin", ["y"], ["z"], "plugin_0", domain="acme.ops")]
    init = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("g", "b")]
    path = save(tmp_path, nodes, [value("x")], [value("z")], init, opsets=[("com.microsoft", 1), ("acme.ops", 1)])
    check = check_graph(path, (10, 15))
    assert [(f.code, f.node, f.op_type) for f in check.errors] == [
        ("contrib-op", "skip_ln_0", "SkipLayerNormalization"),
        ("custom-op", "plugin_0", "MyPlugin"),
    ]


def test_an_op_without_importer_fails(tmp_path):
    path = save(tmp_path, [helper.make_node("Det", ["x"], ["y"], "det")], [value("x", shape=(2, 3, 3))],
                [value("y", shape=(2,))])  # fmt: skip
    (error,) = check_graph(path, (11, 4)).errors
    assert (error.code, error.node, error.op_type) == ("unsupported-op", "det", "Det")


def attention_graph(tmp_path, with_cache=False, q_shape=("B", 2, "S", 8)):
    inputs = [value("q", shape=q_shape), value("k", shape=("B", 2, "T", 8)), value("v", shape=("B", 2, "T", 8))]
    node_inputs, outputs = ["q", "k", "v", ""], [value("y", shape=q_shape)]
    if with_cache:
        inputs += [value("pk", shape=("B", 2, "P", 8)), value("pv", shape=("B", 2, "P", 8))]
        node_inputs += ["pk", "pv"]
        outputs += [value("present_k", shape=("B", 2, "Q", 8)), value("present_v", shape=("B", 2, "Q", 8))]
    attrs = {"q_num_heads": 2, "kv_num_heads": 2} if len(q_shape) == 3 else {}
    node = helper.make_node("Attention", node_inputs, [o.name for o in outputs], "attention_0", **attrs)
    return save(tmp_path, [node], inputs, outputs, opset=23)


def test_standard_attention_needs_tensorrt_10_14(tmp_path):
    path = attention_graph(tmp_path)
    assert check_graph(path, (10, 14)).findings == [] and check_graph(path, (11, 4)).findings == []
    old = check_graph(path, (10, 3))
    assert codes(old) == ["unsupported-op"] and "needs TensorRT >= 10.14" in old.errors[0].message
    assert codes(old, "warning") == ["opset"]  # opset 23 is newer than what 10.3 was built against


def test_attention_with_cache_inputs_or_3d_query_fails(tmp_path):
    cached = check_graph(attention_graph(tmp_path, with_cache=True), (10, 15))
    messages = " ".join(f.message for f in cached.errors)
    assert len(cached.errors) == 4 and "past_key" in messages and "present_value" in messages
    flat = check_graph(attention_graph(tmp_path, q_shape=("B", "S", 16)), (10, 15))
    assert codes(flat) == ["restriction"] and "3-D" in flat.errors[0].message


def test_double_and_string_tensors(tmp_path):
    io = save(tmp_path, [helper.make_node("Identity", ["x"], ["y"])], [value("x", TensorProto.DOUBLE)],
              [value("y", TensorProto.DOUBLE)])  # fmt: skip
    assert codes(check_graph(io, (10, 15))) == ["dtype"]
    casts = [helper.make_node("Cast", ["x"], ["y"], "to_double", to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["y"], ["z"], "back", to=F)]  # fmt: skip
    cast = save(tmp_path, casts, [value("x")], [value("z")])
    assert [(f.code, f.node) for f in check_graph(cast, (10, 15)).errors] == [("dtype", "to_double"), ("dtype", "back")]
    text = save(tmp_path, [helper.make_node("Identity", ["s"], ["t"])], [value("s", TensorProto.STRING, (2,))],
                [value("t", TensorProto.STRING, (2,))])  # fmt: skip
    assert "dtype" in codes(check_graph(text, (10, 15)))
    weights = [numpy_helper.from_array(np.ones(4, np.float64), "w")]
    double_weight = save(tmp_path, [helper.make_node("Add", ["x", "w"], ["y"])], [value("x", TensorProto.DOUBLE)],
                         [value("y", TensorProto.DOUBLE)], weights)  # fmt: skip
    assert "dtype" in codes(check_graph(double_weight, (10, 15)), "warning")


def test_int64_fails_only_where_the_op_lacks_it(tmp_path):
    ok = save(tmp_path, [helper.make_node("Add", ["m", "m"], ["y"])], [value("m", I64)], [value("y", I64)])
    assert check_graph(ok, (10, 3)).findings == []
    axis = numpy_helper.from_array(np.array(1, np.int64), "axis")
    positions = save(tmp_path, [helper.make_node("CumSum", ["mask", "axis"], ["pos"], "positions")],
                     [value("mask", I64)], [value("pos", I64)], [axis])  # fmt: skip
    (error,) = check_graph(positions, (11, 4)).errors
    assert (error.code, error.node) == ("dtype", "positions") and "INT64" in error.message


def test_symmetric_int8_qdq_passes_and_asymmetric_uint8_fails(tmp_path):
    def qdq(zero_point):
        scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
        zp = numpy_helper.from_array(zero_point, "zp")
        nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["xq"], "q"),
                 helper.make_node("DequantizeLinear", ["xq", "scale", "zp"], ["y"], "dq")]  # fmt: skip
        return save(tmp_path, nodes, [value("x")], [value("y")], [scale, zp])

    assert check_graph(qdq(np.array(0, np.int8)), (10, 3)).findings == []
    asymmetric = check_graph(qdq(np.array(128, np.uint8)), (10, 15))
    assert {(f.code, f.node) for f in asymmetric.errors} >= {("quantization", "q"), ("quantization", "dq")}
    assert any(f.code == "dtype" and f.node == "dq" for f in asymmetric.errors)  # UINT8 is IO-only in TensorRT


def test_fp16_graph_with_fp32_islands_passes(tmp_path):
    scale, bias = (numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("g", "b"))
    weight = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    nodes = [helper.make_node("Cast", ["x"], ["x32"], to=F),
             helper.make_node("LayerNormalization", ["x32", "g", "b"], ["n32"], axis=-1),
             helper.make_node("Cast", ["n32"], ["n16"], to=F16),
             helper.make_node("MatMul", ["n16", "w"], ["y"])]  # fmt: skip
    path = save(tmp_path, nodes, [value("x", F16)], [value("y", F16)], [scale, bias, weight])
    assert check_graph(path, (10, 3)).findings == []


def test_computed_axes_shape_inputs_and_unranked_inputs_fail(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["dims"]),
             helper.make_node("ReduceMean", ["x", "dims"], ["m"], "mean"),
             helper.make_node("Reshape", ["x", "target"], ["r"], "reshape")]  # fmt: skip
    path = save(tmp_path, nodes, [value("x"), value("target", I64, (2,)), helper.make_tensor_value_info("u", F, None)],
                [value("m"), value("r")])  # fmt: skip
    found = {(f.code, f.node or "") for f in check_graph(path, (10, 15)).errors}
    assert found == {("restriction", "mean"), ("shape-input", "reshape"), ("dynamic-rank", "")}


def test_external_weights_must_be_next_to_the_graph_and_whole(tmp_path):
    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [value("x", shape=("B", 64))],
                              [value("y", shape=("B", 64))], [weight])  # fmt: skip
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path,
              save_as_external_data=True, location="model.onnx.data", size_threshold=0)  # fmt: skip
    assert check_graph(path, (10, 3), listed_files={"model.onnx", "model.onnx.data"}).findings == []
    assert codes(check_graph(path, (10, 3), listed_files={"model.onnx"}), "warning") == ["external-data"]
    data = tmp_path / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    assert "truncated" in check_graph(path, (10, 3)).errors[0].message
    data.unlink()
    assert "missing" in check_graph(path, (10, 3)).errors[0].message


def test_versions():
    assert parse_trt_version("10.3") == (10, 3) and parse_trt_version("10.16.1.11") == (10, 16)
    assert parse_trt_version("11") == (11, 0)
    for bad in ("8.6", "ten"):
        with pytest.raises(ConfigError):
            parse_trt_version(bad)
    assert max_opset((10, 3)) < max_opset((10, 15)) == 24 < max_opset((11, 5))


def test_cli_reports_each_artifact_and_exits_1_on_problems(exported, tmp_path):
    from gptdeploy.bundle import Artifact, load_bundle
    from gptdeploy.bundle_write import install_artifact, staged_folder
    from gptdeploy.cli import main

    bundle = shutil.copytree(exported, tmp_path / "bundle")
    with staged_folder(bundle) as staging:
        node = helper.make_node("BiasGelu", ["x", "x"], ["y"], "bias_gelu_0", domain="com.microsoft")
        graph = helper.make_graph([node], "g", [value("x")], [value("y")])
        imports = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
        onnx.save(helper.make_model(graph, opset_imports=imports), staging / "model.onnx")
        details = load_bundle(bundle).artifact(name="onnx-fp32").details
        install_artifact(bundle, staging, Artifact("onnx-contrib", "onnx", "fp32", "model.onnx", {}, 18, details))

    result = CliRunner().invoke(main, ["check", str(bundle), "--trt-version", "10.3", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    verdicts = {g["artifact"]: (g["passed"], [f["code"] for f in g["findings"]]) for g in report["graphs"]}
    assert verdicts["onnx-fp32"] == (True, [])
    assert verdicts["onnx-contrib"] == (False, ["contrib-op", "io"])  # its inputs also miss the bundle's IO names
    text = CliRunner().invoke(main, ["check", str(bundle), "--artifact", "onnx-fp32"])
    assert text.exit_code == 0 and "onnx-fp32 (opset 18): ok" in text.output
    bad = CliRunner().invoke(main, ["check", str(bundle), "--trt-version", "8.6"])
    assert bad.exit_code == 1 and "Error: gptdeploy builds engines for TensorRT >= 10.0" in bad.output
