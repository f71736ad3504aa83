"""Stage folders brought back from ``.stale/`` when their inputs are the current ones again.

A rerun moves a stage's folder of other inputs to ``.stale/<stage>-<n>/`` (never deleted). When a
later run computes a key that one of those folders was made with -- a config edited and then edited
back, a data file restored -- the folder is brought back instead of running the stage again: a
finished one is reused, a stopped one resumed (DVC's run cache does the same for its stages). Its
run stores that a rerun in between kept (moved into the newer folder, :data:`MOVED_OUT` says so)
come back with it while they are as they were then (same key, same files); a store that changed
since (a chain continued, runs added) makes the folder not restorable, and the stage reruns as
before. Stages that write beside their folder (the report) are never restored: they are cheap and
their page would not follow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from .rundir import read_json_record, write_json_atomic
from .rundir_guard import OURS_INSIDE, STALE

__all__ = ["MOVED_OUT", "Restorable", "find_restorable", "fingerprint", "note_moved_out", "recover",
           "restore"]

#: in a folder set aside: the run stores a later rerun took from it (``rel -> {"store": key,
#: "fingerprint": ...}``), so that bringing the folder back brings them back too
MOVED_OUT = "moved_out.json"


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


def note_moved_out(folder: Path, rel: str, store_key: str, fp: str) -> None:
    """Record in the set-aside ``folder`` that its store ``rel`` (key ``store_key``, fingerprint
    ``fp``) was taken by a newer folder."""
    moved = read_json_record(folder / MOVED_OUT, set_aside=False) or {}
    moved[rel] = {"store": store_key, "fingerprint": fp}
    write_json_atomic(folder / MOVED_OUT, moved)


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


def _store_source(rel: str, want: dict, places: list[Path]) -> Path | None:
    """The first of ``places`` (stage folders) holding the store ``rel`` as it was (``want``: its
    key and fingerprint when it was moved out)."""
    for place in places:
        started = read_json_record(place / "started.json", set_aside=False) or {}
        if (started.get("stores") or {}).get(rel) == want.get("store") and (place / rel).exists() \
                and fingerprint(place / rel) == want.get("fingerprint"):
            return place
    return None


def find_restorable(run_dir: Path, name: str, key: str) -> Restorable | None:
    """The newest folder of stage ``name`` in ``.stale/`` made with ``key`` whose moved-out stores
    are still as they were (in the stage's folder or another set-aside one): finished ones first,
    then stopped ones (``started.json`` of that key). None when there is none."""
    copies = _copies(Path(run_dir), name)
    places = [Path(run_dir) / name, *copies]
    for finished in (True, False):
        for copy in copies:
            record = read_json_record(copy / ("stage.json" if finished else "started.json"), set_aside=False)
            if not record or record.get("key") != key or (finished and "wall" not in record):
                continue
            moved = read_json_record(copy / MOVED_OUT, set_aside=False) or {}
            stores = {rel: _store_source(rel, want, [p for p in places if p != copy])
                      for rel, want in moved.items() if not (copy / rel).exists()}
            if all(stores.values()):
                return Restorable(copy, finished, stores)
    return None


def restore(found: Restorable, folder: Path) -> None:
    """Move ``found.copy`` into the stage's ``folder`` and its stores back into it; the folders
    they came from note that they were taken.

    The stores go into the copy first, then the copy moves into place as a whole (one rename);
    a folder there holding your files only moves beside it for that moment (``.<stage>.yours``)
    and its files go back into the folder brought back (:func:`recover`, which the next run also
    calls when a kill came in between). So the stage's folder either has the copy whole or is as
    it was.
    """
    recover(folder)
    for rel, place in found.stores.items():
        started = read_json_record(place / "started.json", set_aside=False) or {}
        note_moved_out(place, rel, started["stores"][rel], fingerprint(place / rel))
        (found.copy / rel).parent.mkdir(parents=True, exist_ok=True)
        _merge(place / rel, found.copy / rel)
    (found.copy / MOVED_OUT).unlink(missing_ok=True)
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
    """Move ``src`` to ``dest``; into it where it is a folder already (your files put back in
    place there when its stage's folder was set aside). A name both hold stays in ``src``."""
    if not dest.exists():
        os.replace(src, dest)
    elif src.is_dir() and dest.is_dir():
        for entry in list(src.iterdir()):
            _merge(entry, dest / entry.name)
        with contextlib.suppress(OSError):  # empty now, unless a name was in both
            src.rmdir()
