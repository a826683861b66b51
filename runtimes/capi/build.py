"""Build libgptdeploy.so with cffi's embedding mode: C functions (shim.c) whose work runs in Python.

The library is tied to the interpreter that builds it: it links that interpreter's libpython with an rpath and
starts that exact executable (see shim.c), so it never picks up another Python from PATH. A service ships it
together with that Python installation (gptdeploy, numpy, tokenizers, cffi and the backend installed in it).
"""

from __future__ import annotations

import logging
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.errors import BackendError
from gptdeploy.fileio import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

SOURCES = Path(__file__).parent
LIBRARY, HEADER, PKG_CONFIG = "libgptdeploy.so", "gptdeploy.h", "gptdeploy.pc"
MODULE = "_gptdeploy_capi"  # the name of the Python extension module the library also is

# What Python sees of gptdeploy.h: the types it reads and writes (`...` takes layouts from the compiler), the
# Python implementations (gdpy_*, implementation.py) and the C helpers they call (shim.c).
CDEF = """
typedef enum gd_status { GD_OK, GD_E_NULL_ARGUMENT, GD_E_INVALID_ARGUMENT, GD_E_INVALID_UTF8,
    GD_E_BUFFER_TOO_SMALL, GD_E_VERSION, GD_E_NOT_FOUND, GD_E_BAD_MODEL, GD_E_BACKEND, GD_E_BUSY, GD_E_CANCELLED,
    GD_E_PYTHON, GD_E_INTERNAL, ... } gd_status;
typedef enum gd_finish_reason { GD_FINISH_LENGTH, GD_FINISH_STOP, GD_FINISH_EOS, GD_FINISH_CONTEXT_FULL, ... }
    gd_finish_reason;
typedef struct gd_model gd_model;
typedef struct gd_load_options { size_t struct_size; const char *backend; const char *device;
    const char *precision; const char *artifact; ...; } gd_load_options;
typedef struct gd_generation_params { size_t struct_size; int32_t max_new_tokens; double temperature;
    int32_t top_k; double top_p; double min_p; double repetition_penalty; uint64_t seed;
    const char *const *stop_strings; size_t stop_string_count; int32_t ignore_eos; ...; } gd_generation_params;
typedef struct gd_generation_info { size_t struct_size; gd_finish_reason finish_reason; int32_t prompt_tokens;
    int32_t generated_tokens; double prefill_seconds; double decode_seconds; ...; } gd_generation_info;
typedef int (*gd_stream_callback)(const char *piece, size_t size, void *user_data);

extern "Python" int gdpy_ready(void);
extern "Python" gd_status gdpy_generation_params_init(gd_generation_params *params);
extern "Python" gd_status gdpy_model_load(const char *path, const gd_load_options *options, gd_model **out_model);
extern "Python" void gdpy_model_free(gd_model *model);
extern "Python" gd_status gdpy_tokenize(gd_model *model, const char *text, int32_t *tokens, size_t capacity,
    size_t *out_count);
extern "Python" gd_status gdpy_detokenize(gd_model *model, const int32_t *tokens, size_t count, char *buffer,
    size_t capacity, size_t *out_required);
extern "Python" gd_status gdpy_generate(gd_model *model, const char *prompt, const gd_generation_params *params,
    char *buffer, size_t capacity, size_t *out_required, gd_generation_info *info);
extern "Python" gd_status gdpy_generate_stream(gd_model *model, const char *prompt,
    const gd_generation_params *params, gd_stream_callback callback, void *user_data);

void gd__set_error(const char *message);
void gd__set_startup_error(const char *message);
int gd__call_stream_callback(gd_stream_callback callback, const char *piece, size_t size, void *user_data);
"""

# Runs in the embedded interpreter on the first call. A failure is kept as the message every call then returns.
INIT_CODE = """
import sys
from {module} import ffi, lib

def _install():
    if sys.version_info[:2] != {version}:
        raise RuntimeError(f"built for Python {version} but running {{sys.version_info[:2]}}; rebuild the library")
    from gptdeploy.runtimes.capi.implementation import install
    install(ffi, lib)

try:
    _install()
    _ready = 1
except Exception as error:
    _message = f"the embedded Python {{sys.executable}} cannot run gptdeploy: {{type(error).__name__}}: {{error}}"
    lib.gd__set_startup_error(_message.encode("utf-8", "replace")[:2000])
    _ready = 0

@ffi.def_extern(name="gdpy_ready")
def _report_ready():
    return _ready
"""


def build_library(out_dir: str | Path) -> dict[str, Path]:
    """Compile libgptdeploy.so for this interpreter; write it, gptdeploy.h and gptdeploy.pc into `out_dir`.

    Returns {"library", "header", "pkg_config"}: the paths written. Each file is moved into place whole.
    """
    try:
        import cffi
    except ModuleNotFoundError as error:
        raise BackendError("building the C API needs cffi: pip install 'gptdeploy[capi]'") from error
    out_dir = Path(out_dir).resolve()
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise BackendError(f"{sys.executable} has no shared libpython to embed; use a Python built with "
                           "--enable-shared (distribution, pyenv with PYTHON_CONFIGURE_OPTS, conda, uv)")  # fmt: skip
    libdir = sysconfig.get_config_var("LIBDIR")
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(CDEF)
    ffibuilder.embedding_init_code(INIT_CODE.format(module=MODULE, version=tuple(sys.version_info[:2])))
    ffibuilder.set_source(
        MODULE,
        f"#define GD_PYTHON_EXECUTABLE {_c_string(sys.executable)}\n"
        f"#define GD_PYTHON_LIBRARY {_c_string(str(Path(libdir) / sysconfig.get_config_var('INSTSONAME')))}\n"
        f"#define GD_PACKAGE_VERSION {_c_string(__version__)}\n" + (SOURCES / "shim.c").read_text(encoding="utf-8"),
        include_dirs=[str(SOURCES)],
        library_dirs=[libdir],
        runtime_library_dirs=[libdir],
        extra_compile_args=["-fvisibility=hidden", "-pthread"],
        extra_link_args=["-pthread", "-ldl"],
    )
    logger.info("compiling %s for %s", LIBRARY, sys.executable)
    with tempfile.TemporaryDirectory(prefix="gptdeploy-capi-") as tmp:
        try:
            built = Path(ffibuilder.compile(tmpdir=tmp, target=LIBRARY))
        except (cffi.VerificationError, OSError) as error:
            raise BackendError(f"compiling {LIBRARY} failed ({error}); it needs a C compiler (gcc or clang) and "
                               f"Python's headers ({sysconfig.get_config_var('INCLUDEPY')})") from error  # fmt: skip
        paths = {"library": out_dir / LIBRARY, "header": out_dir / HEADER, "pkg_config": out_dir / PKG_CONFIG}
        atomic_write(paths["library"], lambda tmp_path: shutil.copyfile(built, tmp_path))
    atomic_write(paths["header"], lambda tmp_path: shutil.copyfile(SOURCES / HEADER, tmp_path))
    template = (SOURCES / "gptdeploy.pc.in").read_text(encoding="utf-8")
    atomic_write_text(paths["pkg_config"], template.replace("@PREFIX@", str(out_dir)).replace("@VERSION@", __version__))
    paths["library"].chmod(0o755)
    return paths


def _c_string(text: str) -> str:
    """A C string literal for `text` (paths may hold quotes, backslashes or non-ASCII bytes)."""
    return '"' + "".join(f"\\{byte:03o}" for byte in text.encode("utf-8", "surrogateescape")) + '"'
