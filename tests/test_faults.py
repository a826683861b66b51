"""SIGKILL `export --force`, `quantize --force` and `optimize --force` at their crash points: the bundle must verify
after every kill and hold either the complete old or the complete new version, and the next write removes what the
kill left behind.

The kills are placed by instrumentation, not timing: `gptdeploy.fileio.crash_point` numbers every step after which a
kill must leave valid files, and GPTDEPLOY_CRASH_AT=N makes the process SIGKILL itself at step N. An uninterrupted
run traces the steps first; tests/fault_harness.py then kills one forked child per chosen step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")

HARNESS = Path(__file__).with_name("fault_harness.py")
# export --force: its first write (into the hidden staging folder next to the bundle) and every step of the swap
# (each kill costs a whole export, about 10 s); quantize and optimize: every step.
EXPORT_POINTS = ["written .tokenizer.json", "built", "swapped", "removed the old"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, bundle_dir, tokenizer):
    from dataclasses import asdict, replace

    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.quantize import quantize_bundle
    from tests.helpers import tiny_model

    root = tmp_path_factory.mktemp("faults")
    other_checkpoint = save_checkpoint(root / "other-checkpoint", tiny_model(seed=7), tokenizer)
    export_dir, pristine = root / "export" / "bundle", root / "export-old"
    shutil.copytree(bundle_dir, pristine)
    operations = [
        {"op": "export", "bundle": str(export_dir), "pristine": str(pristine), "points": EXPORT_POINTS, "final": False,
         "args": {"checkpoint": str(other_checkpoint), "bundle": str(export_dir), "force": True, "tasks": False,
                  "prompts": ["Mia lives in", "Tom had 12 apples"]}},
    ]  # fmt: skip
    # The old versions differ from what the killed command makes: an int4 graph under the name the int8 run
    # replaces, and the TensorRT-target fusion registered under the name of the ONNX Runtime one.
    for op, name, make_old, args in [
        ("quantize", "onnx-q", lambda b: quantize_bundle(b, "int4", name="onnx-q", tasks=False),
         {"precision": "int8", "name": "onnx-q", "force": True, "tasks": False}),
        ("optimize", "onnx-fused-ort", lambda b: optimize_bundle(b, "tensorrt", tasks=False),
         {"target": "onnxruntime", "force": True, "tasks": False}),
    ]:  # fmt: skip
        bundle = shutil.copytree(bundle_dir, root / op / "bundle")
        old = replace(make_old(bundle).artifact, name=name)
        old_folder = shutil.copytree(bundle / Path(old.path).parent, root / f"{op}-old")
        operations.append(
            {
                "op": op,
                "bundle": str(bundle),
                "artifact": name,
                "old": asdict(old),
                "old_folder": str(old_folder),
                "points": "all",
                "args": {"bundle": str(bundle), **args},
            }
        )
    spec, out = root / "spec.json", root / "results.json"
    spec.write_text(json.dumps({"operations": operations}))
    run = subprocess.run([sys.executable, str(HARNESS), str(spec), str(out)], capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return {result["op"]: result for result in json.loads(out.read_text())}


@pytest.mark.slow
@pytest.mark.parametrize("op", ["export", "quantize", "optimize"])
def test_a_kill_at_any_step_leaves_a_bundle_with_the_old_or_the_new_version(results, op):
    result = results[op]
    old, new = result["old"], result["new"]
    assert result["trace_outcome"] == "finished" and old["verifies"] and new["verifies"], result
    assert old["files"] != new["files"]  # the two versions are told apart by their files' hashes
    cases = result["cases"]
    assert len(cases) >= (len(EXPORT_POINTS) if op == "export" else 8), [c["label"] for c in cases]
    versions = []
    for case in cases:
        where = f"{op} killed at step {case['point']} ({case['label']})"
        assert case["outcome"] == "killed", where
        assert case["verifies"], f"{where}: {case['error']}"
        assert case["files"] in (old["files"], new["files"]), where
        versions.append("old" if case["files"] == old["files"] else "new")
    assert versions == sorted(versions, key=["old", "new"].index), versions  # never back to the old one
    assert "old" in versions and "new" in versions, versions
    assert any(case["hidden"] or case["siblings"] or case["orphans"] for case in cases), "no kill left anything"
    # each write removes what the kill before it left: leftovers never pile up, and none outlive a finished run
    assert all(len(case["siblings"]) <= 1 and len(case["orphans"]) <= 1 for case in cases), cases
    if "final" in result:
        final = result["final"]
        assert result["final_outcome"] == "finished" and final["files"] == new["files"]
        assert final["hidden"] == final["siblings"] == final["orphans"] == [], final


@pytest.mark.slow
def test_the_commit_point_is_the_manifest_write(results):
    """Killed before the manifest names the new artifact: the old one; after: the new one."""
    for op in ("quantize", "optimize"):
        cases = results[op]["cases"]
        commit = next(i for i, c in enumerate(cases) if c["label"] == "replaced manifest.json")
        assert all(c["files"] == results[op]["old"]["files"] for c in cases[:commit])
        assert all(c["files"] == results[op]["new"]["files"] for c in cases[commit:])
    export = {case["label"]: case for case in results["export"]["cases"]}
    assert export["built bundle"]["files"] == results["export"]["old"]["files"]
    assert export["swapped bundle"]["files"] == results["export"]["new"]["files"]
