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
import numpy as np
import xarray as xr

from ..parameters import GROUPINGS, ParameterSpace, split_label
from .errors import PosteriorError

__all__ = [
    "ARVIZ_1",
    "family_dataset",
    "get_group",
    "group_dims",
    "group_names",
    "has_group",
    "load_inference_data",
    "make_inference_data",
    "save_inference_data",
    "unit_samples",
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
    """One group as an xarray Dataset (with its attributes). ``idata`` may also be the group
    itself: a Dataset (``idata.posterior`` of ArviZ 0.2x: taken as the group ``name``, which it
    cannot say) or a DataTree node holding variables and no groups (``idata.posterior`` of ArviZ
    1.x: a KeyError if it is another group)."""
    if isinstance(idata, xr.Dataset):
        return idata
    if _is_tree(idata) and not idata.children and idata.data_vars:
        if idata.name not in (None, name):
            raise KeyError(f"this is the InferenceData's group {idata.name!r}, not {name!r}: give the whole "
                           f"InferenceData or its {name!r} group")
        return idata.to_dataset()
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


# ---------------------------------------------- parameters in the posterior's layout
def family_dataset(space: ParameterSpace, u: np.ndarray, attrs: dict | None = None,
                   sample: dict | None = None) -> xr.Dataset:
    """Unit-cube samples (chain, draw, d) as a Dataset of physical values, one variable per family
    (units and description in attrs): the layout :func:`unit_samples` reads. A vector family is
    on the dimension of its groups (:func:`group_dims`): every family over the nine PFTs shares
    ``pft``, so ``posterior.sel(pft="NDL-EVG")`` takes one PFT's values of every family and a
    table of the posterior has a column per value. ``sample``: the chain and draw coordinates
    (default 0, 1, ...)."""
    params = {p.name: p for p in space}
    sample = sample or {"chain": np.arange(u.shape[0]), "draw": np.arange(u.shape[1])}
    dims, coords = group_dims(space)
    data = {}
    for fam, x in _to_families(space, u).items():
        p = params.get(fam)
        a = {"units": getattr(p, "units", "") or ""}
        if getattr(p, "description", ""):
            a["long_name"] = p.description
        data[fam] = (("chain", "draw", dims[fam]) if x.ndim == 3 else ("chain", "draw"), x, a)
    return xr.Dataset(data, coords={**sample, **coords}, attrs=attrs or {})


def group_dims(space: ParameterSpace) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The dimension of each vector family's groups, and each dimension's labels. Families with
    the same groups share one: ``pft`` for the nine PFTs, ``pft4`` / ``pft2`` for the coarser
    groupings (:data:`~bayescal.parameters.GROUPINGS`), ``<family>_group`` (the first family
    with them) for any other list of groups, a subset of a grouping included."""
    labels: dict[str, list[str]] = {}
    for lab in space.labels:
        fam, grp = split_label(lab)
        if grp:
            labels.setdefault(fam, []).append(grp)
    named = {tuple(v): ("pft" if k == "pft9" else k) for k, v in GROUPINGS.items()}
    dims: dict[str, str] = {}
    coords: dict[str, list[str]] = {}
    for fam, grps in labels.items():
        dim = named.get(tuple(grps)) or next((d for d, c in coords.items() if c == grps), f"{fam}_group")
        dims[fam], coords[dim] = dim, grps
    return dims, coords


def _to_families(space: ParameterSpace, u: np.ndarray) -> dict[str, np.ndarray]:
    """Unit-cube samples (chain, draw, d) to physical values per family."""
    x = space.from_unit(u.reshape(-1, u.shape[-1])).reshape(u.shape)
    out: dict[str, list[int]] = {}
    vector: set[str] = set()
    for j, lab in enumerate(space.labels):
        fam, grp = split_label(lab)
        out.setdefault(fam, []).append(j)
        if grp:
            vector.add(fam)
    return {fam: (x[..., idx] if fam in vector else x[..., idx[0]]) for fam, idx in out.items()}


def unit_samples(idata: Any, space: ParameterSpace, group: str = "posterior") -> xr.DataArray:
    """Samples of an InferenceData group (ArviZ 0.2x or 1.x) as unit-cube values on (sample, parameter)."""
    ds = get_group(idata, group)
    cols = []
    for lab in space.labels:
        fam, grp = split_label(lab)
        if fam not in ds:
            raise PosteriorError(f"{group} has no variable {fam!r} for parameter {lab!r}")
        # its groups' dimension: pft, pft2, ... or <family>_group (every family's own in earlier files)
        extra = [d for d in ds[fam].dims if d not in ("chain", "draw")]
        v = ds[fam].sel({extra[0]: grp}) if grp else ds[fam]
        cols.append(v.values.reshape(-1))
    x = np.column_stack(cols)
    return xr.DataArray(space.to_unit(x), dims=("sample", "parameter"), coords={"parameter": space.labels})
