import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(folder), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    (built,) = folder.glob("gptdeploy-*.whl")
    return built


@pytest.mark.slow
def test_wheel_contains_export_and_runtimes_inside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "gptdeploy/export/__init__.py" in names
    assert "gptdeploy/runtimes/__init__.py" in names
    assert "gptdeploy/model.py" in names and "gptdeploy/cli/__init__.py" in names
    assert "gptdeploy/serve/app.py" in names  # the server ships in the wheel; its libraries are an extra
    capi = {
        "gptdeploy/runtimes/capi/gptdeploy.h",
        "gptdeploy/runtimes/capi/shim.c",
        "gptdeploy/runtimes/capi/gptdeploy.pc.in",
    }
    assert capi <= set(names)  # what `gptdeploy capi build` compiles from an installed wheel
    assert not any(name.startswith(("export/", "runtimes/", "tests/")) for name in names)
    metadata = next(name for name in names if name.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "gptdeploy/corpus/tasks.py" in names  # the shipped tasks: parity and evaluate read them
    assert 'Requires-Dist: torch>=2.4; extra == "train"' in text and "Requires-Dist: onnxruntime>=1.20\n" in text
    assert "Provides-Extra: gpu" in text


@pytest.mark.slow
def test_the_core_install_runs_a_bundle_without_torch(wheel, bundle_dir, checkpoint_dir, tmp_path):
    """The wheel alone (its core dependencies from the package index) in a fresh venv without torch: the commands
    that run a bundle work, and one that needs torch names the extra to install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", str(wheel)],
                         capture_output=True, text=True)  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    python, cli = venv / "bin" / "python", venv / "bin" / "gptdeploy"

    def run(*args, stdin=None):
        return subprocess.run([*map(str, args)], capture_output=True, text=True, input=stdin, cwd=tmp_path)

    assert run(python, "-c", "import torch").returncode != 0
    assert run(cli, "inspect", bundle_dir).returncode == 0
    parity = run(cli, "parity", bundle_dir, "--json")
    assert parity.returncode == 0 and all(r["passed"] for r in json.loads(parity.stdout)["reports"])
    generated = run(cli, "generate", bundle_dir, "-p", "Mia lives in", "--max-new-tokens", "4", "--json")
    assert generated.returncode == 0 and json.loads(generated.stdout)["results"][0]["finish_reason"]
    assert run(cli, "chat", bundle_dir, "--max-new-tokens", "2", stdin="hello\n").returncode == 0
    api = (
        "from gptdeploy.generate import GenerationConfig, generate\n"
        "from gptdeploy.runtimes.base import load_runtime\n"
        f"with load_runtime({str(bundle_dir)!r}) as runtime:\n"
        "    print(len(generate(runtime, 'Mia', GenerationConfig(max_new_tokens=3, ignore_eos=True)).tokens))"
    )
    assert run(python, "-c", api).stdout.strip() == "3"
    for args, needs in ((["train", "--out", tmp_path / "run"], "needs torch"),
                        (["generate", checkpoint_dir, "-p", "x"], "needs torch")):  # fmt: skip
        result = run(cli, *args)
        assert result.returncode == 1 and needs in result.stderr and "gptdeploy[train]" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_generate_api_does_not_import_torch():
    """Deployment hosts running ONNX Runtime or TensorRT need not install torch."""
    modules = "gptdeploy, gptdeploy.generate, gptdeploy.sampling, gptdeploy.runtimes.base, gptdeploy.tokenizer"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_cli_help_works_without_loading_torch():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom gptdeploy.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\nassert result.exit_code == 0, result.output\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "False"
