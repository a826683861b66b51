"""Atomic file writes (a reader sees the old file or the new one, never half of one), folder replacement by swap,
file locks, and versioned JSON reads.

Every artifact gptdeploy writes (checkpoints, tokenizers, manifests, data, whole bundles) goes through here. Each
step after which a kill must leave valid files behind calls `crash_point`, which the fault tests use to SIGKILL a
process exactly there.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import glob
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.errors import GptDeployError

logger = logging.getLogger(__name__)

CRASH_AT = "GPTDEPLOY_CRASH_AT"  # N: SIGKILL this process at its Nth crash point (fault tests only)
CRASH_LOG = "GPTDEPLOY_CRASH_LOG"  # a file each crash point's label is appended to (fault tests only)
LOCK_WAIT = "GPTDEPLOY_LOCK_WAIT"  # seconds a writer waits for another writer of the same folder (default 600)
_crash_points = 0


def crash_point(label: str) -> None:
    """Mark a step after which a kill must leave every file valid; see CRASH_AT and CRASH_LOG."""
    global _crash_points
    if CRASH_AT not in os.environ and CRASH_LOG not in os.environ:
        return
    _crash_points += 1
    if CRASH_LOG in os.environ:
        with open(os.environ[CRASH_LOG], "a", encoding="utf-8") as log:
            log.write(f"{_crash_points} {label}\n")
    if os.environ.get(CRASH_AT) == str(_crash_points):
        os.kill(os.getpid(), signal.SIGKILL)


@functools.cache
def normal_file_mode() -> int:
    """The mode a plain `open()` gives a new file under the process's umask (0644 under the usual 022). Read once:
    reading the umask means setting it, which would race with threads creating files."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
        os.chmod(tmp, normal_file_mode())  # some writers (safetensors) create files readable by their owner only
        crash_point(f"written {tmp.name}")
        os.replace(tmp, path)
        crash_point(f"replaced {path.name}")
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
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # no lone surrogate escapes: they are not text
    except (json.JSONDecodeError, UnicodeDecodeError, UnicodeEncodeError) as cause:
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


# --- folders replaced as a whole: bundles, checkpoints from import, Hugging Face folders ------------------------------

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


@contextmanager
def staging_folder(target: str | Path) -> Iterator[Path]:
    """A new hidden folder next to `target` to build its replacement in; removed on exit unless `replace_folder`
    moved it into place. Leftovers of killed runs (their process is gone) are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(target: Path) -> None:
    """Clean up after writers of `target` that were killed (their process no longer runs): remove their staging
    folders, and put back an old `target` they had moved aside (only where no atomic swap exists)."""
    for entry in sorted(target.parent.glob(f".{glob.escape(target.name)}.*-*")):
        match = _LEFTOVER.match(entry.name)
        if not match or match["name"] != target.name or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not target.exists():
            logger.warning("restoring %s from %s, moved aside by a run that was killed", target, entry.name)
            os.rename(entry, target)
            continue
        logger.info("removing %s, left by a run that was killed", entry)
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def replace_folder(staging: Path, target: Path) -> None:
    """Move the finished `staging` folder to `target`. An existing `target` is swapped with it in one atomic rename
    (so `target` is always the complete old or the complete new folder, whenever the process is killed), then the old
    one is deleted. Raises FileExistsError if `target` did not exist when called but appears before the rename."""
    crash_point(f"built {target.name}")
    if not target.exists():
        try:
            os.rename(staging, target)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise FileExistsError(f"{target} appeared while it was being built") from error
            raise
        crash_point(f"renamed {target.name}")
        return
    if not _exchange(staging, target):  # no atomic swap on this system: a short window without `target`
        old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        crash_point(f"moved aside {target.name}")
        os.rename(staging, target)
        staging = old
    crash_point(f"swapped {target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    crash_point(f"removed the old {target.name}")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE, macOS renamex_np RENAME_SWAP); False where the
    system or file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        result = libc.renamex_np(os.fsencode(a), os.fsencode(b), 0x2)  # RENAME_SWAP
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


# --- one writer at a time -----------------------------------------------------------------------------------------

_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, depth): a process may nest its own lock


@contextmanager
def folder_lock(folder: str | Path, error: type[GptDeployError], wait: float | None = None) -> Iterator[bool]:
    """Hold `folder/.lock` (an advisory lock the system releases when the process dies, so a kill never leaves a
    stale one); yields whether this call took it (False when this process already held it). Another process holding
    it is waited for up to `wait` seconds (default: $GPTDEPLOY_LOCK_WAIT or 600), then `error` names it."""
    path = Path(folder).resolve() / ".lock"
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield False
        finally:
            _held[path] = (fd, _held[path][1] - 1)
        return
    fd = _acquire(path, error, float(os.environ.get(LOCK_WAIT, 600)) if wait is None else wait)
    _held[path] = (fd, 1)
    try:
        yield True
    finally:
        del _held[path]
        os.close(fd)


def _acquire(path: Path, error: type[GptDeployError], wait: float) -> int:
    deadline, announced = time.monotonic() + wait, False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if time.monotonic() >= deadline:
                raise error(f"{path.parent} is being written by another gptdeploy process (pid {holder}); run this "
                            "again when it has finished") from None  # fmt: skip
            if not announced:
                logger.info("waiting for another gptdeploy process (pid %s) to finish writing %s", holder, path.parent)
                announced = True
            time.sleep(0.1)
            continue
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino  # the folder may have been swapped while we waited
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)
