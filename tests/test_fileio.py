"""Folders replaced by a swap, leftovers of killed writers removed, one writer per folder, and the crash points the
fault tests kill at."""

import os
import subprocess
import sys
import time

import pytest

from gptdeploy.errors import BundleError
from gptdeploy.fileio import (
    CRASH_AT,
    atomic_write_text,
    folder_lock,
    remove_stale_staging,
    replace_folder,
    staging_folder,
)

DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: no process has it


def test_a_replacement_is_swapped_in_whole_and_the_old_folder_removed(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staging_folder(target) as staging:
        (staging / "new.txt").write_text("new")
        replace_folder(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging, no old copy


def test_leftovers_of_dead_writers_are_removed_and_those_of_live_ones_kept(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    dead = tmp_path / f".bundle.partial-{DEAD_PID}-0123abcd"
    alive = tmp_path / f".bundle.partial-{os.getppid()}-0123abcd"
    other = tmp_path / f".other.partial-{DEAD_PID}-0123abcd"
    for folder in (dead, alive, other):
        folder.mkdir()
    remove_stale_staging(target)
    assert not dead.exists() and alive.exists() and other.exists()


def test_an_old_folder_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    """Where no atomic swap exists the old folder is moved aside for a moment; a kill then must not lose it."""
    target = tmp_path / "bundle"
    aside = tmp_path / f".bundle.old-{DEAD_PID}-0123abcd"
    aside.mkdir()
    (aside / "manifest.json").write_text("{}")
    remove_stale_staging(target)
    assert (target / "manifest.json").is_file() and not aside.exists()


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, str(os.getpid()).encode(), 0)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(folder, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / ".lock"), str(seconds)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_waits_for_the_first(tmp_path):
    holder = hold_lock(tmp_path, 1.0)
    started = time.monotonic()
    with folder_lock(tmp_path, BundleError, wait=30) as taken:
        assert taken and time.monotonic() - started > 0.5
    holder.wait()


def test_a_second_writer_that_cannot_wait_names_the_first(tmp_path):
    holder = hold_lock(tmp_path, 30)
    try:
        busy = f"being written by another gptdeploy process \\(pid {holder.pid}\\)"
        with pytest.raises(BundleError, match=busy), folder_lock(tmp_path, BundleError, wait=0.2):
            pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path, BundleError, wait=5):  # a killed holder's lock is gone with it
        pass


def test_a_process_may_nest_its_own_lock(tmp_path):
    with folder_lock(tmp_path, BundleError) as outer, folder_lock(tmp_path, BundleError) as inner:
        assert outer and not inner


def test_the_nth_crash_point_kills_the_process(tmp_path):
    script = f"from gptdeploy.fileio import atomic_write_text\natomic_write_text({str(tmp_path / 'a.txt')!r}, 'new')"
    atomic_write_text(tmp_path / "a.txt", "old")
    for point, expected in ((1, "old"), (2, "new")):
        run = subprocess.run([sys.executable, "-c", script], env={**os.environ, CRASH_AT: str(point)})
        assert run.returncode == -9 and (tmp_path / "a.txt").read_text() == expected
        atomic_write_text(tmp_path / "a.txt", "old")


def test_a_file_written_into_place_gets_normal_permissions_whoever_created_it(tmp_path):
    """safetensors creates its file readable by its owner only; the result must read like every other file."""
    from gptdeploy.fileio import atomic_write, normal_file_mode

    def private_writer(tmp):
        tmp.write_bytes(b"weights")
        os.chmod(tmp, 0o600)

    written = atomic_write(tmp_path / "model.safetensors", private_writer)
    assert written.stat().st_mode & 0o777 == normal_file_mode() == 0o666 & ~current_umask()


def current_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask
