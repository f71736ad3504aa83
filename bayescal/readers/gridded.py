"""CF-netCDF gridded products (FLUXCOM GPP, MODIS LAI, ...) aligned to a model's cells and months.

Alignment (docs/site.md, "Gridded products"):

* time -- a product finer than monthly is averaged to calendar months; the model's months are then
  taken by year and month; no common month is an error;
* space -- each model cell takes the area-weighted (cos latitude) mean of the product's boxes whose
  centres lie within ``footprint_deg`` degrees of latitude (and ``footprint_deg / cos(lat)`` of
  longitude) of the cell centre, ignoring missing boxes; ``footprint_deg=None`` takes the nearest
  box. A cell with no valid box is missing;
* sigma -- a ``sigma_variable`` aligned the same way (the mean of the boxes' sigma: errors taken as
  fully correlated within a cell) or ``relative_sigma`` x |value|;
* mask -- boxes where ``mask_variable`` is 0 or missing are left out;
* units -- the variable's ``units`` attribute converted to the model's (``bayescal.readers.units``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from ..observations import Observations, Product
from .fluxnet import ReaderError
from .units import UnitError, convert

__all__ = ["read_netcdf_product", "write_gridded_products"]

_LAT, _LON = ("lat", "latitude", "y"), ("lon", "longitude", "x")


def _coord(ds: xr.Dataset, names: tuple[str, ...], where: str) -> str:
    for n in names:
        if n in ds.coords or n in ds.dims:
            return n
    raise ReaderError(f"{where}: no {names[0]} coordinate (looked for {list(names)})")


def _weights(lat: np.ndarray, lon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
             footprint: float | None) -> sparse.csr_matrix:
    """(cells, boxes) area weights of the product boxes each cell averages."""
    glat, glon = np.meshgrid(lat, lon, indexing="ij")
    glat, glon = glat.ravel(), glon.ravel()
    dlon = (glon[None, :] - cell_lon[:, None] + 180.0) % 360.0 - 180.0
    dlat = glat[None, :] - cell_lat[:, None]
    if footprint is None:
        dist = dlat**2 + (dlon * np.cos(np.deg2rad(cell_lat))[:, None]) ** 2
        cols = np.argmin(dist, axis=1)
        return sparse.csr_matrix((np.ones(cell_lat.size), (np.arange(cell_lat.size), cols)),
                                 shape=(cell_lat.size, glat.size))
    inside = (np.abs(dlat) <= footprint) & (
        np.abs(dlon) <= footprint / np.maximum(np.cos(np.deg2rad(cell_lat)), 0.05)[:, None])
    w = np.where(inside, np.cos(np.deg2rad(glat))[None, :], 0.0)
    return sparse.csr_matrix(w)


def _aligned(da: xr.DataArray, w: sparse.csr_matrix, lat: str, lon: str, months: pd.DatetimeIndex,
             cells: np.ndarray) -> xr.DataArray:
    """Monthly means of the product on the model's cells and months (NaN where nothing is valid)."""
    da = da.transpose("time", lat, lon)
    t = pd.DatetimeIndex(da["time"].values)
    if len(t) > 1 and (t[1:] - t[:-1]).min() < pd.Timedelta(days=27):
        da = da.resample(time="MS").mean()
        t = pd.DatetimeIndex(da["time"].values)
    key = t.year * 12 + t.month
    want = months.year * 12 + months.month
    pos = pd.Index(key).get_indexer(want)
    v = da.values.reshape(len(t), -1)
    valid = np.isfinite(v)
    num = (w @ np.where(valid, v, 0.0).T).T
    den = (w @ valid.T.astype(float)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    out = np.where(pos[:, None] >= 0, out[np.maximum(pos, 0)], np.nan)
    return xr.DataArray(out.T, dims=("cell", "time"), coords={"cell": cells, "time": months.values})


def read_netcdf_product(
    path: str | Path,
    variable: str,
    *,
    cells: xr.Dataset,
    months,
    units: str,
    nc_variable: str | None = None,
    sigma_variable: str | None = None,
    relative_sigma: float | None = None,
    mask_variable: str | None = None,
    footprint_deg: float | None = None,
    name: str | None = None,
    key: str = "",
) -> Product:
    """A gridded product on the model's ``cells`` (``lat``, ``lon`` on ``cell``) and ``months``.

    ``variable`` is the model's name; ``nc_variable`` the file's (default the same); ``units``
    the model's units. See the module docstring for the alignment.
    """
    path = Path(path)
    where = f"{key + ': ' if key else ''}{path}"
    if not path.is_file():
        raise ReaderError(f"{where}: file not found")
    try:
        ds = xr.open_dataset(path)
    except (OSError, ValueError) as err:
        raise ReaderError(f"{where}: not a netCDF file ({err})") from None
    with ds:
        nc_variable = nc_variable or variable
        for v in (nc_variable, sigma_variable, mask_variable):
            if v is not None and v not in ds:
                raise ReaderError(f"{where}: no variable {v!r}; the file has {sorted(ds.data_vars)}")
        da = ds[nc_variable].load()
        if "units" not in da.attrs:
            raise ReaderError(f"{where}: variable {nc_variable!r} has no 'units' attribute (CF)")
        if "time" not in da.dims:
            raise ReaderError(f"{where}: variable {nc_variable!r} has no time dimension")
        lat, lon = _coord(ds, _LAT, where), _coord(ds, _LON, where)
        if mask_variable is not None:
            da = da.where(ds[mask_variable].fillna(0) != 0)
        w = _weights(ds[lat].values, ds[lon].values, cells["lat"].values, cells["lon"].values, footprint_deg)
        months = pd.DatetimeIndex(months)
        data = _aligned(da, w, lat, lon, months, cells["cell"].values)
        if sigma_variable is not None:
            sigma = _aligned(ds[sigma_variable].load(), w, lat, lon, months, cells["cell"].values)
        elif relative_sigma is not None:
            sigma = relative_sigma * np.abs(data)
        else:
            raise ReaderError(f"{where}: give sigma_variable or relative_sigma for {nc_variable!r}")
    if not np.isfinite(data.values).any():
        raise ReaderError(f"{where}: no value on the model's cells and months "
                          f"({months[0]:%Y-%m}..{months[-1]:%Y-%m}): no overlap in time or space")
    has = np.isfinite(data.values)
    if not (sigma.values[has] > 0).all():
        raise ReaderError(f"{where}: sigma must be > 0 where {nc_variable!r} has data")
    try:
        factor = convert(1.0, da.attrs["units"], units)
    except UnitError as err:
        raise ReaderError(f"{where}: {err}") from None
    data = (data * factor).assign_attrs(units=units, source=str(path))
    return Product(name or f"{path.stem}", variable, data, (sigma * abs(factor)).assign_attrs(units=units))


def write_gridded_products(obs: Observations, cells: xr.Dataset, directory: str | Path,
                           resolution: float = 1.0) -> list[Path]:
    """Write products on (cell, time) as CF-netCDF on a regular lat-lon grid: each cell's values in
    the box nearest its centre, the other boxes missing (for the file route's twin example).

    Two cells in one box are an error (choose a finer ``resolution``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lat = np.arange(-90 + resolution / 2, 90, resolution)
    lon = np.arange(-180 + resolution / 2, 180, resolution)
    # the box the reader's nearest-box rule picks (same tie-breaking)
    box = _weights(lat, lon, cells["lat"].values, cells["lon"].values, None).indices
    i, j = np.divmod(box, lon.size)
    if len(set(zip(i, j, strict=True))) < i.size:
        raise ValueError(f"two cells share a {resolution} degree box; choose a finer resolution")
    paths = []
    for p in obs:
        t = p.data["time"].values
        grid = np.full((t.size, lat.size, lon.size), np.nan, dtype=np.float32)
        sig = np.full_like(grid, np.nan)
        grid[:, i, j] = p.data.transpose("time", "cell").values
        if p.sigma is not None:
            sig[:, i, j] = (p.sigma.broadcast_like(p.data).transpose("time", "cell").values)
        ds = xr.Dataset(
            {p.variable: (("time", "lat", "lon"), grid, {"units": p.units, "long_name": p.name}),
             f"{p.variable}_sigma": (("time", "lat", "lon"), sig,
                                     {"units": p.units, "long_name": "1-sigma"})},
            coords={"time": t, "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                    "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})},
            attrs={"Conventions": "CF-1.8", "title": f"bayescal twin product {p.name}",
                   "source": "bayescal twin (make_twin), written by write_gridded_products"},
        )
        path = directory / f"{p.variable}_{p.name}.nc"
        enc = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars}
        ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
        paths.append(path)
    return paths
