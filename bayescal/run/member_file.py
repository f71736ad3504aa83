"""A model run's member file of an :class:`~bayescal.run.ensemble.EnsembleStore`: netCDF-3 with
the run's ``status``, ``reason`` and ``wall_time`` as global attributes, read without xarray
(a store is checked on every resume and load, and counted by every report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["member_attrs", "member_file_problem", "storable"]


def member_file_problem(path: Path) -> str:
    """What is wrong with a member file ('' when it is complete and readable).

    Read with scipy's netCDF-3 reader, every variable's bytes included (a truncated file fails
    there): about a seventh of what opening and loading it with xarray costs, for a store checked
    on every resume and load (``python benchmarks/bench_runner.py 100 2000``: 0.27 against 2.01 ms).
    """
    from scipy.io import netcdf_file

    try:
        if path.stat().st_size == 0:
            return "is empty"
        with netcdf_file(path, "r", mmap=False) as nc:
            status = getattr(nc, "status", b"")  # a global attribute, as scipy's reader exposes it
            if (status.decode() if isinstance(status, bytes) else str(status)) not in ("done", "failed"):
                return "has no status"
    except PermissionError:  # this user's, not the file's: said, never set aside as torn
        raise
    except Exception as err:  # noqa: BLE001 - any other read error marks the file as torn
        return f"is unreadable ({type(err).__name__}: {err})"
    return ""


def member_attrs(path: Path) -> dict[str, Any]:
    """A member file's ``status``, ``reason`` and ``wall_time`` (its global attributes), read with
    scipy's netCDF-3 reader rather than xarray (a store's status: a report counts failures)."""
    from scipy.io import netcdf_file

    with netcdf_file(path, "r", mmap=False) as nc:
        text = {k: getattr(nc, k, b"") for k in ("status", "reason")}
        out: dict[str, Any] = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in text.items()}
        out["wall_time"] = float(np.ravel(getattr(nc, "wall_time", np.nan))[0])
    return out


def storable(ds: xr.Dataset) -> xr.Dataset:
    """Outputs as netCDF-3 can hold them: 64-bit integers to int32 when they fit, else float64;
    booleans to int8; attributes of other types to strings."""
    out = ds.copy()
    for name, var in list(out.variables.items()):
        if var.dtype.kind == "u" or (var.dtype.kind == "i" and var.dtype.itemsize > 4):
            v = var.values
            fits = v.size == 0 or (v.min() >= np.iinfo(np.int32).min and v.max() <= np.iinfo(np.int32).max)
            new = var.astype(np.int32 if fits else np.float64)
        elif var.dtype.kind == "b":
            new = var.astype(np.int8)
        else:
            continue
        out = out.assign_coords({name: new}) if name in out.coords else out.assign({name: new})
    return out
