"""Stage folders brought back from ``.stale/`` when their inputs are the current ones again.

A rerun moves a stage's folder of other inputs to ``.stale/<stage>-<n>/`` (never deleted). When a
later run computes a key that one of those folders was made with -- a config edited and then edited
back, a data file restored -- the folder is brought back instead of running the stage again: a
finished one is reused, a stopped one resumed (DVC's run cache does the same for its stages).

A finished stage's record lists its run stores as they were when it finished
(``store_fingerprints``, :func:`fingerprint`). A store a rerun in between kept (moved on into the newer
folder) is looked for in the stage's folder and its other copies in ``.stale/`` -- the same store
key, the same fingerprint -- and comes back with the folder; a store missing or changed since (a
chain continued, runs added, files deleted from ``.stale/``), or a record without the list (an
older bayescal's), leaves the folder where it is and the stage reruns as before. A stopped folder
takes back a store of its key from wherever it is (more finished runs of the same inputs: fewer to
make). Stages that write beside their folder (the report) are never brought back: they are cheap
and their page would not follow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from pathlib import Path

from .rundir import read_json_record
from .rundir_guard import OURS_INSIDE, STALE

__all__ = ["Restorable", "find_restorable", "find_store", "fingerprint", "recover", "restore",
           "store_fingerprints"]


def fingerprint(path: Path) -> str:
    """What a run store is now: the names, sizes and modification times of bayescal's files in it
    (a rename keeps them; a run added, a chain continued changes them; a file of yours there,
    put back in place when its folder is set aside, does not count). One ``os.scandir`` walk."""
    h = hashlib.sha256()

    def walk(p: str, rel: str) -> None:
        with os.scandir(p) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False):
                    walk(e.path, f"{rel}{e.name}/")
                elif OURS_INSIDE.search(e.name):
                    st = e.stat(follow_symlinks=False)
                    h.update(f"{rel}{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    if path.is_dir():
        walk(str(path), "")
    elif path.exists():
        st = path.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


class Restorable:
    """A folder in ``.stale/`` made with a stage's current key: ``copy``; ``finished`` (its stage
    finished there) or stopped; ``stores``: the stage folder holding each store it lacks now
    (``rel -> folder``)."""

    def __init__(self, copy: Path, finished: bool, stores: dict[str, Path]) -> None:
        self.copy, self.finished, self.stores = copy, finished, stores


def _copies(run_dir: Path, name: str) -> list[Path]:
    """The stage's folders in ``.stale/``, newest first."""
    stale = run_dir / STALE
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
    found = [(int(m.group(1)), p) for p in stale.iterdir() if (m := pattern.match(p.name)) and p.is_dir()] \
        if stale.is_dir() else []
    return [p for _, p in sorted(found, reverse=True)]


def store_fingerprints(folder: Path, stores: list[str]) -> dict[str, str]:
    """``rel -> fingerprint`` of the declared run stores ``stores`` that ``folder`` holds (for the
    stage's record when it finishes)."""
    return {rel: fingerprint(folder / rel) for rel in stores if (folder / rel).exists()}


def find_store(run_dir: Path, name: str, rel: str, key: str) -> Path | None:
    """The newest folder of stage ``name`` in ``.stale/`` holding its run store ``rel`` made with
    store key ``key``: finished runs of the same inputs, which a new run takes instead of making
    them again. None when there is none."""
    return _store_source(rel, key, None, _copies(Path(run_dir), name))


def _store_source(rel: str, key: str | None, fp: str | None, places: list[Path]) -> Path | None:
    """The first of ``places`` (stage folders) holding the store ``rel`` of store key ``key`` and,
    unless ``fp`` is None, fingerprint ``fp``."""
    for place in places:
        started = read_json_record(place / "started.json", set_aside=False) or {}
        if key is not None and (started.get("stores") or {}).get(rel) == key and (place / rel).exists() \
                and (fp is None or fingerprint(place / rel) == fp):
            return place
    return None


def _sources(copy: Path, record: dict, finished: bool, declared: list[str],
             places: list[Path]) -> dict[str, Path] | None:
    """Where each store ``copy`` lacks is (``rel -> folder``); None when a finished copy's store
    cannot be found as it was (or its record does not list its stores)."""
    keys = (read_json_record(copy / "started.json", set_aside=False) or {}).get("stores") or {}
    if finished and declared and not isinstance(record.get("store_fingerprints"), dict):
        return None  # an older bayescal's record: which stores it had is not known
    want = record["store_fingerprints"] if finished else {rel: None for rel in declared}
    out = {}
    for rel, fp in want.items():
        if finished and (copy / rel).exists():
            if fingerprint(copy / rel) != fp:
                return None
            continue
        if (copy / rel).exists():
            continue
        source = _store_source(rel, keys.get(rel), fp, [p for p in places if p != copy])
        if source is not None:
            out[rel] = source
        elif finished:
            return None
    return out


def find_restorable(run_dir: Path, name: str, key: str, declared: list[str]) -> Restorable | None:
    """The newest folder of stage ``name`` in ``.stale/`` made with ``key`` whose run stores (of
    ``declared``) are as it left them -- in it, in the stage's folder or another copy: finished ones
    first, then stopped ones (``started.json`` of that key). None when there is none."""
    copies = _copies(Path(run_dir), name)
    places = [Path(run_dir) / name, *copies]
    for finished in (True, False):
        for copy in copies:
            record = read_json_record(copy / ("stage.json" if finished else "started.json"), set_aside=False)
            if not record or record.get("key") != key or (finished and "wall" not in record):
                continue
            if not finished and (copy / "stage.json").exists():  # finished: as it was, or not at all
                continue
            stores = _sources(copy, record, finished, declared, places)
            if stores is not None:
                return Restorable(copy, finished, stores)
    return None


def restore(found: Restorable, folder: Path) -> None:
    """Move ``found.copy`` into the stage's ``folder`` and its stores back into it.

    The stores go into the copy first, then the copy moves into place as a whole (one rename);
    a folder there holding your files only moves beside it for that moment (``.<stage>.yours``)
    and its files go back into the folder brought back (:func:`recover`, which the next run also
    calls when a kill came in between). So the stage's folder either has the copy whole or is as
    it was.
    """
    recover(folder)
    for rel, place in found.stores.items():
        (found.copy / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(place / rel, found.copy / rel)
    if folder.exists():
        os.replace(folder, _yours_beside(folder))
    os.replace(found.copy, folder)
    recover(folder)


def _yours_beside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.yours")


def recover(folder: Path) -> None:
    """Your files, moved beside a stage's ``folder`` while a folder was brought back into its
    place, back in it (a bring-back cut short by a kill: the next run calls this first)."""
    beside = _yours_beside(folder)
    if beside.exists():
        if folder.exists():
            _merge(beside, folder)
        else:
            os.replace(beside, folder)


def _merge(src: Path, dest: Path) -> None:
    """Move your files in ``src`` (set beside the stage's folder) into ``dest``, the folder brought
    back; a name both hold (a file of yours made again meanwhile) goes in as ``<name>.yours-<n>``,
    said."""
    if not dest.exists():
        os.replace(src, dest)
    elif src.is_dir() and dest.is_dir():
        for entry in list(src.iterdir()):
            _merge(entry, dest / entry.name)
        with contextlib.suppress(OSError):
            src.rmdir()
    else:
        n = 1
        while (other := dest.with_name(f"{dest.name}.yours-{n}")).exists():
            n += 1
        os.replace(src, other)
        warnings.warn(f"{dest} was also in the folder brought back: yours is {other.name} beside it",
                      RuntimeWarning, stacklevel=2)
