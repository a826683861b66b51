"""Paths that come from files or names, confined to the folder they belong to.

A bundle's manifest names its artifacts' files, an ONNX graph names its external data, a Hugging Face index names
its weight shards, and a user names artifacts that become folders. A broken or hostile folder must never make
gptdeploy read or write outside it, so every such path is checked here, before anything is opened: a relative path
of plain parts (not absolute, no `..`) that still lies inside the folder once symlinks are resolved.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from gptdeploy.errors import GptDeployError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")  # what an artifact name may be: it becomes a folder name


def inside(
    root: str | Path, relative: object, error: type[GptDeployError], what: str, fix: str, within: Path | None = None
) -> Path:
    """`root / relative` after checking that `relative` stays inside `root`; raises `error` naming `what` (e.g.
    "manifest file entry") and `fix` otherwise. Symlinks are fine as long as they resolve inside `root` (or inside
    `within`, a folder around it, where a layout keeps its files elsewhere)."""
    root = Path(root)
    problem = _problem(root, relative, Path(within) if within is not None else root)
    if problem:
        raise error(f"{root}: {what} {relative!r} {problem}; refusing to open it: {fix}")
    return root / relative


def _problem(root: Path, relative: object, within: Path) -> str | None:
    if not isinstance(relative, str) or not relative:
        return "is not a relative path"
    if "\x00" in relative or "\\" in relative:
        return "is not a portable relative path (it holds a NUL or a backslash)"
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        return "is an absolute path, not one relative to the folder"
    if ".." in PurePosixPath(relative).parts:
        return "leaves the folder (..)"
    try:
        base, target = within.resolve(), (root / relative).resolve()
    except (OSError, RuntimeError) as cause:  # a symlink loop
        return f"cannot be resolved ({cause})"
    if target != base and base not in target.parents:
        return f"resolves to {target}, outside the folder (through a symlink)"
    return None


def check_name(name: object, error: type[GptDeployError], what: str = "artifact name") -> str:
    """A name that becomes a folder name: letters, digits, '-' and '_' only (no '/', '.', or spaces)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise error(f"{what} {name!r} is not allowed: use 1-100 letters, digits, '-' or '_', starting with a letter "
                    "or digit")  # fmt: skip
    return name


def external_data_files(graph: str | Path, error: type[GptDeployError], fix: str) -> list[str]:
    """The external data files an ONNX graph reads (paths relative to the graph's folder), each checked to stay in
    that folder; the graph is parsed without its weights."""
    import onnx
    from google.protobuf.message import DecodeError

    graph = Path(graph)
    try:
        # protobuf whatever the name: onnx would parse a path ending in .json or .txt as another serialization
        model = onnx.load(str(graph), format="protobuf", load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as cause:
        raise error(f"{graph} is not an ONNX graph ({type(cause).__name__}: {cause})"
                    f"; {fix}".replace("\n", " ")) from cause  # fmt: skip
    locations = []
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        inside(graph.parent, location, error, f"the external data of {tensor.name!r} in {graph.name}", fix)
        locations.append(location)
    return sorted(set(locations))


def _tensors(graph):
    """Every tensor a graph holds: initializers, and constant tensors of nodes and subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)
