"""The C API end to end: libgptdeploy.so built by `gptdeploy capi build`, C programs compiled against it with the
system compiler, and their output compared with Python's generate() on the same tiny bundle."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptdeploy import __version__
from gptdeploy.cli import main
from gptdeploy.generate import GenerationConfig, generate
from gptdeploy.runtimes.base import load_runtime

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "runtimes" / "capi" / "gptdeploy.h"
STATUS = {name: int(value) for name, value in re.findall(r"\b(GD_(?:OK|E_\w+)) = (\d+)", HEADER.read_text())}
FINISH = {"length": 0, "stop": 1, "eos": 2, "context_full": 3}  # gd_finish_reason
COMPILER = shutil.which("cc") or shutil.which("gcc")
PROMPTS = ["Mia lives in", "The market in Hillford opens on", "Zoë hat 12 Äpfel 🍎", "Q: What is 23 plus 48?\nA:"]

MISSING = [module for module in ("cffi", "onnxruntime", "onnxscript") if importlib.util.find_spec(module) is None]

pytestmark = [
    pytest.mark.skipif(COMPILER is None, reason="no C compiler (cc or gcc) on PATH to build the C API with"),
    pytest.mark.skipif(bool(MISSING), reason=f"optional dependency {', '.join(MISSING)} is not installed"),
]


@pytest.fixture(scope="module")
def capi_dir(tmp_path_factory) -> Path:
    """The library, header and pkg-config file, built once through the CLI."""
    out = tmp_path_factory.mktemp("capi") / "lib"
    result = CliRunner().invoke(main, ["capi", "build", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert written == {"library": str(out / "libgptdeploy.so"), "header": str(out / "gptdeploy.h"),
                       "pkg_config": str(out / "gptdeploy.pc")}  # fmt: skip
    return out


def compile_c(source: Path, capi_dir: Path, output: Path, link: bool = True) -> Path:
    """Compile a C program against the header; linked with the library, or left to dlopen it (link=False)."""
    flags = ["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{capi_dir}"]
    links = [f"-L{capi_dir}", f"-Wl,-rpath,{capi_dir}", "-lgptdeploy", "-lm"] if link else ["-ldl"]
    subprocess.run([COMPILER, *flags, "-o", str(output), str(source), *links], check=True)
    return output


@pytest.fixture(scope="module")
def driver(capi_dir, tmp_path_factory) -> Path:
    return compile_c(ROOT / "tests/runtimes/capi/driver.c", capi_dir, tmp_path_factory.mktemp("driver") / "driver")


@pytest.fixture(scope="module")
def python_runtime(bundle_dir):
    with load_runtime(bundle_dir, max_slots=1) as runtime:
        yield runtime


def run_driver(driver: Path, bundle_dir: Path, *args: str) -> list[list[str]]:
    result = subprocess.run([str(driver), str(bundle_dir), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def hex_text(field: str) -> str:
    return bytes.fromhex(field).decode("utf-8")


def test_build_writes_the_library_the_header_and_a_pkg_config_file(capi_dir):
    assert (capi_dir / "gptdeploy.h").read_bytes() == HEADER.read_bytes()
    pc = (capi_dir / "gptdeploy.pc").read_text()
    assert f"prefix={capi_dir}" in pc and "-Wl,-rpath,${libdir} -lgptdeploy" in pc
    if shutil.which("pkg-config"):
        env = {**os.environ, "PKG_CONFIG_PATH": str(capi_dir)}
        query = ["pkg-config", "--cflags", "--libs", "gptdeploy"]
        flags = subprocess.run(query, env=env, capture_output=True, text=True, check=True).stdout.split()
        assert flags == [f"-I{capi_dir}", f"-L{capi_dir}", f"-Wl,-rpath,{capi_dir}", "-lgptdeploy"]
    library = ctypes.CDLL(str(capi_dir / "libgptdeploy.so"))  # these three never start Python
    library.gd_version.restype = ctypes.c_char_p
    assert library.gd_abi_version() == int(re.search(r"#define GD_ABI_VERSION (\d+)", HEADER.read_text())[1])
    assert library.gd_version().decode() == __version__
    declared = set(re.findall(r"GD_API \w[\w ]*?\**(gd_\w+)\(", HEADER.read_text()))
    assert len(declared) == 10 and all(hasattr(library, name) for name in declared)
    assert not hasattr(library, "gdpy_generate") and not hasattr(library, "gd__set_error")  # internals stay hidden


def test_a_build_that_cannot_compile_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["capi", "build", "-o", str(tmp_path / "lib")], env={"CC": "false"})
    assert result.exit_code == 1
    assert "Error: compiling libgptdeploy.so failed" in result.output and "C compiler" in result.output
    assert not (tmp_path / "lib" / "libgptdeploy.so").exists()


@pytest.mark.parametrize("language", ["c", "c++"])
def test_the_header_compiles_as_strict_c_and_cpp(language, tmp_path):
    compiler = COMPILER if language == "c" else shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler (c++ or g++) on PATH")
    standard = "-std=c99" if language == "c" else "-std=c++11"
    subprocess.run([compiler, "-x", language, standard, "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                    str(HEADER)], check=True)  # fmt: skip


def test_example_service_streams_what_python_generates(capi_dir, bundle_dir, python_runtime, tmp_path):
    """Built with its Makefile and run with a PATH, PYTHONHOME and PYTHONPATH that point at another Python: the
    library still starts the interpreter it was built for."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed (needed to build samples/c)")
    subprocess.run(["make", "-C", str(ROOT / "samples/c"), f"GPTDEPLOY={capi_dir}", f"BUILD={tmp_path}"], check=True,
                   capture_output=True)  # fmt: skip
    impostor = tmp_path / "bin"
    impostor.mkdir()
    for name in ("python", "python3"):
        (impostor / name).write_text("#!/bin/sh\nexit 1\n")
        (impostor / name).chmod(0o755)
    env = {"PATH": f"{impostor}:/usr/bin:/bin", "PYTHONHOME": "/nonexistent", "PYTHONPATH": "/nonexistent"}
    lines = "".join(prompt.replace("\n", "\\n") + "\n" for prompt in PROMPTS)
    served = subprocess.run([str(tmp_path / "service"), "-n", "12", str(bundle_dir)], input=lines.encode(),
                            capture_output=True, env=env, timeout=120)  # fmt: skip
    assert served.returncode == 0, served.stderr.decode()
    config = GenerationConfig(max_new_tokens=12)
    expected = "".join(generate(python_runtime, prompt, config).text + "\n" for prompt in PROMPTS)
    assert served.stdout.decode("utf-8") == expected


