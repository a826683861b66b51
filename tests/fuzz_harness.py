"""Mutate bundle manifests, bundle files and checkpoint configs at random and run the CLI on each mutant.

Run by tests/test_fuzz.py as `python tests/fuzz_harness.py WORK SEED CASES RESULTS.json` (under strace when the test
finds it). WORK holds a pristine `bundle/` and `checkpoint/` and an `outside/` folder of decoys (a working graph, a
tokenizer, a secret) that no case may read. Each case copies the pristine folder, applies one to three mutations
(most manifests re-checksummed, so that validation past the checksum is exercised), and runs `inspect`, `generate`
and `check` (bundles) or `generate` (checkpoints) through the CLI with --debug, so that any exception that is not a
project error reaches us instead of its one-line rendering. Python-level opens are recorded with an audit hook;
every case opens a marker path first so that an strace log can be split by case.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from click.testing import CliRunner

from gptdeploy.bundle import MANIFEST_FILE, _checksum
from gptdeploy.checkpoint import CONFIG_FILE
from gptdeploy.cli import main as cli
from gptdeploy.errors import GptDeployError

MARKER = "/nonexistent-gptdeploy-fuzz-marker"
opened: list[str] = []  # what the CLI runs of the current case opened (the harness's own copying is not recorded)
recording = False


def audit(event: str, args: tuple) -> None:
    if recording and event == "open" and isinstance(args[0], str | bytes):
        opened.append(os.path.realpath(os.fsdecode(args[0])))  # where it leads now, not after the case


def hostile_values(work: Path) -> list:
    outside = work / "outside"
    return [
        "../outside/model.onnx", "../../outside/secret", str(outside / "model.onnx"), str(outside / "secret"),
        "/etc/passwd", "../../../../../../etc/passwd", "decoder-fp32/../../outside/secret", "decoder-fp32\\model.onnx",
        "C:/x/model.onnx", "", ".", "decoder-fp32", "decoder-fp32/model.onnx", "tokenizer.json", "golden.npz",
        "manifest.json", "nul\x00byte", "x" * 300, "onnx-fp32", "onnx", "tensorrt", "fp16", "\udcff", "é/model.onnx",
        0, -1, 1, 2, 3, 10**12, 2**63, -(2**31), 0.5, -0.0, float("nan"), float("inf"), True, False, None, [], {},
        ["a"], {"a": 1}, [1, 2, 3], {"../outside/secret": "0" * 64}, "0" * 64,
    ]  # fmt: skip


def pick(tree: dict, rng: random.Random) -> tuple:
    """A random node's path: half the time any node alike (deep records dominate), half the time a descent through
    random children that stops at each level with probability 0.3 (every section alike, whatever its size)."""
    if rng.random() < 0.5:
        return rng.choice(list(walk(tree))[1:])
    path, node = (), tree
    while isinstance(node, dict | list) and node and (not path or rng.random() > 0.3):
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path, node = (*path, key), node[key]
    return path or (rng.choice(list(tree)),)


def walk(value, path=()):
    """Every node's path in a JSON tree, the root's included."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, (*path, index))


def mutate_tree(tree: dict, rng: random.Random, values: list) -> str:
    """Change one node of a JSON tree: replace its value, delete it, add a key, or rename a key."""
    path = pick(tree, rng)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key, action = path[-1], rng.choice(["replace", "replace", "replace", "delete", "add", "rename"])
    if action == "replace" or not isinstance(parent, dict):
        parent[key] = rng.choice(values)
        return f"{'/'.join(map(str, path))} = {parent[key]!r:.60}"
    if action == "delete":
        del parent[key]
        return f"delete {'/'.join(map(str, path))}"
    if action == "add":
        new = rng.choice([v for v in values if isinstance(v, str)] + ["extra"])
        parent[new] = rng.choice(values)
        return f"add {'/'.join(map(str, path[:-1]))}/{new!r:.40}"
    new = rng.choice([v for v in values if isinstance(v, str)])
    parent[new] = parent.pop(key)
    return f"rename {'/'.join(map(str, path))} -> {new!r:.40}"


def mutate_files(bundle: Path, rng: random.Random, work: Path) -> str:
    """Change the bundle's files: a symlink out of it, a truncated file, or a graph whose weights live outside."""
    outside = work / "outside"
    choice = rng.choice(["symlink-file", "symlink-folder", "truncate", "external-data", "delete"])
    target = rng.choice(["tokenizer.json", "golden.npz", "decoder-fp32/model.onnx", "decoder-fp32/model.onnx.data",
                         "decoder-fp32/tokenizer_config.json", "decoder-fp32/genai_config.json"])  # fmt: skip
    if choice == "symlink-file":
        (bundle / target).unlink()
        decoy = {"tokenizer.json": "tokenizer.json", "decoder-fp32/model.onnx": "model.onnx",
                 "decoder-fp32/model.onnx.data": "model.onnx.data"}.get(target, "secret")  # fmt: skip
        (bundle / target).symlink_to(outside / decoy)
        return f"{target} -> symlink to outside/{decoy}"
    if choice == "symlink-folder":
        shutil.rmtree(bundle / "decoder-fp32")
        (bundle / "decoder-fp32").symlink_to(outside, target_is_directory=True)
        return "decoder-fp32/ -> symlink to outside/"
    if choice == "truncate":
        data = (bundle / target).read_bytes()
        (bundle / target).write_bytes(data[: rng.randrange(len(data) + 1)])
        return f"truncate {target}"
    if choice == "delete":
        (bundle / target).unlink()
        return f"delete {target}"
    import onnx

    graph = onnx.load(str(bundle / "decoder-fp32/model.onnx"), load_external_data=False)
    location = rng.choice(["../../outside/model.onnx.data", str(outside / "model.onnx.data"), "../golden.npz"])
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(graph, str(bundle / "decoder-fp32/model.onnx"))
    return f"graph external data -> {location}"


