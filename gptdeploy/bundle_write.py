"""Adding to a bundle: one writer at a time, and the manifest write is the commit point.

A writer holds the bundle's lock (`writing`: `BUNDLE/.lock`, which the system releases when the process dies; a
second writer waits, then fails with a message). An artifact's files are made in a hidden staging folder, moved to a
folder of their own (`decoder-int8/`, or `decoder-int8.2/` while the version being replaced still occupies
`decoder-int8/`), and registered by writing the manifest; only then is a replaced version's folder deleted. Before
the move, a retire note lists both folders; a writer killed anywhere leaves a bundle that verifies, with the old
artifact or the new one, and the next writer deletes whichever listed folder the manifest does not name, with any
staging, work and trash folders left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from gptdeploy.bundle import (
    REEXPORT,
    Artifact,
    Bundle,
    artifact_folder,
    check_artifacts,
    load_bundle,
    sha256_file,
    shared_files,
    verify_file,
    write_manifest_dict,
)
from gptdeploy.errors import BundleError
from gptdeploy.fileio import atomic_write_json, crash_point, folder_lock, normal_file_mode
from gptdeploy.paths import inside

STAGING_PREFIX, WORK_PREFIX, TRASH_PREFIX, NOTE_PREFIX = ".stage-", ".work-", ".trash-", ".retire-"
ARTIFACT_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.\d+)?")  # what artifact_folder names, or <that>.<n>
_LEFTOVER = re.compile(r"^\.(stage|work|trash)-[0-9a-z_]+$|^\..+\.[0-9a-f]{12}\.tmp$|^\..+\.partial-[0-9a-f]{8}$")


@contextmanager
def writing(bundle_dir: str | Path) -> Iterator[None]:
    """Hold the bundle's writer lock (another writer waits, then fails with a message) and remove what killed
    writers left behind. A process may nest it."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    with folder_lock(bundle_dir, BundleError) as taken:
        if taken:
            _remove_leftovers(bundle_dir)
        yield


