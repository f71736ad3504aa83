"""The run directory is owned: bayescal writes only into a directory it created, and never
deletes what it did not write.

- :func:`claim_run_dir` creates the directory with a marker (``.bayescal-run.json``), or accepts
  one that has the marker (or is empty); a non-empty directory without it, or a file, is refused
  with :class:`~bayescal.workflow.rundir.RunDirRefused` before anything is written.
- :func:`hold_run_dir` keeps a second ``bayescal run`` out of a run directory while one runs in
  it (a job submitted twice on a cluster): the second is refused, naming the first's process.
- :func:`set_aside` moves a stage's folder of other inputs into ``.stale/`` instead of deleting
  it: whatever a user put there survives.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from bayescal import __version__

from .rundir import MARKER, RunDirRefused, read_json_record, write_json_atomic

__all__ = ["LOCK", "STALE", "can_write", "check_run_dir", "claim_run_dir", "hold_run_dir", "run_dir_holder",
           "set_aside", "stale_size", "holds_ours", "yours_inside", "OURS_INSIDE"]

#: what bayescal writes in the folders inside a stage's (run stores, chains, rounds, waves): its
#: netCDF, HDF5, JSON and NumPy files, and what an interrupted write or a check of them leaves
#: (``member_000001.nc.tmp``, ``.corrupt``, ``.partial``, ``.damaged2``, hidden temporary files); a
#: file of another kind is yours
OURS_INSIDE = re.compile(r"^\.|\.(nc|h5|json|npy|npz)$|\.(tmp|corrupt|partial|damaged\d*)$")
#: where stage folders of other inputs are moved (bayescal's; never deleted by bayescal)
STALE = ".stale"
#: the file a running ``bayescal run`` holds locked (bayescal's; kept between runs)
LOCK = ".bayescal-run.lock"
#: lock descriptors this process holds: a forked child (a worker of the run's pool) closes its
#: copies, so the lock ends with the process that took it, not with its last straggling worker
_HELD: set[int] = set()
#: how long a second run waits for the lock before it is refused (a run just killed: its workers
#: exit within a fraction of a second)
_WAIT = 5.0
#: what a run directory of an older bayescal (without the marker) always holds
_LEGACY = ("config.json", "space.json")


def _is_legacy_run_dir(path: Path) -> bool:
    """A run directory an older bayescal wrote: its config and parameter space are there."""
    return all((path / name).is_file() for name in _LEGACY)


def can_write(path: str | Path) -> bool:
    """Whether this user can write in ``path``, or make it in its nearest existing folder."""
    probe = next(p for p in (Path(path), *Path(path).parents) if p.exists())
    return os.access(probe, os.W_OK | os.X_OK)


def check_run_dir(path: str | Path, workflow: str | None = None, writable: bool = True) -> str:
    """What :func:`claim_run_dir` would do with ``path``, without writing anything; ``workflow``:
    the name of the workflow that would run there; ``writable=False``: a folder this user cannot
    write is not refused (``bayescal check`` shows the plan of a run directory it may only read).

    Returns
    -------
    str
        ``"new"`` (absent or empty), ``"owned"`` (has the marker) or ``"legacy"`` (an older
        bayescal's run directory, adopted on the next run).

    Raises
    ------
    RunDirRefused
        ``path`` is a file, a non-empty directory bayescal did not create, or one that holds the
        run of another workflow (its stages and the report would mix two runs).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirRefused(f"run directory {path} is a file, not a folder; set '[run] output' "
                            "(or --run-dir) to a new folder")
    for link in (path, *path.parents):  # a link to nothing: "new" here, "File exists" at mkdir
        if link.is_symlink() and not link.exists():
            raise RunDirRefused(f"run directory {path}: {link} is a symbolic link to {os.readlink(link)}, "
                                "which does not exist (or loops); make that folder, or set '[run] output' "
                                "(or --run-dir) to another")
    probe = next(p for p in (path, *path.parents) if p.exists())  # what a new folder is made in
    if not probe.is_dir():
        raise RunDirRefused(f"run directory {path}: {probe} is a file, so no folder can be made in it; set "
                            "'[run] output' (or --run-dir) to a new folder")
    if writable and not can_write(path):
        raise RunDirRefused(f"run directory {path}: {probe} is not writable (a read-only folder or file "
                            "system); set '[run] output' (or --run-dir) to a folder you can write")
    if not path.exists() or not any(p.name != LOCK for p in path.iterdir()):  # the lock: a run starting
        return "new"
    if (path / MARKER).exists():
        other = (read_json_record(path / MARKER, set_aside=False) or {}).get("workflow")
        if workflow is not None and other not in (None, workflow):
            raise RunDirRefused(f"run directory {path} holds a run of the {other} workflow; this config "
                                f"runs the {workflow} workflow: set '[run] output' (or --run-dir) to a "
                                "folder of its own (two workflows' stages in one folder would mix two runs)")
        return "owned"
    if _is_legacy_run_dir(path):
        return "legacy"
    shown = sorted(p.name for p in path.iterdir())
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    raise RunDirRefused(
        f"run directory {path} is not empty and was not created by bayescal (no {MARKER}; it holds "
        f"{', '.join(shown[:5])}{more}); bayescal writes only into a new or empty folder or one it "
        "created: set '[run] output' (or --run-dir) to a new folder")


def claim_run_dir(path: str | Path, workflow: str, stages: tuple[str, ...]) -> Path:
    """Create or re-open a run directory and (re)write its marker.

    Parameters
    ----------
    path : path
        The run directory.
    workflow : str
        The workflow's name, recorded in the marker.
    stages : tuple of str
        Its stages in order (:meth:`bayescal.workflow.rundir.RunDir.records` reads them).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    RunDirRefused
        See :func:`check_run_dir`; nothing is written then.
    """
    path = Path(path)
    check_run_dir(path, workflow)
    try:  # access() can pass where the file system still refuses (root on a read-only mount, /sys)
        path.mkdir(parents=True, exist_ok=True)
        old = read_json_record(path / MARKER) or {}
        write_json_atomic(path / MARKER, {
            "created_by": "bayescal", "created": old.get("created", time.time()), "bayescal": __version__,
            "workflow": workflow, "stages": list(stages),
            "contract": "bayescal writes only here; stage folders of other inputs are moved to .stale/",
        })
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the machine's, not the path's: said as such (exit 1)
            raise
        raise RunDirRefused(f"run directory {path} cannot be written ({e.strerror}); set '[run] output' "
                            "(or --run-dir) to a folder you can write") from None
    return path


def set_aside(run_dir: str | Path, stage_dir: str | Path) -> Path:
    """Move ``stage_dir`` into ``<run_dir>/.stale/<name>-<n>/``; nothing is deleted.

    Returns
    -------
    Path
        Where it now is.
    """
    run_dir, stage_dir = Path(run_dir), Path(stage_dir)
    stale = run_dir / STALE
    stale.mkdir(exist_ok=True)
    n = 1
    while (target := stale / f"{stage_dir.name}-{n}").exists():
        n += 1
    os.replace(stage_dir, target)
    return target


def stale_size(run_dir: str | Path) -> str:
    """What ``.stale/`` holds, for the line that says a folder went there: bayescal never deletes
    it, so a run directory edited and rerun many times grows until you delete what you no longer
    need."""
    stale = Path(run_dir) / STALE
    folders = [p for p in stale.iterdir() if p.is_dir()] if stale.is_dir() else []
    size = sum(f.stat().st_size for p in folders for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    plural = "s" * (len(folders) != 1)
    return (f"{STALE}/ holds {len(folders)} earlier stage folder{plural}, {size / 2**20:.1f} MiB; delete "
            "what you no longer need")


def _close_inherited() -> None:
    for fd in tuple(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)


@contextlib.contextmanager
def hold_run_dir(path: str | Path, wait: float = _WAIT) -> Iterator[None]:
    """Hold ``path``'s lock (``.bayescal-run.lock``) while the block runs: a second run in the same
    run directory at the same time -- the same job submitted twice, a run started while another
    still works there -- would make the same model runs twice and write the same files.

    The lock is the operating system's (``flock``): it ends with the process that holds it, so a
    run killed with ``kill -9`` never leaves a stale lock behind. Where the file system cannot
    lock (some network file systems), the run goes on with a warning.

    Raises
    ------
    RunDirRefused
        Another process holds the lock after ``wait`` seconds; the message names it.
    """
    fcntl = _fcntl()
    lock = Path(path) / LOCK
    fd = _open_lock(lock) if fcntl is not None else None
    if fd is None:  # Windows (no flock), or a lock file this user cannot open: nothing to hold
        if fcntl is not None:
            warnings.warn(f"{lock}: this user cannot open it (its permissions), so this run is not locked: "
                          f"two runs started in {lock.parent} at once would both run", RuntimeWarning,
                          stacklevel=3)
        yield
        return
    try:
        if not _acquire(fcntl, fd, lock, wait):
            yield
            return
        _HELD.add(fd)
        with contextlib.suppress(OSError):  # read-only (another user's lock file): the lock holds anyway
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        try:
            yield
        finally:
            _HELD.discard(fd)
    finally:
        os.close(fd)  # releases the lock


def _fcntl():
    """The fcntl module, or None where there is none (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def _open_lock(lock: Path) -> int | None:
    """A descriptor of the lock file: read-write (made with the umask's permissions, so a group
    that shares the run directory shares it), read-only where only that is allowed (flock works
    on it), or None where it cannot be opened at all (the run goes on unlocked)."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(lock, flags, 0o666)
        except OSError:
            continue
    return None


def _acquire(fcntl, fd: int, lock: Path, wait: float) -> bool:
    """Take the lock within ``wait`` seconds: True; False where the file system cannot lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RunDirRefused(f"run directory {lock.parent} is in use: {_holder(lock)} is running in "
                                    "it; wait for it to end (or stop it), or set '[run] output' (or "
                                    "--run-dir) to another folder") from None
            time.sleep(0.2)
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                raise
            # EBADF: a lock file this user may only read, on a file system (NFS) that locks writable ones
            what = "cannot lock a file this user may only read" if e.errno == errno.EBADF else \
                "cannot lock files"
            warnings.warn(f"{lock}: this file system {what} ({e.strerror}); two runs started in "
                          f"{lock.parent} at once would both run", RuntimeWarning, stacklevel=4)
            return False


def _holder(lock: Path) -> str:
    """Who holds ``lock``, as its holder wrote it."""
    try:
        who = json.loads(lock.read_text())
        pid, host = int(who["pid"]), str(who["host"])
        if host == socket.gethostname() and not _alive(pid):  # left by an earlier run: a holder that
            return "another bayescal process"  # could not write the file (read-only) holds it
        return f"bayescal (process {pid} on {host}, since {who['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another bayescal process"


def _alive(pid: int) -> bool:
    """A process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it exists
        return True
    return True


def run_dir_holder(path: str | Path) -> str | None:
    """The run working in ``path`` now (its process and host), or None; for ``bayescal check``,
    which only reads."""
    lock, fcntl = Path(path) / LOCK, _fcntl()
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:  # no lock file: no run has held it
        return None
    if fcntl is None:
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(lock)
    except OSError:  # the file system cannot lock
        return None
    finally:
        os.close(fd)


def yours_inside(folder: Path, beside: set[str]) -> list[str]:
    """Your files inside the subfolders of a stage's folder set aside (``folder``; its own files
    put back already; not in ``beside``, what it wrote beside its folder, set aside with it):
    paths relative to it of the files not of :data:`OURS_INSIDE`'s kinds. ``os.scandir``, one
    pattern per name and no ``stat`` of a file: a store of 100,000 members is read in a blink."""
    found: list[str] = []

    def walk(path: str, rel: str) -> None:
        with os.scandir(path) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False):
                    walk(e.path, f"{rel}{e.name}/")
                elif not OURS_INSIDE.search(e.name):
                    found.append(f"{rel}{e.name}")

    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in beside):
        walk(str(sub), f"{sub.name}/")
    return found


def holds_ours(path: Path) -> bool:
    """A file of bayescal's kinds (:data:`OURS_INSIDE`) anywhere under the folder ``path``."""
    with os.scandir(path) as entries:
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if holds_ours(Path(e.path)):
                    return True
            elif OURS_INSIDE.search(e.name):
                return True
    return False
