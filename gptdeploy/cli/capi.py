"""`gptdeploy capi ...`: the C API for C and C++ services."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import emit


@click.group("capi")
def capi_group() -> None:
    """The C API: libgptdeploy.so and gptdeploy.h for C and C++ services."""


@capi_group.command("build")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for libgptdeploy.so, gptdeploy.h and gptdeploy.pc.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as one JSON document.")
def build_command(out_dir: Path, as_json: bool) -> None:
    """Write libgptdeploy.so, gptdeploy.h and gptdeploy.pc for this Python.

    The library runs this interpreter's gptdeploy: deploy it together with this Python installation.

    Example: gptdeploy capi build -o build/capi && PKG_CONFIG_PATH=build/capi pkg-config --libs gptdeploy
    """
    from gptdeploy.runtimes.capi.build import build_library

    paths = {name: str(path) for name, path in build_library(out_dir).items()}
    emit(paths, as_json, lambda d: "\n".join(f"wrote {path}" for path in d.values()))