def _remove_leftovers(bundle_dir: Path) -> None:
    """Folders a killed writer left: whichever a retire note lists that the manifest does not reference (the
    replaced version after a commit, the new one before it), then staging, work and trash folders and temp files."""
    notes = sorted(bundle_dir.glob(f"{NOTE_PREFIX}*.json"))
    if notes:
        try:
            referenced = {artifact.folder for artifact in load_bundle(bundle_dir, verify=False).artifacts}
        except BundleError:
            return  # nothing is removed from a bundle whose manifest cannot say what it holds
        for note in notes:
            for folder in _note_folders(note):
                if folder not in referenced:
                    _remove_folder(bundle_dir, folder)
            note.unlink()
    for entry in bundle_dir.iterdir():
        if _LEFTOVER.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _note_folders(note: Path) -> list[str]:
    try:
        folders = json.loads(note.read_text(encoding="utf-8"))["folders"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [folder for folder in folders if isinstance(folder, str) and ARTIFACT_FOLDER.fullmatch(folder)]


def _remove_folder(bundle_dir: Path, folder: str) -> None:
    """Delete an artifact folder: first renamed to a hidden trash name, so a kill mid-delete leaves only a leftover."""
    path = inside(bundle_dir, folder, BundleError, "artifact folder", REEXPORT)
    if not path.is_dir() or path.is_symlink():
        return
    trash = bundle_dir / f"{TRASH_PREFIX}{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    crash_point(f"retired {folder}")
    shutil.rmtree(trash)
    crash_point(f"deleted {folder}")


@contextmanager
def staged_folder(bundle_dir: str | Path) -> Iterator[Path]:
    """An empty hidden folder inside the bundle to make an artifact's files in; `install_artifact` moves it into
    place, and anything else (an error, an interruption) removes it, leaving the bundle as it was. The writer lock
    is held meanwhile."""
    with writing(bundle_dir):
        staging = Path(bundle_dir) / f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def install_artifact(
    bundle_dir: str | Path, staging: Path, artifact: Artifact, replace_existing: bool = False
) -> Artifact:
    """Move a staged artifact's files into the bundle and register it; returns it as registered.

    `artifact.path` is the file a backend opens, relative to `staging`; its files are every file in `staging`. They
    get the folder `artifact_folder(kind, name, causal)`, or `<that>.<n>` while the version being replaced still
    occupies it; the replaced version's folder is deleted once the manifest no longer names it.
    """
    bundle_dir = Path(bundle_dir)
    with writing(bundle_dir):
        bundle = load_bundle(bundle_dir, verify=False)
        old = _existing(bundle, artifact.name, replace_existing)
        folder = _free_folder(bundle_dir, artifact_folder(artifact.kind, artifact.name, bundle.config.causal))
        note = bundle_dir / f"{NOTE_PREFIX}{uuid.uuid4().hex[:8]}.json"
        atomic_write_json(note, {"folders": [folder] + ([old.folder] if old is not None else [])})
        for path in staging.rglob("*"):  # tools that wrote them (ONNX Runtime's quantizers) may leave them private
            if path.is_file():
                os.chmod(path, normal_file_mode())
        os.rename(staging, bundle_dir / folder)
        crash_point(f"placed {folder}")
        placed = replace(artifact, path=f"{folder}/{artifact.path}", files=folder_files(bundle_dir, folder))
        add_artifact(bundle_dir, placed, replace_existing)
        note.unlink()
        crash_point("removed the retire note")
    return placed


def _existing(bundle: Bundle, name: str, replace_existing: bool) -> Artifact | None:
    old = next((artifact for artifact in bundle.artifacts if artifact.name == name), None)
    if old is not None and not replace_existing:
        raise BundleError(f"{bundle.path} already has an artifact {name!r}; pass --force to replace it")
    return old


def _free_folder(bundle_dir: Path, folder: str) -> str:
    if not (bundle_dir / folder).exists():
        return folder
    return next(f"{folder}.{n}" for n in range(2, 1_000_000) if not (bundle_dir / f"{folder}.{n}").exists())


def folder_files(bundle_dir: str | Path, folder: str) -> dict[str, str]:
    """{path relative to the bundle: sha256} for every file under `bundle_dir/folder`: an artifact's `files`."""
    bundle_dir = Path(bundle_dir)
    paths = sorted(path for path in (bundle_dir / folder).rglob("*") if path.is_file())
    return {path.relative_to(bundle_dir).as_posix(): sha256_file(path) for path in paths}


def add_artifact(bundle_dir: str | Path, artifact: Artifact, replace_existing: bool = False) -> Bundle:
    """Register an artifact whose files are already in the bundle, rewriting the manifest atomically (the commit);
    the folder of an artifact it replaces is deleted afterwards, unless the new one uses it too."""
    with writing(bundle_dir):
        bundle = load_bundle(bundle_dir, verify=False)
        old = _existing(bundle, artifact.name, replace_existing)
        artifacts = [existing for existing in bundle.artifacts if existing.name != artifact.name] + [artifact]
        check_artifacts(bundle.path, artifacts)
        for name, digest in artifact.files.items():
            verify_file(bundle.path, name, digest)
        manifest = {key: value for key, value in bundle.manifest.items() if key != "checksum"}
        manifest["artifacts"] = [asdict(entry) for entry in artifacts]
        write_manifest_dict(bundle.path, manifest)
        if old is not None and old.folder != artifact.folder:
            _remove_folder(bundle.path, old.folder)
    return replace(bundle, manifest=manifest, artifacts=artifacts)


def rehash_shared_files(bundle_dir: str | Path) -> Bundle:
    """Record the shared files again after one was rewritten on purpose."""
    with writing(bundle_dir):
        bundle = load_bundle(bundle_dir, verify=False)
        manifest = {key: value for key, value in bundle.manifest.items() if key != "checksum"}
        manifest["files"] = shared_files(bundle.path)
        write_manifest_dict(bundle.path, manifest)
    return replace(bundle, manifest=manifest)
