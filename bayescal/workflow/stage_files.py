"""A finished stage's files: those its record lists (:func:`written_files`, in ``stage.json``'s
``files``), and what became of them -- damaged, gone, a folder now (:func:`stage_file_problems`);
the engine sets the damaged ones aside and reruns the stage, ``bayescal check`` names them, the
report refuses a run directory that has them."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from .rundir import damaged_files

__all__ = ["file_problems", "set_aside_damaged", "stage_file_problems", "written_files"]


def written_files(folder: str | Path, skip: Iterable[str] = (), stores: Iterable[str] = (),
                  beside: Iterable[str] = ()) -> list[str]:
    """The files a stage's folder holds as it finishes, relative to it, for its record: not its
    run stores' (``stores``: kept, moved and checked on their own), hidden files, its records, nor
    ``skip`` (your files and folders there); and of ``beside`` (what it declares it writes) the
    files beside its folder (``../report.html``). A later run then finds one deleted
    (:func:`stage_file_problems`)."""
    folder, skip = Path(folder), set(skip) | {"stage.json", "started.json"}
    stores = tuple(f"{s.strip('/')}/" for s in stores)
    out = []
    for root, dirs, files in os.walk(folder):
        here = Path(root).relative_to(folder)
        dirs[:] = [d for d in dirs if d != "members" and not d.startswith(".") and (here.parts or (d,))[0]
                   not in skip and not f"{(here / d).as_posix()}/".startswith(stores)]
        out += [(here / f).as_posix() for f in files if not f.startswith(".")
                and (here.parts or (f,))[0] not in skip and not f.endswith(".tmp")]
    out += [w for w in beside if w.startswith("../") and not w.endswith("/") and (folder / w).is_file()]
    return sorted(out)


def stage_file_problems(folder: str | Path, record: dict | None,
                        skip: Iterable[str] = ()) -> list[tuple[Path, str]]:
    """A finished stage's files that cannot be read (:func:`damaged_files`, the folder's own) and
    those its record lists (:func:`written_files`) that are gone or are no longer files, with the
    reason; ``skip``: names in the folder that are not the stage's (yours)."""
    folder, skip = Path(folder), set(skip) | {"stage.json", "started.json"}
    bad = [(p, why) for p, why in damaged_files(folder) if p.name not in skip]
    outside = [f"../{d}/{n}" for d, names in ((record or {}).get("outside") or {}).items() for n in names]
    for rel in [*(record or {}).get("files", []), *outside]:  # outside: the report's page and figures
        path = folder / rel
        if Path(rel).parts[0] not in skip and not path.is_file():
            bad.append((Path(os.path.normpath(path)), "missing" if not path.exists() else "no longer a file"))
    return bad


def set_aside_damaged(folder: Path, record: dict, skip: Iterable[str], stage: str) -> bool:
    """A finished stage's unreadable files (a torn write, a disk error) set aside as
    ``<name>.damaged``, and those its record lists that are gone, each with a warning; True if
    any (the stage then reruns). ``skip``: the user's files there."""
    bad = stage_file_problems(folder, record, skip)
    for path, problem in bad:
        if problem in ("missing", "no longer a file"):
            warnings.warn(f"{path}: {problem}; stage '{stage}' reruns", RuntimeWarning, stacklevel=3)
            continue
        target = path.with_name(path.name + ".damaged")
        os.replace(path, target)
        warnings.warn(f"{path}: damaged ({problem}); set aside as {target.name}, stage '{stage}' reruns",
                      RuntimeWarning, stacklevel=3)
    return bool(bad)


def file_problems(folder: str | Path, record: dict | None, skip: Iterable[str] = ()) -> list[str]:
    """:func:`stage_file_problems` as ``bayescal check``'s plan names them ("damaged file
    posterior.nc", "missing file bands.nc")."""
    return [f"damaged file {p.name}" if why not in ("missing", "no longer a file") else
            f"{'missing file' if why == 'missing' else 'no longer a file:'} {os.path.relpath(p, folder)}"
            for p, why in stage_file_problems(folder, record, skip)]
