"""The deployment bundle: a folder that runs anywhere its backend exists and can prove what it holds.

`manifest.json` lists the model config, the graph IO names, every artifact with the sha256 of each of its files,
the tool versions, and the parity results measured at export time. It is written last and atomically, and carries
a checksum of its own content, so loading can refuse a bundle that is incomplete, corrupt, truncated or edited.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BundleError, ConfigError
from gptdeploy.fileio import atomic_write_json, read_format_json

FORMAT = "gptdeploy-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
GOLDEN_FILE = "golden.npz"
REEXPORT = "re-export it with `gptdeploy export CHECKPOINT -o BUNDLE`"


@dataclass(frozen=True)
class Artifact:
    name: str  # unique within the bundle, e.g. "onnx-fp32"
    kind: str  # "onnx" (later also "tensorrt")
    precision: str  # fp32, fp16, int8, ...
    path: str  # the file a backend opens, relative to the bundle
    files: dict[str, str]  # every file the artifact needs (graph, external data) -> sha256
    opset: int | None = None
    details: dict = field(default_factory=dict)  # op counts, fused ops, tool versions, parity results


@dataclass(frozen=True)
class Bundle:
    path: Path
    config: GPTConfig
    manifest: dict
    artifacts: list[Artifact]

    def artifact(self, kind: str = "onnx", precision: str | None = None) -> Artifact:
        """The first artifact of `kind` (and `precision`, if given)."""
        for artifact in self.artifacts:
            if artifact.kind == kind and precision in (None, artifact.precision):
                return artifact
        available = ", ".join(f"{a.kind}/{a.precision}" for a in self.artifacts) or "none"
        wanted = f"{kind}/{precision}" if precision else kind
        raise BundleError(f"{self.path} has no {wanted} artifact (it has: {available})")

    def file(self, relative: str) -> Path:
        return self.path / relative


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksum(manifest: dict) -> str:
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(bundle_dir: Path, config: GPTConfig, io: dict, artifacts: list[Artifact], tools: dict) -> Path:
    """Hash the shared files and write manifest.json last, atomically, with its own checksum."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gptdeploy_version": __version__,
        "tools": tools,
        "model": config.to_dict(),
        "io": io,
        "files": {name: sha256_file(bundle_dir / name) for name in (TOKENIZER_FILE, GOLDEN_FILE)},
        "artifacts": [asdict(artifact) for artifact in artifacts],
    }
    manifest["checksum"] = _checksum(manifest)
    return atomic_write_json(bundle_dir / MANIFEST_FILE, manifest)


def read_manifest(bundle_dir: str | Path) -> dict:
    """The manifest after checking it is ours, unedited and of a format this version reads."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_FILE
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle (no {MANIFEST_FILE}; an export may have been cut short); "
                          f"{REEXPORT}")  # fmt: skip
    manifest = read_format_json(path, FORMAT, FORMAT_VERSION, BundleError, REEXPORT, "bundle")
    if manifest.get("checksum") != _checksum(manifest):
        raise BundleError(f"{path} was edited after export (its checksum does not match); {REEXPORT}")
    return manifest


def load_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle; with `verify`, every file must exist and match its sha256."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    try:
        config = GPTConfig.from_dict(manifest["model"])
        artifacts = [Artifact(**entry) for entry in manifest["artifacts"]]
    except (KeyError, TypeError, ConfigError) as error:
        raise BundleError(f"{bundle_dir / MANIFEST_FILE} is malformed ({error}); {REEXPORT}") from error
    if verify:
        expected = dict(manifest["files"])
        for artifact in artifacts:
            expected.update(artifact.files)
        for name, digest in expected.items():
            verify_file(bundle_dir, name, digest)
    return Bundle(path=bundle_dir, config=config, manifest=manifest, artifacts=artifacts)


def verify_file(bundle_dir: Path, name: str, digest: str) -> None:
    path = bundle_dir / name
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is incomplete: {name} is missing; {REEXPORT}")
    if sha256_file(path) != digest:
        raise BundleError(f"{path} does not match its sha256 in the manifest (corrupt, truncated or modified); "
                          f"{REEXPORT}")  # fmt: skip
