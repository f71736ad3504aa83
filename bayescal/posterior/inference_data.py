"""InferenceData for ArviZ 0.2x and 1.x: build from xarray Datasets, save, load, list and get groups.

ArviZ 0.2x has its own ``arviz.InferenceData`` (one xarray Dataset per group); ArviZ 1.x (Python
>= 3.12 on PyPI; arviz-base, -stats and -plots) uses an ``xarray.DataTree`` whose children are the
groups. Both write the same netCDF layout (one HDF5 group per InferenceData group), so a
``posterior.nc`` written under one line opens under the other. All of bayescal goes through the
functions here; what they return is the installed ArviZ's own object, so ``az.loo``,
``az.summary``, ``az.plot_trace`` and the PPC plots (``az.plot_ppc`` on 0.2x,
``az.plot_ppc_dist`` on 1.x) take it directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import arviz as az
import xarray as xr

__all__ = [
    "ARVIZ_1",
    "get_group",
    "group_names",
    "has_group",
    "load_inference_data",
    "make_inference_data",
    "save_inference_data",
]

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1
"""True with ArviZ 1.x (DataTree-based), False with 0.2x."""

_DataTree = getattr(xr, "DataTree", None)  # xarray >= 2024.10 (ArviZ 1.x requires it)


def _is_tree(idata: Any) -> bool:
    return _DataTree is not None and isinstance(idata, _DataTree)


def make_inference_data(groups: Mapping[str, xr.Dataset | None]) -> Any:
    """InferenceData (0.2x) or DataTree (1.x) with one group per Dataset (``None`` ones left out)."""
    groups = {k: v for k, v in groups.items() if v is not None}
    if ARVIZ_1:
        return xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    return az.InferenceData(**groups)


def group_names(idata: Any) -> list[str]:
    """The group names (``posterior``, ``sample_stats``, ...), in the object's order."""
    if _is_tree(idata):
        return list(idata.children)
    return list(idata.groups())


def has_group(idata: Any, name: str) -> bool:
    return name in group_names(idata)


def get_group(idata: Any, name: str) -> xr.Dataset:
    """One group as an xarray Dataset (with its attributes)."""
    if not has_group(idata, name):
        raise KeyError(f"the InferenceData has no group {name!r}; it has {group_names(idata)}")
    if _is_tree(idata):
        return idata[name].to_dataset()
    return getattr(idata, name)


def save_inference_data(idata: Any, path: str | Path) -> Path:
    """Write ``idata`` to netCDF (HDF5) at ``path`` atomically: a temporary file, then rename.

    A run killed while writing leaves the previous file (or none), never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        if _is_tree(idata):
            idata.to_netcdf(tmp, engine="h5netcdf")
        else:
            idata.to_netcdf(str(tmp), engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_inference_data(path: str | Path) -> Any:
    """Read a saved InferenceData into memory (the file is closed afterwards)."""
    path = str(path)
    if ARVIZ_1:
        dt = az.from_netcdf(path, engine="h5netcdf")
        dt.load()
        dt.close()
        return dt
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(path, engine="h5netcdf")
