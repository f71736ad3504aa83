"""The ensemble store: a directory with a design and one netCDF file per finished member.

:func:`~bayescal.run.ensemble.run_ensemble` writes it (this process is its only writer); the
workflows' run stores and the report read it. Every file is written to a temporary name and
renamed into place, so a kill at any moment leaves only complete members.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .member_file import member_attrs, member_file_problem, storable

__all__ = ["EnsembleStore", "MemberResult"]

_ENGINE = "h5netcdf"  # the design file
# member files: netCDF-3 (64-bit offset) through scipy, ~1 ms a small file against ~18 ms with
# h5netcdf (benchmarks/bench_runner.py); readable by every netCDF tool
_MEMBER_ENGINE = "scipy"


#: write errors of the file system, not of the output: never a member's failure (it would be
#: kept as finished, and never run again once the disk has room)
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                          errno.EFBIG, errno.ENAMETOOLONG})


def _of_the_disk(err: BaseException) -> bool:
    """Whether a write failed for the file system (full, read-only, not ours) rather than the output."""
    return isinstance(err, OSError) and err.errno in _DISK_ERRNOS


@dataclass
class MemberResult:
    """Outcome of one member: ``status`` is ``"done"`` or ``"failed"``."""

    member: int
    status: str
    reason: str = ""
    wall_time: float = 0.0
    output: xr.Dataset | None = None


class EnsembleStore:
    """A directory holding a design and one netCDF file per finished member.

    Layout: ``design.nc`` (the full parameter vectors), ``store.json`` (metadata, design hash),
    ``members/member_NNNNNN.nc`` (outputs of a done member, or only its status if it failed).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def members_dir(self) -> Path:
        return self.path / "members"

    def _file(self, member: int) -> Path:
        return self.members_dir / f"member_{member:06d}.nc"

    @staticmethod
    def _hash(design: xr.DataArray) -> str:
        h = hashlib.sha256(np.ascontiguousarray(design.values, dtype=float).tobytes())
        h.update(json.dumps([str(p) for p in design["parameter"].values]).encode())
        return h.hexdigest()

    def exists(self) -> bool:
        return (self.path / "store.json").exists()

    def initialise(self, design: xr.DataArray, keep: list[str] | None = None,
                   runs: str | None = None) -> None:
        """Create the store for ``design``, or check that an existing store holds the same one.
        ``keep`` (the output variables its members hold; None: all) and ``runs`` (the identity of
        what a run gives besides its parameter values) are recorded for :mod:`.reuse`."""
        digest = self._hash(design)
        meta_path = self.path / "store.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("design_sha256") != digest:
                raise ValueError(
                    f"ensemble store {str(self.path)!r} holds a different design "
                    f"({meta.get('n_members')} members); use a new directory or the same design"
                )
            return
        self._refuse_a_foreign_design(digest)
        self.members_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "design.nc.tmp"
        theta = design.rename("theta").assign_attrs(
            long_name="parameter values (physical units), every value of the model's space")
        theta.to_dataset().to_netcdf(tmp, engine=_ENGINE)
        os.replace(tmp, self.path / "design.nc")
        meta = {"design_sha256": digest, "n_members": int(design.sizes["member"]),
                "parameters": [str(p) for p in design["parameter"].values], "format": 1,
                "keep": None if keep is None else sorted(keep), "runs": runs}
        tmp = self.path / "store.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, meta_path)

    def _refuse_a_foreign_design(self, digest: str) -> None:
        """A ``design.nc`` without ``store.json`` is kept only if it is this design (a store whose
        creation was killed between the two files); any other is not bayescal's to overwrite."""
        path = self.path / "design.nc"
        if not path.exists():
            return
        try:
            ours = self._hash(xr.load_dataset(path, engine=_ENGINE)["theta"]) == digest
        except Exception:  # noqa: BLE001 - unreadable, or no theta: not this store's
            ours = False
        if not ours:
            raise ValueError(f"ensemble store {str(self.path)!r}: it holds a design.nc but no store.json, "
                             "so it is not an ensemble store of this design (bayescal does not overwrite "
                             "it); use a new directory")

    def design(self) -> xr.DataArray:
        """The stored design, (member, parameter)."""
        return xr.load_dataset(self.path / "design.nc", engine=_ENGINE)["theta"]

    def finished(self) -> set[int]:
        """Members with a complete, readable file.

        Leftovers of interrupted writes (``member_*.nc.tmp``, the store's own) are removed. A
        member file that is empty, truncated or unreadable, or lacks its status (a torn write on a
        file system that does not honour ``fsync``/``rename``, a copy cut short) is renamed to
        ``*.nc.corrupt`` with a warning naming it, so the member runs again.
        """
        if not self.members_dir.exists():
            return set()
        for tmp in self.members_dir.glob("member_*.nc.tmp"):  # the store's own, none other
            tmp.unlink(missing_ok=True)
        done = set()
        for p in self.members_dir.glob("member_*.nc"):
            problem = member_file_problem(p)
            if problem:
                os.replace(p, p.with_suffix(".nc.corrupt"))
                warnings.warn(f"ensemble store {self.path}: member file {p.name} {problem}; it will run "
                              f"again (kept as {p.name}.corrupt)", RuntimeWarning, stacklevel=2)
                continue
            done.add(int(p.stem.split("_")[1]))
        return done

    def write(self, result: MemberResult) -> tuple[str, str]:
        """Write one member atomically (temporary file, fsync, rename).

        Outputs are made storable first (:func:`.member_file.storable`); an output that still cannot be
        written fails that member, with the writer's error as its reason — never the run.
        Returns the stored ``(status, reason)``.
        """
        final = self._file(result.member)
        tmp = final.with_suffix(".nc.tmp")
        ds = storable(result.output) if result.output is not None else xr.Dataset()
        status, reason = result.status, result.reason
        try:
            self._write_file(ds, tmp, result.member, status, reason, result.wall_time)
        except Exception as err:  # noqa: BLE001 - an unstorable output fails the member only
            tmp.unlink(missing_ok=True)
            if _of_the_disk(err):  # a full disk, a quota, a permission: the run stops; the member runs again
                raise OSError(err.errno, err.strerror or str(err), str(final)) from err
            status, reason = "failed", f"cannot store the output: {type(err).__name__}: {err}"
            self._write_file(xr.Dataset(), tmp, result.member, status, reason, result.wall_time)
        os.replace(tmp, final)
        return status, reason

    @staticmethod
    def _write_file(ds: xr.Dataset, tmp: Path, member: int, status: str, reason: str, wall: float) -> None:
        ds = ds.copy()
        reason = reason.encode("ascii", "replace").decode()  # netCDF-3 text is ASCII
        ds.attrs.update(member=int(member), status=status, reason=reason, wall_time=float(wall))
        ds.to_netcdf(tmp, engine=_MEMBER_ENGINE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())

    def _n_members(self) -> int:
        return int(json.loads((self.path / "store.json").read_text())["n_members"])

    def _status_table(self, attrs: dict[int, dict]) -> xr.Dataset:
        n = self._n_members()
        status = np.array(["missing"] * n, dtype=object)
        reason = np.array([""] * n, dtype=object)
        wall = np.full(n, np.nan)
        for m, a in attrs.items():
            status[m], reason[m], wall[m] = a["status"], a["reason"], a["wall_time"]
        return xr.Dataset(
            {"status": ("member", status.astype(str)), "reason": ("member", reason.astype(str)),
             "wall_time": ("member", wall, {"units": "s"})},
            coords={"member": np.arange(n)},
        )

    def status(self) -> xr.Dataset:
        """Status, failure reason and wall time of every member of the design (members not run
        yet, or whose file is torn: ``missing``). Read from the member files' attributes only, and
        nothing moved (:meth:`finished` sets a torn file aside before a run)."""
        attrs = {}
        for path in self.members_dir.glob("member_*.nc") if self.members_dir.exists() else ():
            try:
                a = member_attrs(path)
            except Exception:  # noqa: BLE001 - a torn file is not finished
                continue
            if a["status"] in ("done", "failed"):
                attrs[int(path.stem.split("_")[1])] = a
        return self._status_table(attrs)

    def load(self, include_failed: bool = True) -> xr.Dataset:
        """All members as one Dataset on ``member``, with ``theta``, ``status``, ``reason``.

        Failed and missing members hold NaN outputs (or are left out with
        ``include_failed=False``); later stages skip them through ``status``.
        Each member file is read once.
        """
        files = {m: xr.load_dataset(self._file(m), engine=_MEMBER_ENGINE) for m in sorted(self.finished())}
        status = self._status_table({m: ds.attrs for m, ds in files.items()})
        done = [m for m, ds in files.items() if ds.attrs["status"] == "done"]
        parts = [files[m].drop_attrs(deep=False).expand_dims(member=[m]) for m in done]
        out = xr.concat(parts, dim="member", join="outer") if parts else xr.Dataset()
        members = status["member"].values if include_failed else np.array(done, dtype=int)
        out = out.reindex(member=members) if parts else out.assign_coords(member=members)
        out["theta"] = self.design().sel(member=members)
        for v in ("status", "reason", "wall_time"):
            out[v] = status[v].sel(member=members)
        return out