def run_cli(args: list[str]) -> str:
    """'ok', 'error: <the one line>', or 'crash: <traceback>' (anything but a project error escaping --debug)."""
    global recording
    recording = True
    try:
        result = CliRunner().invoke(cli, ["--debug", *args])
    finally:
        recording = False
    if result.exception is None or (isinstance(result.exception, SystemExit) and result.exit_code in (0, 1)):
        if result.exit_code == 0:
            return "ok"
        lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        if result.exit_code == 1 and len(lines) == 1:
            return "error: " + lines[0]
        if args[0] == "check" and result.exit_code == 1:  # the pre-flight check's report is its message
            return "error: check found problems"
        return f"crash: exit {result.exit_code} without one Error line: {result.output[-300:]}"
    if isinstance(result.exception, GptDeployError):  # --debug shows its traceback; the CLI still says Error:
        return "error: " + str(result.exception)
    error = result.exception
    return "crash: " + "".join(traceback.format_exception(type(error), error, error.__traceback__))[-2000:]


def bundle_case(work: Path, case: Path, rng: random.Random) -> tuple[list[str], dict]:
    shutil.copytree(work / "bundle", case, symlinks=True)
    manifest = json.loads((case / MANIFEST_FILE).read_text())
    manifest.pop("checksum")
    changes = [mutate_tree(manifest, rng, hostile_values(work)) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.25:
        changes.append(mutate_files(case, rng, work))
    if rng.random() < 0.9:  # re-checksummed, as an attacker would
        manifest["checksum"] = _checksum(manifest)
    else:
        changes.append("stale checksum")
    (case / MANIFEST_FILE).write_text(json.dumps(manifest))  # ASCII: lone surrogates survive as escapes
    outcomes = {
        "inspect": run_cli(["inspect", str(case)]),
        "generate": run_cli(["generate", str(case), "-p", "Mia lives in", "--max-new-tokens", "3"]),
        "check": run_cli(["check", str(case), "--trt-version", "10.3"]),
    }
    return changes, outcomes


def checkpoint_case(work: Path, case: Path, rng: random.Random) -> tuple[list[str], dict]:
    shutil.copytree(work / "checkpoint", case, symlinks=True)
    config = json.loads((case / CONFIG_FILE).read_text())
    values = [*hostile_values(work), 4, 8, 16, 64, 100000, 10**9, 10**11, "rope", "rmsnorm", "swiglu", 1e-5]
    changes = []
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(list(config["model"]))
        config["model"][field] = rng.choice(values)
        changes.append(f"model/{field} = {config['model'][field]!r:.60}")
    if rng.random() < 0.2:
        changes.append(mutate_tree(config, rng, values))
    (case / CONFIG_FILE).write_text(json.dumps(config))
    return changes, {"generate": run_cli(["generate", str(case), "-p", "Mia lives in", "--max-new-tokens", "3"])}


def main(work: str, seed: str, count: str, results_file: str) -> None:
    work_dir, rng = Path(work), random.Random(int(seed))
    sys.addaudithook(audit)
    results = []
    for index in range(int(count)):
        with contextlib.suppress(OSError):
            os.open(f"{MARKER}/case-{index}", os.O_RDONLY)  # splits an strace log by case
        opened.clear()
        kind = "checkpoint" if index % 4 == 3 else "bundle"
        case = work_dir / "cases" / f"{kind}-{index}"
        changes, outcomes = (checkpoint_case if kind == "checkpoint" else bundle_case)(work_dir, case, rng)
        outside = sorted({path for path in opened if reads_outside(path, work_dir)})
        results.append({"case": index, "kind": kind, "changes": changes, "outcomes": outcomes, "opened": outside})
        shutil.rmtree(case)
    Path(results_file).write_text(json.dumps(results, indent=1, ensure_ascii=True))


def reads_outside(path: str, work: Path) -> bool:
    """A decoy, or /etc/passwd: what a hostile path in a case points at."""
    resolved = os.path.realpath(path)
    return resolved == "/etc/passwd" or resolved.startswith(str((work / "outside").resolve()) + os.sep)


if __name__ == "__main__":
    main(*sys.argv[1:5])
