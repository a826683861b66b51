"""The deployment bundle: a folder that runs anywhere its backend exists and can prove what it holds.

`manifest.json` lists the model config, the graph IO names, every artifact with the sha256 of each of its files,
the tool versions, and the parity results measured at export time. It is written last and atomically, and carries
a checksum of its own content, so loading can refuse a bundle that is incomplete, corrupt, truncated or edited.
Every path it names is checked to stay inside the bundle before anything is opened (`gptdeploy.paths`), and every
field is checked to be of the type gptdeploy writes. Adding artifacts is `gptdeploy.bundle_write`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from gptdeploy import __version__
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BundleError, ConfigError
from gptdeploy.fileio import atomic_write_json, read_format_json
from gptdeploy.graph_contract import graph_io
from gptdeploy.paths import check_name, external_data_files, inside
from gptdeploy.tokenizer import TOKENIZER_FILE
from gptdeploy.validation import check_field_types, checked_arguments, matches

FORMAT = "gptdeploy-bundle"
FORMAT_VERSION = 2  # 2: typed artifact details, the reference accuracy at the top, decoder-fp32/ for the export
MANIFEST_FILE = "manifest.json"
GOLDEN_FILE = "golden.npz"
# A shared file a bundle may also hold: the special-token names and chat template Hugging Face tools read next to
# tokenizer.json (onnxruntime-genai's files live in each ONNX artifact's folder, see export/genai_config.py).
OPTIONAL_FILES = ("tokenizer_config.json",)
REEXPORT = "re-export it with `gptdeploy export CHECKPOINT -o BUNDLE`"
# What readers of a recorded parity report rely on (the numbers `gptdeploy inspect` shows and the verdict)
PARITY_FIELDS = {"precision": str, "passed": bool, "failures": list[str], "max_abs_logit_diff": float,
                 "max_rel_logit_diff": float, "mean_kl": float, "top1_agreement": float, "greedy_identical": int,
                 "prompts": int}  # fmt: skip


@dataclass(frozen=True)
class Guardrail:
    """How a quantized artifact met its budget: what was kept in fp32 and every candidate measured on the way."""

    budget: dict  # the Tolerance it was held to
    kept_fp32: list[str]  # layers left unquantized
    sensitivity: dict[str, float]  # layer -> mean KL with only that layer quantized (measured only on a miss)
    steps: list[dict]  # each candidate: layers kept, parity numbers, task accuracy, verdict

    def __post_init__(self) -> None:
        check_field_types(self, BundleError, "manifest guardrail")


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

    def __post_init__(self) -> None:
        check_field_types(self, BundleError, "manifest artifact details")
        wrong = [key for key, kind in PARITY_FIELDS.items() if not matches(self.parity.get(key), kind)]
        if wrong or not matches(self.recipe.get("fusions", {}), dict[str, int]):
            raise BundleError(f"manifest artifact details: parity or recipe has a missing or mistyped "
                              f"{', '.join(wrong) or 'fusions'}")  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> ArtifactDetails:
        guardrail = data.get("guardrail")
        return cls(**{**data, "guardrail": Guardrail(**guardrail) if isinstance(guardrail, dict) else guardrail})


@dataclass(frozen=True)
class Artifact:
    name: str  # unique within the bundle, e.g. "onnx-fp32"
    kind: str  # "onnx" or "tensorrt"
    precision: str  # fp32, fp16, int8, ...
    path: str  # the file a backend opens, relative to the bundle
    files: dict[str, str]  # every file the artifact needs (graph, external data) -> sha256
    opset: int | None = None
    details: ArtifactDetails | None = None  # None only while a stage is still judging it

    def __post_init__(self) -> None:
        check_field_types(self, BundleError, "manifest artifact")
        check_name(self.name, BundleError)
        if self.kind not in FOLDER_PREFIX:
            raise BundleError(
                f"artifact {self.name!r} is of kind {self.kind!r}; gptdeploy knows {', '.join(FOLDER_PREFIX)}"
            )

    @property
    def folder(self) -> str:
        """The folder of the bundle that holds all of its files."""
        return PurePosixPath(self.path).parts[0]

    @classmethod
    def from_dict(cls, data: dict) -> Artifact:
        details = data.get("details")
        return cls(**{**data, "details": ArtifactDetails.from_dict(details) if isinstance(details, dict) else details})


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
        """A file of the bundle; `relative` must stay inside it."""
        return inside(self.path, relative, BundleError, "path", REEXPORT)

    @property
    def reference_accuracy(self) -> float | None:
        """PyTorch's held-out task accuracy measured at export, when the model was tuned on the shipped tasks."""
        return self.manifest["reference"].get("task_accuracy")


