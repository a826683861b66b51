"""The deployment bundle: a folder that runs anywhere its backend exists and can prove what it holds.

`manifest.json` lists the model config, the graph IO names, every artifact with the sha256 of each of its files,
the tool versions, and the parity results measured at export time. It is written last and atomically, and carries
a checksum of its own content, so loading can refuse a bundle that is incomplete, corrupt, truncated or edited.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BundleError, ConfigError
from gptdeploy.fileio import atomic_write_json, read_format_json
from gptdeploy.graph_contract import input_names, output_names
from gptdeploy.tokenizer import TOKENIZER_FILE

FORMAT = "gptdeploy-bundle"
FORMAT_VERSION = 2  # 2: typed artifact details, the reference accuracy at the top, decoder-fp32/ for the export
MANIFEST_FILE = "manifest.json"
GOLDEN_FILE = "golden.npz"
# Shared files a bundle may also hold: onnxruntime-genai's config for one of its graphs, and the special-token names
# Hugging Face tools (and onnxruntime-genai's tokenizer) read next to tokenizer.json.
OPTIONAL_FILES = ("genai_config.json", "tokenizer_config.json")
REEXPORT = "re-export it with `gptdeploy export CHECKPOINT -o BUNDLE`"


@dataclass(frozen=True)
class Guardrail:
    """How a quantized artifact met its budget: what was kept in fp32 and every candidate measured on the way."""

    budget: dict  # the Tolerance it was held to
    kept_fp32: list[str]  # layers left unquantized
    sensitivity: dict[str, float]  # layer -> mean KL with only that layer quantized (measured only on a miss)
    steps: list[dict]  # each candidate: layers kept, parity numbers, task accuracy, verdict


@dataclass(frozen=True)
class ArtifactDetails:
    """What the manifest records about one artifact, the same fields whatever stage made it."""

    source: str  # the artifact it was made from; for the exported graph, the checkpoint folder
    recipe: dict  # the stage's settings: fusion target and rules fired, quantization scheme, TensorRT build
    parity: dict  # ParityReport.to_dict(), measured on the golden references when the artifact was added
    task_accuracy: float | None = None  # held-out exact match, when the bundle records PyTorch's
    guardrail: Guardrail | None = None  # quantized artifacts only
    op_counts: dict[str, int] = field(default_factory=dict)  # ONNX graphs: "Op" or "domain::Op" -> nodes
    size_bytes: int = 0  # all of its files
    seconds: float = 0.0  # how long the stage took, parity included

    @classmethod
    def from_dict(cls, data: dict) -> ArtifactDetails:
        guardrail = data.get("guardrail")
        return cls(**{**data, "guardrail": Guardrail(**guardrail) if guardrail is not None else None})


@dataclass(frozen=True)
class Artifact:
    name: str  # unique within the bundle, e.g. "onnx-fp32"
    kind: str  # "onnx" or "tensorrt"
    precision: str  # fp32, fp16, int8, ...
    path: str  # the file a backend opens, relative to the bundle
    files: dict[str, str]  # every file the artifact needs (graph, external data) -> sha256
    opset: int | None = None
    details: ArtifactDetails | None = None  # None only while a stage is still judging it

    @classmethod
    def from_dict(cls, data: dict) -> Artifact:
        details = data.get("details")
        return cls(**{**data, "details": ArtifactDetails.from_dict(details) if details is not None else None})


@dataclass(frozen=True)
class Bundle:
    path: Path
    config: GPTConfig
    manifest: dict
    artifacts: list[Artifact]

    def artifact(self, kind: str | None = None, precision: str | None = None, name: str | None = None) -> Artifact:
        """The artifact called `name`, else the first of `kind` and `precision` (None: any)."""
        for artifact in self.artifacts:
            if name is not None and artifact.name == name:
                return artifact
            if name is None and kind in (None, artifact.kind) and precision in (None, artifact.precision):
                return artifact
        available = ", ".join(f"{a.name} ({a.kind} {a.precision})" for a in self.artifacts) or "none"
        wanted = repr(name) if name else "/".join(filter(None, (kind, precision))) or "any"
        raise BundleError(f"{self.path} has no {wanted} artifact (it has: {available})")

    def runnable(self, kind: str | None, precision: str = "auto", name: str | None = None) -> Artifact:
        """What a backend for `kind` (None: any backend) opens: the artifact called `name`, else the first of
        `precision` (auto: any)."""
        chosen = self.artifact(kind, None if precision == "auto" else precision, name)
        if kind is not None and chosen.kind != kind:
            raise BundleError(f"artifact {chosen.name!r} is a {chosen.kind} artifact; this backend runs {kind} ones")
        return chosen

    def file(self, relative: str) -> Path:
        return self.path / relative

    @property
    def reference_accuracy(self) -> float | None:
        """PyTorch's held-out task accuracy measured at export, when the model was tuned on the shipped tasks."""
        return self.manifest["reference"].get("task_accuracy")


