"""Kill `export --force`, `quantize --force` and `optimize --force` at chosen crash points and record what is left.

Run by tests/test_faults.py as `python tests/fault_harness.py SPEC.json RESULTS.json`. It imports the libraries once,
then runs each operation in a forked child (a fresh process per case would spend most of the test importing torch)
with GPTDEPLOY_CRASH_AT=N, so the child SIGKILLs itself at its Nth crash point (`gptdeploy.fileio.crash_point`).
The parent never runs a model (forked children start with no thread pools); after each kill it records whether the
bundle verifies, whether it holds the old or the new version, and what the kill left behind.

Each operation in the spec: {"op": "export" | "quantize" | "optimize", "bundle": path, "pristine": path (export: a
copy of the old bundle) or "old_folder" and "old": artifact record (the old artifact's files, re-installed before
each case), "args": the call's arguments, "points": "all" or a list of trace labels (prefixes) to kill at,
"final": whether to end with one more uninterrupted run (default true)}.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx  # noqa: F401  (imported once here so that children start warm)
import onnx_ir  # noqa: F401
import onnxruntime  # noqa: F401
import onnxscript  # noqa: F401
import torch  # noqa: F401

from gptdeploy import fileio
from gptdeploy.bundle import Artifact, ArtifactDetails, load_bundle
from gptdeploy.bundle_write import install_artifact, staged_folder
from gptdeploy.errors import GptDeployError
from gptdeploy.export import fusion_rules, onnx_export, quantize_transforms  # noqa: F401
from gptdeploy.export.fusion import optimize_bundle
from gptdeploy.export.pipeline import export_bundle
from gptdeploy.export.quantize import quantize_bundle

CHILD_TIMEOUT = 300  # seconds: a child that neither finishes nor dies is reported as hung

OPERATIONS = {"export": export_bundle, "quantize": quantize_bundle, "optimize": optimize_bundle}


def run_child(operation: dict, crash_at: int | None, trace: Path | None) -> str:
    """Run the operation in a forked child; returns "killed", "finished", "failed: ..." or "hung"."""
    pid = os.fork()
    if pid == 0:
        os.environ.pop(fileio.CRASH_AT, None)
        os.environ.pop(fileio.CRASH_LOG, None)
        if crash_at is not None:
            os.environ[fileio.CRASH_AT] = str(crash_at)
        if trace is not None:
            os.environ[fileio.CRASH_LOG] = str(trace)
        fileio._crash_points = 0
        code = 0
        try:
            OPERATIONS[operation["op"]](**operation["args"])
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                return "killed"
            return "finished" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else f"failed: {status}"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


def restore_old(operation: dict) -> None:
    """Put the old version back: a copy of the old bundle, or the old artifact re-installed (a real write, which
    also removes what the last kill left)."""
    bundle = Path(operation["bundle"])
    if operation["op"] == "export":
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(operation["pristine"], bundle)
        return
    old = operation["old"]
    with staged_folder(bundle) as staging:
        for source in Path(operation["old_folder"]).iterdir():
            shutil.copy(source, staging / source.name)
        details = ArtifactDetails.from_dict(old["details"])
        artifact = Artifact(
            old["name"], old["kind"], old["precision"], Path(old["path"]).name, {}, old["opset"], details
        )
        install_artifact(bundle, staging, artifact, replace_existing=True)


def state(operation: dict) -> dict:
    """What the bundle holds now: whether it verifies, the files of the artifact(s) concerned, what was left behind."""
    bundle = Path(operation["bundle"])
    hidden = sorted(p.name for p in bundle.glob(".*") if p.name != ".lock") if bundle.is_dir() else []
    siblings = sorted(p.name for p in bundle.parent.glob(f".{bundle.name}.*"))
    try:
        loaded = load_bundle(bundle)
    except GptDeployError as error:
        return {"verifies": False, "error": str(error), "hidden": hidden, "siblings": siblings}
    if operation["op"] == "export":
        files = {**loaded.manifest["files"], **{n: d for a in loaded.artifacts for n, d in a.files.items()}}
    else:
        artifact = next((a for a in loaded.artifacts if a.name == operation["artifact"]), None)
        files = {} if artifact is None else {Path(n).name: d for n, d in artifact.files.items()}
    folders = {artifact.folder for artifact in loaded.artifacts}
    orphans = sorted(p.name for p in bundle.iterdir() if p.is_dir() and p.name[0] != "." and p.name not in folders)
    return {"verifies": True, "files": files, "hidden": hidden, "siblings": siblings, "orphans": orphans}


def run_operation(operation: dict, work: Path) -> dict:
    restore_old(operation)
    old = state(operation)
    trace = work / f"{operation['op']}.trace"
    outcome = run_child(operation, None, trace)
    new = state(operation)
    labels = [line.split(" ", 1)[1] for line in trace.read_text().splitlines()] if trace.exists() else []
    points = operation["points"]
    chosen = [i for i, label in enumerate(labels, 1) if points == "all" or any(label.startswith(p) for p in points)]
    cases = []
    for index in chosen:
        restore_old(operation)
        result = run_child(operation, index, None)
        cases.append({"point": index, "label": labels[index - 1], "outcome": result, **state(operation)})
    result = {"op": operation["op"], "trace_outcome": outcome, "labels": labels, "old": old, "new": new, "cases": cases}
    if operation.get("final", True):  # one more uninterrupted run, which must remove what the last kill left
        restore_old(operation)
        result.update(final_outcome=run_child(operation, None, None), final=state(operation))
    return result


def main(spec_file: str, results_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    work = Path(results_file).parent
    results = [run_operation(operation, work) for operation in spec["operations"]]
    Path(results_file).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
