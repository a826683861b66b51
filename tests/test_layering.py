"""Which layer may import which, read from the source: runtimes never import export, nothing imports the CLI, only
the server package uses the server's optional libraries (so `import gptdeploy` never needs FastAPI), and
the modules a torch-free deployment runs never import torch when they are imported (lazy imports inside functions
are how the optional parts reach their libraries, and stay allowed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gptdeploy": ROOT / "gptdeploy", "gptdeploy.export": ROOT / "export",
            "gptdeploy.runtimes": ROOT / "runtimes"}  # fmt: skip
# What runs a bundle without torch: the generate API, the ONNX Runtime and TensorRT backends, the C API, bundle
# checks and parity against golden references, and the CLI's entry point.
TORCH_FREE = [
    "gptdeploy", "gptdeploy.generate", "gptdeploy.engine", "gptdeploy.sampling", "gptdeploy.runtimes.base",
    "gptdeploy.runtimes.ort_runtime", "gptdeploy.runtimes.trt_runtime", "gptdeploy.runtimes.capi.implementation",
    "gptdeploy.bundle", "gptdeploy.checkpoint", "gptdeploy.golden", "gptdeploy.parity", "gptdeploy.evaluate",
    "gptdeploy.graph_contract", "gptdeploy.chat_template", "gptdeploy.cli", "gptdeploy.export.genai_config",
    "gptdeploy.export.preflight", "gptdeploy.serve.app", "gptdeploy.serve.runner", "gptdeploy.serve.options",
]  # fmt: skip
SERVE_LIBRARIES = ("fastapi", "starlette", "uvicorn", "prometheus_client", "ray")  # the serve and ray extras


def source_modules() -> dict[str, str]:
    """Every module of the installed package (export/ and runtimes/ under their installed names) -> its source."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "gptdeploy" and parts[0] in ("export", "runtimes"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            modules[name] = path.read_text(encoding="utf-8")
    return modules


def imported(name: str, source: str, top_level_only: bool) -> set[str]:
    """The modules `source` imports: all of them, or only those imported when the module itself is imported (not
    inside functions, not under `if TYPE_CHECKING`)."""
    found = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if top_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package this module is in
                    package = name.rsplit(".", child.level)[0]
                    base = f"{package}.{base}" if base else package
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(source))
    return found


def violations(modules: dict[str, str]) -> list[str]:
    """Every import that breaks a rule, as 'module -> import: why'."""
    problems = []
    for name, source in modules.items():
        for target in imported(name, source, top_level_only=False):
            if name.startswith("gptdeploy.runtimes") and target.startswith("gptdeploy.export"):
                problems.append(f"{name} -> {target}: runtimes only load files; building them is export's job")
            if target.startswith("gptdeploy.cli") and not name.startswith(("gptdeploy.cli", "gptdeploy.__main__")):
                problems.append(f"{name} -> {target}: the CLI is a leaf; libraries never import it")
            if target.split(".")[0] in SERVE_LIBRARIES and not name.startswith("gptdeploy.serve"):
                problems.append(f"{name} -> {target}: only gptdeploy.serve may use the optional serve extra")
    for name in TORCH_FREE:
        seen, chain = {name}, [name]
        while chain:
            current = chain.pop()
            for target in imported(current, modules[current], top_level_only=True):
                if target == "torch" or target.startswith("torch."):
                    problems.append(f"{name} imports torch (through {current}): a torch-free install cannot run it")
                if target in modules and target not in seen:
                    seen.add(target)
                    chain.append(target)
    return problems


def test_the_package_keeps_its_layers():
    assert violations(source_modules()) == []


@pytest.mark.parametrize(
    ("module", "planted", "rule"),
    [
        ("gptdeploy.runtimes.ort_runtime", "from gptdeploy.export.pipeline import add_stage", "runtimes only load"),
        ("gptdeploy.engine_of_tomorrow", "import gptdeploy.cli.common", "the CLI is a leaf"),
        ("gptdeploy.sampling", "from gptdeploy.model import GPT", "gptdeploy.generate imports torch"),
        ("gptdeploy.engine", "import fastapi", "only gptdeploy.serve may use"),
    ],
)
def test_a_planted_forbidden_import_is_caught(module, planted, rule):
    modules = source_modules()
    modules[module] = modules.get(module, "") + f"\n{planted}\n"
    assert any(rule in problem for problem in violations(modules))


def test_a_lazy_import_inside_a_function_is_allowed():
    modules = source_modules()
    modules["gptdeploy.sampling"] += "\n\ndef later():\n    import torch\n"
    assert violations(modules) == []