FOLDER_PREFIX = {"onnx": "decoder", "tensorrt": "engine"}


def artifact_folder(kind: str, name: str) -> str:
    """Where an artifact's files live in the bundle: onnx-int8 -> decoder-int8/, tensorrt-fp32 -> engine-fp32/."""
    return f"{FOLDER_PREFIX[kind]}-{name.removeprefix(kind + '-')}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksum(manifest: dict) -> str:
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(bundle_dir: Path, config: GPTConfig, tools: dict, reference: dict) -> Path:
    """Hash the shared files and write a manifest with no artifact yet (stages add them), atomically.

    `reference` says what the artifacts are checked against: the checkpoint, and PyTorch's held-out task accuracy
    when it was measured.
    """
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gptdeploy_version": __version__,
        "tools": tools,
        "model": config.to_dict(),
        "io": {"inputs": input_names(config.n_layer), "outputs": output_names(config.n_layer)},
        "reference": reference,
        "files": shared_files(bundle_dir),
        "artifacts": [],
    }
    return _write(bundle_dir, manifest)


def shared_files(bundle_dir: Path) -> dict[str, str]:
    """{name: sha256} of the files every artifact shares: tokenizer, golden references, and the optional ones."""
    present = [name for name in OPTIONAL_FILES if (bundle_dir / name).is_file()]
    return {name: sha256_file(bundle_dir / name) for name in (TOKENIZER_FILE, GOLDEN_FILE, *present)}


def rehash_shared_files(bundle_dir: str | Path) -> Bundle:
    """Record the shared files again after one was rewritten on purpose (e.g. genai_config.json re-pointed)."""
    bundle = load_bundle(bundle_dir, verify=False)
    manifest = {key: value for key, value in bundle.manifest.items() if key != "checksum"}
    manifest["files"] = shared_files(bundle.path)
    _write(bundle.path, manifest)
    return replace(bundle, manifest=manifest)


def _write(bundle_dir: Path, manifest: dict) -> Path:
    manifest = {**manifest, "checksum": _checksum(manifest)}
    return atomic_write_json(bundle_dir / MANIFEST_FILE, manifest)


@contextmanager
def staged_folder(bundle_dir: str | Path, folder: str) -> Iterator[Path]:
    """An empty folder inside the bundle that becomes `bundle_dir/folder` only if the block succeeds.

    Artifacts added to an existing bundle are written here, so an error or interruption leaves the bundle as it was.
    """
    bundle_dir = Path(bundle_dir)
    final = bundle_dir / folder
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def folder_files(bundle_dir: str | Path, folder: str) -> dict[str, str]:
    """{path relative to the bundle: sha256} for every file under `bundle_dir/folder`: an artifact's `files`."""
    bundle_dir = Path(bundle_dir)
    paths = sorted(path for path in (bundle_dir / folder).rglob("*") if path.is_file())
    return {path.relative_to(bundle_dir).as_posix(): sha256_file(path) for path in paths}


def add_artifact(bundle_dir: str | Path, artifact: Artifact, replace_existing: bool = False) -> Bundle:
    """Register an artifact whose files are already in the bundle, rewriting the manifest atomically."""
    bundle = load_bundle(bundle_dir, verify=False)
    names = [existing.name for existing in bundle.artifacts]
    if artifact.name in names and not replace_existing:
        raise BundleError(f"{bundle.path} already has an artifact {artifact.name!r}; pass --force to replace it")
    for name, digest in artifact.files.items():
        verify_file(bundle.path, name, digest)
    artifacts = [existing for existing in bundle.artifacts if existing.name != artifact.name] + [artifact]
    manifest = {key: value for key, value in bundle.manifest.items() if key != "checksum"}
    manifest["artifacts"] = [asdict(entry) for entry in artifacts]
    _write(bundle.path, manifest)
    return replace(bundle, manifest=manifest, artifacts=artifacts)


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
    if manifest["format_version"] < FORMAT_VERSION:
        raise BundleError(f"{bundle_dir} is a format-{manifest['format_version']} bundle from an earlier gptdeploy; "
                          f"{REEXPORT}")  # fmt: skip
    if manifest.get("checksum") != _checksum(manifest):
        raise BundleError(f"{path} was edited after export (its checksum does not match); {REEXPORT}")
    return manifest


def load_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle; with `verify`, every file must exist and match its sha256."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    try:
        config = GPTConfig.from_dict(manifest["model"])
        artifacts = [Artifact.from_dict(entry) for entry in manifest["artifacts"]]
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