def test_a_host_that_dlopens_the_library_locally_gets_the_same_completion(capi_dir, bundle_dir, python_runtime,
                                                                         tmp_path):  # fmt: skip
    """RTLD_LOCAL keeps libpython's symbols from the extension modules Python imports, unless the library
    makes them global; the program also times the start."""
    program = compile_c(ROOT / "tests/runtimes/capi/startup.c", capi_dir, tmp_path / "startup", link=False)
    result = subprocess.run([str(program), str(capi_dir / "libgptdeploy.so"), str(bundle_dir), PROMPTS[0]],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    *timings, text = result.stdout.split("\t")
    assert all(float(ms) >= 0 for ms in timings)
    assert hex_text(text.strip()) == generate(python_runtime, PROMPTS[0], GenerationConfig(max_new_tokens=8)).text


@pytest.mark.parametrize(
    "settings",
    [dict(temperature=0.0), dict(temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.2, seed=7)],
    ids=["greedy", "seeded-sampling"],
)
def test_generate_and_stream_equal_python_generate(settings, driver, bundle_dir, python_runtime):
    config = GenerationConfig(max_new_tokens=10, **settings)
    args = [config.max_new_tokens, config.temperature, config.top_k, config.top_p, config.repetition_penalty,
            config.seed]  # fmt: skip
    rows = run_driver(driver, bundle_dir, "generate", *map(str, args), *PROMPTS)
    assert len(rows) == len(PROMPTS)
    for prompt, (status, text, streamed, finish, tokens) in zip(PROMPTS, rows, strict=True):
        expected = generate(python_runtime, prompt, config)
        assert int(status) == STATUS["GD_OK"]
        assert hex_text(text) == hex_text(streamed) == expected.text
        assert (int(finish), int(tokens)) == (FINISH[expected.finish_reason], len(expected.tokens))


def test_four_threads_sharing_a_model_all_get_correct_results(driver, bundle_dir, python_runtime):
    config = GenerationConfig(max_new_tokens=8)
    expected = [generate(python_runtime, prompt, config).text for prompt in PROMPTS]
    rows = run_driver(driver, bundle_dir, "threads", str(config.max_new_tokens), "3", *PROMPTS)
    assert len(rows) == 4 * 3 * len(PROMPTS)
    assert {row[0] for row in rows} == {"0", "1", "2", "3"}
    for _, prompt_index, status, text in rows:
        assert int(status) == STATUS["GD_OK"]
        assert hex_text(text) == expected[int(prompt_index)]


# check name -> (status, None for a void function; the value the driver reports; words the message must contain)
BAD_INPUT = {
    "load_null_path": ("GD_E_NULL_ARGUMENT", 0, "path is NULL"),
    "load_null_out": ("GD_E_NULL_ARGUMENT", 0, "out_model is NULL"),
    "load_empty_path": ("GD_E_INVALID_ARGUMENT", 0, "path is empty"),
    "load_missing": ("GD_E_NOT_FOUND", 0, "/nonexistent/bundle does not exist"),
    "load_corrupt": ("GD_E_BAD_MODEL", 0, "does not match its sha256"),
    "load_file": ("GD_E_BAD_MODEL", 0, "is a file"),
    "load_unknown_backend": ("GD_E_BACKEND", 0, "unknown backend 'nope'"),
    "load_bad_utf8_device": ("GD_E_INVALID_UTF8", 0, "options->device is not valid UTF-8: byte 0 (0xff)"),
    "load_old_options": ("GD_E_VERSION", 0, "options->struct_size is 3"),
    "load_options_ok": ("GD_OK", 1, ""),
    "generate_null_model": ("GD_E_NULL_ARGUMENT", 0, "model is NULL"),
    "generate_bad_handle": ("GD_E_INVALID_ARGUMENT", 0, "0x1234 is not a live handle"),
    "generate_null_prompt": ("GD_E_NULL_ARGUMENT", 0, "prompt is NULL"),
    "generate_bad_utf8": ("GD_E_INVALID_UTF8", 0, "prompt is not valid UTF-8: byte 4 (0xe2)"),
    "generate_empty_prompt": ("GD_E_INVALID_ARGUMENT", 0, "empty"),
    "generate_long_prompt": ("GD_E_INVALID_ARGUMENT", 0, "more than the model's context of 128"),
    "generate_null_buffer": ("GD_E_NULL_ARGUMENT", 0, "buffer is NULL but its capacity is 16"),
    "generate_old_info": ("GD_E_VERSION", 0, "info->struct_size is 0"),
    "params_init_null": ("GD_E_NULL_ARGUMENT", 0, "params is NULL"),
    "buffer_exact": ("GD_OK", 1, ""),
    "last_error_cleared": ("GD_OK", 0, ""),
    "negative_temperature": ("GD_E_INVALID_ARGUMENT", 0, "temperature must be >= 0"),
    "nan_temperature": ("GD_E_INVALID_ARGUMENT", 0, "got nan"),
    "zero_top_p": ("GD_E_INVALID_ARGUMENT", 0, "top_p must be in (0, 1]"),
    "large_top_p": ("GD_E_INVALID_ARGUMENT", 0, "got 1.5"),
    "negative_top_k": ("GD_E_INVALID_ARGUMENT", 0, "top_k must be >= 0"),
    "one_min_p": ("GD_E_INVALID_ARGUMENT", 0, "min_p must be in [0, 1)"),
    "zero_penalty": ("GD_E_INVALID_ARGUMENT", 0, "repetition_penalty must be > 0"),
    "zero_max_new": ("GD_E_INVALID_ARGUMENT", 0, "max_new_tokens must be >= 1"),
    "old_params": ("GD_E_VERSION", 0, "params->struct_size is 8"),
    "null_stop_array": ("GD_E_NULL_ARGUMENT", 0, "stop_strings is NULL but stop_string_count is 2"),
    "null_stop": ("GD_E_NULL_ARGUMENT", 0, "params->stop_strings[1] is NULL"),
    "bad_utf8_stop": ("GD_E_INVALID_UTF8", 0, "params->stop_strings[0] is not valid UTF-8"),
    "empty_stop": ("GD_E_INVALID_ARGUMENT", 0, "stop strings must be non-empty text"),
    "tokenize_null_count": ("GD_E_NULL_ARGUMENT", 0, "out_count is NULL"),
    "tokenize_bad_utf8": ("GD_E_INVALID_UTF8", 0, "text is not valid UTF-8"),
    "detokenize_roundtrip": ("GD_OK", 1, ""),
    "detokenize_out_of_vocab": ("GD_E_INVALID_ARGUMENT", 0, "tokens[1] is 99999, outside the vocabulary [0, 320)"),
    "detokenize_null_tokens": ("GD_E_NULL_ARGUMENT", 0, "tokens is NULL"),
    "stream_null_callback": ("GD_E_NULL_ARGUMENT", 0, "callback is NULL"),
    "stream_cancelled": ("GD_E_CANCELLED", 1, "cancelled the generation after 1 pieces"),
    "stream_reentrant_generate": ("GD_OK", 0, ""),  # the model's engine runs it beside the stream
    "stream_reentrant_tokenize": ("GD_OK", 0, ""),
    "stream_refused_free": (None, 0, "gd_model_free was called from the model's own stream callback"),
    "model_alive_after_refused_free": ("GD_OK", 0, ""),
    "error_is_thread_local": ("GD_E_NULL_ARGUMENT", 0, "model is NULL"),  # value: length of the new thread's error
    "use_after_free": ("GD_E_INVALID_ARGUMENT", 0, "is not a live handle from gd_model_load (freed already?)"),
}


def test_bad_input_gets_its_status_and_message_and_never_crashes(driver, bundle_dir, python_runtime, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bundle_dir, corrupt)
    graph = corrupt / "decoder-fp32" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-100])
    rows = {row[0]: row[1:] for row in run_driver(driver, bundle_dir, "errors", str(corrupt),
                                                  str(bundle_dir / "manifest.json"))}  # fmt: skip
    for name, (status, value, words) in BAD_INPUT.items():
        got_status, got_value, message = rows[name]
        assert (int(got_status), int(got_value)) == (STATUS.get(status, -1), value), (name, message)
        assert words in message, (name, message)
        assert (message == "") == (status == "GD_OK"), (name, message)
    config = GenerationConfig(max_new_tokens=12, ignore_eos=True)
    needed = len(generate(python_runtime, "Mia lives in", config).text.encode()) + 1
    tokens = len(python_runtime.tokenizer.encode("Mia lives in"))
    sized = {
        "size_query": needed,  # NULL buffer, capacity 0: the size comes back
        "buffer_too_small": needed,  # and the small buffer holds an empty string
        "tokenize_size_query": tokens,
        "tokenize_too_small": tokens,
        "tokenize": tokens,
        "detokenize_too_small": len("Mia lives in") + 1,
    }
    for name, value in sized.items():
        expected_status = "GD_OK" if name == "tokenize" else "GD_E_BUFFER_TOO_SMALL"
        assert (int(rows[name][0]), int(rows[name][1])) == (STATUS[expected_status], value), (name, rows[name])


def test_memory_stays_flat_over_1000_generate_calls(driver, bundle_dir):
    """RSS after a warm-up and after two windows of 1,000 calls: a leak of 256 bytes per call grows both."""
    ((warm, first, second),) = run_driver(driver, bundle_dir, "memory", "1000")
    growth = [int(first) - int(warm), int(second) - int(first)]
    assert min(growth) < 256, f"RSS grew by {growth} KiB over two windows of 1,000 calls"
    assert sum(growth) < 4096, f"RSS grew by {growth} KiB over two windows of 1,000 calls"