FOLDER_PREFIX = {"onnx": "decoder", "tensorrt": "engine"}


def artifact_folder(kind: str, name: str, causal: bool = True) -> str:
    """Where an artifact's files live in the bundle: onnx-int8 -> decoder-int8/ (encoder-int8/ for a model that
    is not causal), tensorrt-fp32 -> engine-fp32/."""
    prefix = FOLDER_PREFIX[kind] if causal or kind != "onnx" else "encoder"
    return f"{prefix}-{name.removeprefix(kind + '-')}"


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
        "io": graph_io(config),
        "reference": reference,
        "files": shared_files(bundle_dir),
        "artifacts": [],
    }
    return write_manifest_dict(bundle_dir, manifest)


def shared_files(bundle_dir: Path) -> dict[str, str]:
    """{name: sha256} of the files every artifact shares: tokenizer, golden references, and the optional ones."""
    present = [name for name in OPTIONAL_FILES if (bundle_dir / name).is_file()]
    return {name: sha256_file(bundle_dir / name) for name in (TOKENIZER_FILE, GOLDEN_FILE, *present)}


def write_manifest_dict(bundle_dir: Path, manifest: dict) -> Path:
    manifest = {**manifest, "checksum": _checksum(manifest)}
    return atomic_write_json(bundle_dir / MANIFEST_FILE, manifest)


# --- reading: everything checked before anything is opened --------------------------------------------------------


def read_manifest(bundle_dir: str | Path) -> dict:
    """The manifest after checking it is ours, unedited and of a format this version reads."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_FILE
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    inside(bundle_dir, MANIFEST_FILE, BundleError, "manifest", REEXPORT)
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


@checked_arguments(BundleError)
def load_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle: every field of the manifest checked, every path it names confined to the bundle; with `verify`,
    every file must also exist and match its sha256, and every graph's external data must be among its files."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    for name in manifest.get("files") if isinstance(manifest.get("files"), dict) else ():
        inside(bundle_dir, name, BundleError, "shared file", REEXPORT)  # named before anything else is said of it
    try:
        wrong = [key for key, kind in MANIFEST_FIELDS.items() if not matches(manifest.get(key), kind)]
        if wrong:
            raise BundleError(f"{', '.join(wrong)} missing or of the wrong type")
        config = GPTConfig.from_dict(manifest["model"])
        artifacts = [Artifact.from_dict(entry) for entry in manifest["artifacts"]]
        _check_top_level(manifest, config)
        parsed = json.dumps([asdict(artifact) for artifact in artifacts], sort_keys=True)
        if json.dumps(manifest["artifacts"], sort_keys=True) != parsed:
            raise BundleError("an artifact lacks a field gptdeploy writes")
    except (TypeError, ConfigError, BundleError) as error:  # TypeError: a field Artifact(...) does not take
        raise BundleError(f"{bundle_dir / MANIFEST_FILE} is malformed ({error}); {REEXPORT}") from error
    check_artifacts(bundle_dir, artifacts)
    if verify:
        expected = dict(manifest["files"])
        for artifact in artifacts:
            expected.update(artifact.files)
        for name, digest in expected.items():
            verify_file(bundle_dir, name, digest)
        for artifact in artifacts:
            _check_external_data(bundle_dir, artifact)
    return Bundle(path=bundle_dir, config=config, manifest=manifest, artifacts=artifacts)


SHA256 = re.compile(r"[0-9a-f]{64}")
MANIFEST_FIELDS = {"gptdeploy_version": str, "tools": dict, "model": dict, "io": dict[str, list[str]],
                   "reference": dict, "files": dict[str, str], "artifacts": list[dict]}  # fmt: skip


def _check_top_level(manifest: dict, config: GPTConfig) -> None:
    """The manifest's own fields, of the types gptdeploy wrote (a re-checksummed edit must not crash a reader)."""
    files, reference, io = manifest["files"], manifest["reference"], manifest["io"]
    if not all(SHA256.fullmatch(digest) for digest in files.values()):
        raise BundleError("files must map names to sha256 digests")
    if not set(files) <= {TOKENIZER_FILE, GOLDEN_FILE, *OPTIONAL_FILES} or not {TOKENIZER_FILE, GOLDEN_FILE} <= set(
        files
    ):
        raise BundleError(f"files must list {TOKENIZER_FILE}, {GOLDEN_FILE} and optionally {', '.join(OPTIONAL_FILES)}")
    accuracy = reference.get("task_accuracy")
    if not isinstance(reference.get("checkpoint"), str) or not (accuracy is None or matches(accuracy, float)):
        raise BundleError("reference must name a checkpoint and a task accuracy in [0, 1] or null")
    if accuracy is not None and not 0 <= accuracy <= 1:
        raise BundleError("reference must name a checkpoint and a task accuracy in [0, 1] or null")
    labels = reference.get("labels", [])
    if not matches(labels, list[str]) or len(labels) != config.num_labels:
        raise BundleError(f"reference labels must name the model's {config.num_labels} classes")
    if manifest["model"] != config.to_dict():
        raise BundleError("model must list every model config field")
    if io != graph_io(config):
        raise BundleError(f"io does not list gptdeploy's graph inputs and outputs for {config.n_layer} layers")


