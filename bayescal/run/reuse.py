"""Finished runs taken from other ensemble stores: the same model at the same parameter values.

A store made with a ``runs`` identity (what a run's output depends on besides its parameter
values: the model, its options and files, bayescal's version) lends its finished members to the
store that replaces it: when a stage reruns and its store is set aside in ``.stale/`` (an edit
changed which members it runs: a parameter's bounds, the screened candidates), a member of the
new store whose full parameter vector (and parameter names) equal one of the old store's *done*
members is copied, not run -- the members the edit left as they were are not run again. The
copy keeps the lender's status, wall time and file time (a run made earlier, not now) and is
listed in the store's ``adopted.json``, so the runs a stage made are told from those it took.
Nothing is taken from a store of another identity, of an older bayescal (no identity), or
holding fewer output variables than asked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from .store import _ENGINE, _MEMBER_ENGINE, EnsembleStore

__all__ = ["ADOPTED", "adopt_members", "adopted_count", "adopted_runs", "lendable_runs", "lenders",
           "lends_as", "made_runs"]

#: the members a store took from others (a JSON list of member indices)
ADOPTED = "adopted.json"


def lenders(run_dir: str | Path, identity: str, store: str | Path) -> list[EnsembleStore]:
    """The earlier copies of ``store`` (``<run_dir>/<stage>/<path>``) that a rerun of its stage set
    aside (``<run_dir>/.stale/<stage>-<n>/<path>``) made with ``identity``, oldest first. Only the
    same store's: another store of the same model may run it otherwise (over other years, say)."""
    run_dir = Path(run_dir).resolve()
    try:
        stage, *inside = Path(store).resolve().relative_to(run_dir).parts
    except ValueError:  # a store outside the run directory: none
        return []
    metas = [f.joinpath(*inside, "store.json") for f in sorted((run_dir / ".stale").glob(f"{stage}-*"))]
    return [EnsembleStore(meta.parent) for meta in metas if lends_as(meta, identity)]


def lendable_runs(folder: Path, identity: str, kept: list[str]) -> int:
    """The finished runs in the stores under a stage's ``folder`` made with ``identity``, but those
    of the stores in ``kept`` (paths relative to it): what a rerun that sets the folder aside can
    take where its parameter values are unchanged."""
    if not folder.is_dir():
        return 0
    return sum(len(list(meta.parent.glob("members/member_*.nc"))) for meta in folder.rglob("store.json")
               if str(meta.parent.relative_to(folder)) not in kept and lends_as(meta, identity))


def lends_as(meta: Path, identity: str) -> bool:
    """Whether the store of ``meta`` (its ``store.json``) was made with ``identity``."""
    try:
        return json.loads(meta.read_text()).get("runs") == identity
    except (OSError, ValueError, AttributeError):
        return False


def _rows(store: EnsembleStore) -> tuple[list[str], np.ndarray] | None:
    try:
        theta = xr.load_dataset(store.path / "design.nc", engine=_ENGINE)["theta"]
        return [str(p) for p in theta["parameter"].values], np.ascontiguousarray(theta.values, dtype=float)
    except Exception:  # noqa: BLE001 - an unreadable lender lends nothing
        return None


def _offers(lender: EnsembleStore, names: list[str], keep: list[str] | None) -> dict[bytes, Path]:
    """A lender's done members whose files hold ``keep`` (all it ran, when None), by row bytes."""
    try:
        lent = json.loads((lender.path / "store.json").read_text()).get("keep", ())
    except (OSError, ValueError):
        return {}
    if lent is not None and (keep is None or not set(keep) <= set(lent)):
        return {}
    rows = _rows(lender)
    if rows is None or rows[0] != names:
        return {}
    status = lender.status()["status"].values
    return {rows[1][m].tobytes(): lender._file(m) for m in np.flatnonzero(status == "done")}


def adopt_members(store: EnsembleStore, theta: np.ndarray, names: list[str], todo: list[int],
                  lent: list[EnsembleStore], keep: list[str] | None) -> list[int]:
    """Copy into ``store`` each member of ``todo`` whose row of ``theta`` a lender has done;
    returns the members taken (listed in the store's :data:`ADOPTED`)."""
    offers: dict[bytes, Path] = {}
    for lender in reversed(lent):  # the first lender's file wins
        offers.update(_offers(lender, names, keep))
    taken = {m: src for m in todo
             if (src := offers.get(np.ascontiguousarray(theta[m], dtype=float).tobytes())) is not None}
    if not taken:
        return []
    path = store.path / ADOPTED
    old = set(json.loads(path.read_text())) if path.exists() else set()
    _write_list(path, old | set(taken))  # listed first: a kill mid-copy leaves no copy counted as made
    for m, src in list(taken.items()):
        ds = xr.load_dataset(src, engine=_MEMBER_ENGINE)
        attrs = dict(ds.attrs)
        if keep is not None and not set(keep) <= set(ds.data_vars):  # this run lacks one: run it
            del taken[m]
            continue
        out = ds[keep] if keep is not None else ds
        final = store._file(m)
        tmp = final.with_suffix(".nc.tmp")
        store._write_file(out.drop_attrs(deep=False), tmp, m, attrs["status"], attrs.get("reason", ""),
                          float(attrs.get("wall_time", np.nan)))
        stamp = src.stat()
        os.utime(tmp, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # made then, not now
        os.replace(tmp, final)
    _write_list(path, old | set(taken))
    return sorted(taken)


def _write_list(path: Path, members: set[int]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sorted(int(m) for m in members)))
    os.replace(tmp, path)


def adopted_count(store_dir: str | Path) -> int:
    """How many of a store's member files were taken from other stores (0 for none)."""
    path = Path(store_dir) / ADOPTED
    try:
        members = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    return sum((Path(store_dir) / "members" / f"member_{m:06d}.nc").exists() for m in members)


def made_runs(folder: Path) -> int:
    """The member files of the stores under ``folder`` (each a finished model run) made there:
    not those taken from other stores (:func:`adopted_runs`)."""
    return sum(len(list(p.parent.glob("members/member_*.nc"))) - adopted_count(p.parent)
               for p in Path(folder).rglob("store.json"))


def adopted_runs(folder: Path) -> int:
    """The member files of the stores under ``folder`` taken from other stores' runs at the same
    values: runs a stage's results rest on, not made by it."""
    return sum(adopted_count(p.parent) for p in Path(folder).rglob("store.json"))
