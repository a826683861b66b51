"""The bundle commands end to end: export, optimize, inspect and parity, with their errors as one line."""

import json

import pytest
from click.testing import CliRunner

from gptdeploy.cli import main

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")


def run(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tokenizer):
    from gptdeploy.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    root = tmp_path_factory.mktemp("cli-bundles")
    save_checkpoint(root / "checkpoint", tiny_model(seed=4), tokenizer)
    exported = json.loads(run("export", root / "checkpoint", "-o", root / "bundle", "--no-tasks", "--json").stdout)
    assert exported["artifact"] == "onnx-fp32" and exported["parity"]["passed"]
    return root / "bundle"


def test_optimize_adds_fused_graphs_that_inspect_and_parity_show(bundle):
    fused = json.loads(run("optimize", bundle, "--target", "tensorrt", "--json").stdout)
    assert fused["artifact"] == "onnx-fused-std" and fused["op_counts"]["Attention"] == 2
    text = run("optimize", bundle).stdout
    assert "added onnx-fused-ort" in text and "ok" in text
    shown = run("inspect", bundle).stdout
    assert "artifact onnx-fused-ort: onnx fp32" in shown and "com.microsoft::GroupQueryAttention 2" in shown
    assert "fused: sdpa 2" in shown
    reports = json.loads(run("parity", bundle, "--json").stdout)["reports"]
    assert len(reports) == 3 and all(report["passed"] for report in reports)


def test_generate_runs_a_named_artifact(bundle):
    run("optimize", bundle, "--force")
    args = ["generate", bundle, "-p", "Mia lives", "--max-new-tokens", "6", "--json"]
    fused = json.loads(run(*args, "--artifact", "onnx-fused-ort").stdout)["results"]
    plain = json.loads(run(*args).stdout)["results"]
    assert fused[0]["tokens"] == plain[0]["tokens"]


def test_bad_requests_are_one_line_errors(bundle, tmp_path):
    missing = run("optimize", tmp_path / "nowhere", ok=False)
    assert missing.exit_code == 1 and "does not exist" in missing.output and "Traceback" not in missing.output
    unknown = run("optimize", bundle, "--from", "onnx-int3", ok=False)
    assert unknown.exit_code == 1 and "no 'onnx-int3' artifact" in unknown.output
    wrong = run("generate", bundle, "-p", "x", "--artifact", "engine-9", ok=False)
    assert wrong.exit_code == 1 and "no 'engine-9' artifact" in wrong.output