def check_artifacts(bundle_dir: Path, artifacts: list[Artifact]) -> None:
    """Names unique; each artifact's files in a folder of its own inside the bundle, its path among them."""
    folders: dict[str, str] = {}
    for artifact in artifacts:
        where = f"artifact {artifact.name!r}"
        if artifact.details is None:
            raise BundleError(f"{bundle_dir / MANIFEST_FILE}: {where} has no details (source, recipe, parity); "
                              f"{REEXPORT}")  # fmt: skip
        if artifact.path not in artifact.files or len(PurePosixPath(artifact.path).parts) < 2:
            raise BundleError(f"{bundle_dir / MANIFEST_FILE}: {where} path {artifact.path!r} is not one of its files "
                              f"in a folder of its own; {REEXPORT}")  # fmt: skip
        for name, digest in artifact.files.items():
            inside(bundle_dir, name, BundleError, f"{where} file", REEXPORT)
            if PurePosixPath(name).parts[0] != artifact.folder or not SHA256.fullmatch(digest):
                raise BundleError(f"{bundle_dir / MANIFEST_FILE}: {where} lists {name!r} outside its folder "
                                  f"{artifact.folder}/ or without a sha256; {REEXPORT}")  # fmt: skip
        other = folders.setdefault(artifact.folder, artifact.name)
        if other != artifact.name or artifact.folder.startswith("."):
            raise BundleError(f"{bundle_dir / MANIFEST_FILE}: {where} cannot use folder {artifact.folder}/ (it is "
                              f"hidden, or artifact {other!r} uses it too); {REEXPORT}")  # fmt: skip


def _check_external_data(bundle_dir: Path, artifact: Artifact) -> None:
    """An ONNX graph may read weights only from files of its own artifact (hashed, inside the bundle)."""
    if artifact.kind != "onnx":
        return
    graph = bundle_dir / artifact.path
    for location in external_data_files(graph, BundleError, REEXPORT):
        name = (PurePosixPath(artifact.path).parent / location).as_posix()
        if name not in artifact.files:
            raise BundleError(f"{graph} reads weights from {location}, which is not one of artifact "
                              f"{artifact.name!r}'s files; {REEXPORT}")  # fmt: skip


def verify_file(bundle_dir: Path, name: str, digest: str) -> None:
    path = inside(bundle_dir, name, BundleError, "file", REEXPORT)
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is incomplete: {name} is missing; {REEXPORT}")
    if sha256_file(path) != digest:
        raise BundleError(f"{path} does not match its sha256 in the manifest (corrupt, truncated or modified); "
                          f"{REEXPORT}")  # fmt: skip
