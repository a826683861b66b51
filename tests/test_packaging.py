import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_export_and_runtimes_inside_the_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("gptdeploy-*.whl")
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
    assert "Requires-Dist: torch>=2.4" in text
    assert "Provides-Extra: gpu" in text


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
