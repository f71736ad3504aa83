"""What the command line says of a file or folder it cannot read or write: a full disk, a
permission, a path that is not there or is a folder where a file should be, a name too long, a
symbolic-link loop. One line naming the path, and the exit status (2 for what the user gives or
can fix in the paths, 1 for the machine's state), instead of a traceback."""

from __future__ import annotations

import errno
import os

__all__ = ["file_error", "working_directory_gone"]

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
    if isinstance(err, RuntimeError):
        text = str(err)
        return (f"{text}: a symbolic link that points to itself; give a path without it", 2) \
            if text.startswith("Symlink loop") else None
    if not isinstance(err, OSError):
        return None
    where = str(err.filename) if err.filename is not None else ""
    if err.filename2 is not None:
        where += f" -> {err.filename2}"
    meaning = _MEANING.get(err.errno or -1)
    if meaning is None:  # another OSError: its own words (h5py names the file in them)
        return f"{where + ': ' if where else ''}{type(err).__name__}: {err}", 1
    text, code = meaning
    if not where:  # a library's error without a filename: its words name the file, if anything does
        return f"{err} -- {text}", code
    return f"{where}: {text}", code


def working_directory_gone() -> str | None:
    """What to say when the working directory no longer exists (deleted, or its file system
    gone), or None when it exists."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return ("the working directory no longer exists (deleted, or its file system gone): cd to a "
                "folder that exists, then run the same command again")
    return None
