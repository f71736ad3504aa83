"""What the command line says of a file or folder it cannot read or write: a full disk, a
permission, a path that is not there or is a folder where a file should be, a name too long, a
symbolic-link loop. One line naming the path, and the exit status (2 for what the user gives or
can fix in the paths, 1 for the machine's state), instead of a traceback."""

from __future__ import annotations

import errno
import os
import re

__all__ = ["disk_full", "file_error", "quiet_disk_full", "working_directory_gone"]

_KEPT = "every finished model run and stage is kept"

#: errno -> (what it means here, exit status)
_MEANING: dict[int, tuple[str, int]] = {
    errno.ENOSPC: (f"no space left on the device: {_KEPT} -- free some, then run the same command again", 1),
    errno.EDQUOT: (f"disk quota exceeded: {_KEPT} -- free some, then run the same command again", 1),
    errno.EACCES: ("permission denied: this user cannot read or write it (its permissions, or its "
                   "folder's); bayescal sets nothing aside for it -- change them or give another path", 2),
    errno.EPERM: ("operation not permitted: this user cannot change it (its permissions or owner); "
                  "change them or give another path", 2),
    errno.EROFS: ("a read-only file system: give a run directory where this user can write", 2),
    errno.ENOENT: ("no such file or folder", 2),
    errno.EISDIR: ("a folder where a file is expected", 2),
    errno.ENOTDIR: ("a part of this path is a file where a folder is expected", 2),
    errno.EEXIST: ("exists already, of another kind (a file where a folder is made, or a link to "
                   "nothing)", 2),
    errno.ENAMETOOLONG: ("file name too long (a name over 255 bytes, or a path over 4,096)", 2),
    errno.ELOOP: ("too many levels of symbolic links (a link that points to itself)", 2),
    errno.EIO: (f"input/output error of the device: {_KEPT} -- check the disk, then run again", 1),
}


def file_error(err: BaseException) -> tuple[str, int] | None:
    """``(message, exit status)`` for an error of the file system, or None for any other error.

    Parameters
    ----------
    err : exception
        What a command raised: an ``OSError`` (its ``errno`` and ``filename`` make the message),
        or pathlib's ``RuntimeError`` for a symbolic-link loop.

    Returns
    -------
    tuple of (str, int) or None
    """
    text = str(err)
    if isinstance(err, RuntimeError) and text.startswith("Symlink loop"):
        return f"{text}: a symbolic link that points to itself; give a path without it", 2
    number, name = _h5_errno(text) if err.__class__ in (OSError, RuntimeError) else (None, None)
    if not isinstance(err, OSError) and number is None:
        return None
    filename = getattr(err, "filename", None) or name
    where = str(filename) if filename is not None else ""
    if getattr(err, "filename2", None) is not None:
        where += f" -> {err.filename2}"
    meaning = _MEANING.get(getattr(err, "errno", None) or number or -1)
    if meaning is None:  # another OSError: its own words (h5py names the file in them)
        return f"{where + ': ' if where else ''}{type(err).__name__}: {err}", 1
    text, code = meaning
    if not where and working_directory_gone() is not None:  # a relative path, in a folder deleted meanwhile
        return working_directory_gone(), 2
    if not where:  # a library's error without a filename: its words name the file, if anything does
        return f"{err} -- {text}", code
    return f"{where}: {text}", code


def _h5_errno(text: str) -> tuple[int | None, str | None]:
    """The system error number and file an HDF5 message names (h5py raises a plain OSError or
    RuntimeError, "... name = 'chain.h5', errno = 28, error message = ..."), or Nones."""
    number, name = re.search(r"errno = (\d+)", text), re.search(r"name = '([^']+)'", text)
    return (int(number.group(1)) if number else None), (name.group(1) if name else None)


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a full disk or quota (the process then ends at once: an HDF5 library
    that failed to flush can crash in the interpreter's teardown)."""
    return (getattr(err, "errno", None) or _h5_errno(str(err))[0]) in (errno.ENOSPC, errno.EDQUOT)


def quiet_disk_full(unraisablehook, excepthook):
    """``(sys.unraisablehook, sys.excepthook)`` that drop a full disk's errors and pass the
    others on: h5py's objects, freed after a failed flush, each print that error with its
    traceback (through both hooks) as the exception unwinds; the command says it in one line."""

    def unraisable(info) -> None:
        if not disk_full(info.exc_value):
            unraisablehook(info)

    def excepted(kind, value, tb) -> None:
        if not disk_full(value):
            excepthook(kind, value, tb)

    return unraisable, excepted


def working_directory_gone() -> str | None:
    """What to say when the working directory no longer exists (deleted, or its file system
    gone), or None when it exists."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return ("the working directory no longer exists (deleted, or its file system gone): cd to a "
                "folder that exists, then run the same command again")
    return None
