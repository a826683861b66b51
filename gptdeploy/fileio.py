"""Atomic file writes (a reader sees the old file or the new one, never half of one) and versioned JSON reads.

Every artifact gptdeploy writes (checkpoints, tokenizers, manifests, data) goes through here.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.errors import GptDeployError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on failure it disappears."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name in the same folder (so the rename is atomic); the writer creates it with normal permissions
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_format_json(
    path: Path, format_name: str, max_version: int, error: type[GptDeployError], fix: str, what: str
) -> dict:
    """One of our JSON documents (checkpoint config, bundle manifest): parsed, its format and version checked.

    `what` names the thing for messages ("checkpoint", "bundle"); `fix` says how to get a good one back.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as cause:
        raise error(f"{path} is corrupt ({cause}); {fix}") from cause
    if not isinstance(data, dict) or data.get("format") != format_name:
        raise error(f"{path} is not a gptdeploy {what} file")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(f"{path} is malformed (format_version {version!r} is not a positive integer); {fix}")
    if version > max_version:
        raise error(f"{path.parent} has {what} format {version!r}; this gptdeploy {__version__} reads up to "
                    f"{max_version}: upgrade gptdeploy")  # fmt: skip
    return data


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result into place."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: object) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
