"""CF-netCDF gridded products (FLUXCOM GPP, MODIS LAI, CMIP output, ...) aligned to a model's cells
and months.

Reading (docs/site.md, "Gridded products"):

* CF time through cftime: any CF calendar (``noleap``, ``360_day``, ...) decodes, and so does time
  counted in ``months since`` a date in any of them (TRENDY, CMIP); months are taken by (year,
  month) of each time step;
* CF coordinates through their attributes: latitude / longitude are the variables with
  ``standard_name`` latitude / longitude (or ``units`` degrees_north / degrees_east, then the
  names lat, latitude, nav_lat, y / lon, longitude, nav_lon, x); time is the dimension whose
  coordinate is a time (``axis = "T"``, ``standard_name = "time"`` or decoded dates);
* grids: regular (1-D ``lat``, ``lon``), curvilinear or unstructured (``lat``, ``lon`` on the same
  1-D or 2-D dimensions); a dimension besides time and the grid's (depth, band, ...) of more
  than one value is an error naming it (one-value dimensions are dropped);
* lazy: the file is read a block of time steps at a time (about 64 MB), keeping only the boxes a
  cell uses; the regridding weights are a sparse (cells x boxes) matrix, so a 0.05 degree global
  product needs a few hundred MB (``benchmarks/bench_regrid.py``).

Alignment:

* time -- each calendar month's time steps are averaged (per box, missing steps ignored); a step
  belongs to the month of the middle of its CF time bounds when the time has them (CLM/CESM
  history files stamp each month at its end), else of its stamp; the model's months are then
  taken by year and month; no common month is an error;
* space -- each model cell takes the area-weighted (cos latitude) mean of the product's boxes whose
  centres lie within ``footprint_deg`` degrees of latitude (and ``footprint_deg / cos(lat)`` of
  longitude) of the cell centre, ignoring missing boxes; ``footprint_deg=None`` takes the nearest
  box. A cell with no valid box is missing;
* sigma -- a ``sigma_variable`` aligned the same way (the mean of the boxes' sigma: errors taken as
  fully correlated within a cell), in its own ``units`` if it has them (else the variable's), or
  ``relative_sigma`` x |value|;
* mask -- boxes where ``mask_variable`` is 0 or missing are left out;
* units -- the variable's ``units`` attribute (or ``file_units``, the config's ``units`` key)
  converted to the model's (``bayescal.readers.units``, pint, in the variable's carbon / water
  context), dimensionally checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from ..observations.products import Observations, Product
from .fluxnet import ReaderError
from .grid_weights import weights as _weights
from .gridded_values import (
    calendar_months,
    check_options,
    check_sigma,
    data_units,
    from_cesm,
    masked,
    open_product,
    per_month_factor,
    refuse_coarser_than_months,
    refuse_fill_codes,
    sigma_factor_of,
    warn_if_stamped_at_month_ends,
)
from .units import UnitError, conversion_factor, parse_units

__all__ = ["check_netcdf_file", "find_cf_coordinates", "read_netcdf_product", "write_gridded_products"]

_LAT_NAMES, _LON_NAMES = ("lat", "latitude", "nav_lat", "y"), ("lon", "longitude", "nav_lon", "x")
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_BLOCK_BYTES = 64 * 2**20  # bytes of one block of time steps read at once


def _candidates(ds: xr.Dataset, da: xr.DataArray) -> list[str]:
    names = list(ds.coords) + [n for n in str(da.attrs.get("coordinates", "")).split() if n in ds]
    names += [n for n in ds.data_vars if n not in names and set(ds[n].dims) <= set(da.dims) and n != da.name]
    return list(dict.fromkeys(names))


def find_cf_coordinates(ds: xr.Dataset, da: xr.DataArray, where: str = "") -> tuple[str, str, str]:
    """Names of ``da``'s time dimension and latitude / longitude variables, found by their CF
    attributes (standard_name, units, axis), then by the usual names."""
    cands = _candidates(ds, da)

    def find(std: str, units: set[str], names: tuple[str, ...]) -> str:
        for test in (lambda v: str(ds[v].attrs.get("standard_name", "")).lower() == std,
                     lambda v: str(ds[v].attrs.get("units", "")).lower().replace(" ", "") in units,
                     lambda v: v.lower() in names[:3],
                     lambda v: v.lower() in names[3:]):
            hit = [v for v in cands if test(v) and set(ds[v].dims) <= set(da.dims)]
            if hit:
                return hit[0]
        raise ReaderError(f"{where}: no {std} coordinate for {da.name!r} (looked for standard_name = "
                          f"'{std}', units {sorted(units)[0]!r}, names {list(names)})")

    lat, lon = find("latitude", _LAT_UNITS, _LAT_NAMES), find("longitude", _LON_UNITS, _LON_NAMES)
    tdim = None
    for d in da.dims:
        c = ds[d] if d in ds.variables else None
        if c is not None and (str(c.attrs.get("axis", "")).upper() == "T"
                              or str(c.attrs.get("standard_name", "")) == "time"
                              or np.issubdtype(c.dtype, np.datetime64) or c.dtype == object):
            tdim = d
            break
    if tdim is None and "time" in da.dims:
        tdim = "time"
    if tdim is None:
        raise ReaderError(f"{where}: variable {da.name!r} has no time dimension (dims {list(da.dims)})")
    return tdim, lat, lon


class _Grid:
    """Where the product's boxes are: the dimensions of the field, the boxes' centres and weights."""

    def __init__(self, ds: xr.Dataset, da: xr.DataArray, tdim: str, lat: str, lon: str, where: str):
        la, lo = ds[lat], ds[lon]
        if la.ndim == 1 and lo.ndim == 1 and la.dims != lo.dims:
            self.dims = (la.dims[0], lo.dims[0])  # regular: boxes row-major on (lat, lon)
            self.lat, self.lon = la.values, lo.values
            self.separable = True
        elif la.dims == lo.dims and la.ndim in (1, 2):
            self.dims = la.dims  # curvilinear (y, x) or unstructured (cell)
            self.lat, self.lon = la.values, lo.transpose(*la.dims).values
            self.separable = False
        else:
            raise ReaderError(f"{where}: latitude {lat!r} {la.dims} and longitude {lon!r} {lo.dims} are "
                              "neither 1-D on their own dimensions nor on the same dimensions")
        extra = [d for d in da.dims if d != tdim and d not in self.dims]
        big = [d for d in extra if da.sizes[d] > 1]
        if big:
            raise ReaderError(f"{where}: variable {da.name!r} has dimension(s) "
                              f"{ {d: da.sizes[d] for d in big} } besides time {tdim!r} and the grid's "
                              f"{list(self.dims)}; select one level (a file of {da.name!r} on time, "
                              "latitude, longitude only)")
        self.squeeze = {d: 0 for d in extra}
        self.tdim = tdim

    def weights(self, cells: xr.Dataset, footprint: float | None) -> sparse.csr_matrix:
        return _weights(self.lat, self.lon, cells["lat"].values, cells["lon"].values, footprint,
                        points=not self.separable)

    def field(self, da: xr.DataArray) -> xr.DataArray:
        """``da`` (lazy) on (time, *grid dims) or (*grid dims) without its one-value dimensions."""
        order = ([self.tdim] if self.tdim in da.dims else []) + list(self.dims)
        # the data's one-value dimensions, and a sigma's or mask's own (a band of 1)
        da = da.isel({d: 0 for d in da.dims if d not in order and da.sizes[d] == 1})
        return da.transpose(*order)


def _month_keys(ds: xr.Dataset, da: xr.DataArray, tdim: str, where: str) -> np.ndarray:
    """Year * 12 + month of each time step: of the middle of its CF time bounds where the time
    has them (CLM/CESM history files stamp a month at its end, 1 February for January), else of
    the stamp."""
    t = da[tdim]
    bounds = t.attrs.get("bounds", t.encoding.get("bounds"))
    stamps = not (bounds in ds.variables and ds[bounds].ndim == 2 and ds[bounds].sizes.get(tdim) == t.size)
    if not stamps:
        b = ds[bounds].transpose(tdim, ...).values
        try:
            t = xr.DataArray(b[:, 0] + (b[:, 1] - b[:, 0]) / 2, dims=tdim)
        except TypeError as err:
            raise ReaderError(f"{where}: time bounds {bounds!r} of {da.name!r} are not dates "
                              f"({err})") from None
    try:
        keys = t.dt.year.values.astype(np.int64) * 12 + t.dt.month.values.astype(np.int64)
    except (AttributeError, TypeError) as err:
        units = t.attrs.get("units", t.encoding.get("units"))
        why = "it has no units attribute (CF: such as 'days since 1850-01-01')" if units is None else \
            f"units {units!r}: {err}"
        raise ReaderError(f"{where}: time {tdim!r} of {da.name!r} is not decoded as dates ({why})") from None
    twice = pd.Index(t.values).duplicated()
    if twice.any():  # two versions of a product concatenated: their months would be averaged
        first = t.values[int(np.flatnonzero(twice)[0])]
        raise ReaderError(f"{where}: time {tdim!r} of {da.name!r} has {int(twice.sum())} time step(s) "
                          f"twice, the first {str(first)[:19]}: two files or versions concatenated? Each "
                          f"step must come once (if the copies are the same: ds.drop_duplicates({tdim!r}) in "
                          "xarray)")
    refuse_coarser_than_months(None if stamps else ds[bounds].transpose(tdim, ...).values, keys, da.name,
                               where)
    if stamps:
        warn_if_stamped_at_month_ends(t, keys, f"{where}: {da.name!r}", from_cesm(ds.attrs))
    return keys


def _monthly_boxes(da: xr.DataArray, grid: _Grid, used: np.ndarray, keys: np.ndarray,
                   mask: xr.DataArray | None) -> tuple[np.ndarray, np.ndarray]:
    """Monthly means (months, used boxes) of ``da`` read lazily a block of time steps at a time;
    returns the months' keys and the means (NaN where a box has no valid step)."""
    f = grid.field(da)
    nt = f.sizes[grid.tdim]
    n_box = int(np.prod([f.sizes[d] for d in grid.dims]))
    step = max(1, _BLOCK_BYTES // max(1, n_box * f.dtype.itemsize))
    months = np.unique(keys)
    total = np.zeros((months.size, used.size))
    count = np.zeros((months.size, used.size))
    mfix = None
    if mask is not None and grid.tdim not in mask.dims:
        mfix = np.asarray(grid.field(mask).values).reshape(-1)[used]
        mfix = np.isfinite(mfix) & (mfix != 0)
    for a in range(0, nt, step):
        block = np.asarray(f.isel({grid.tdim: slice(a, a + step)}).values)
        v = block.reshape(block.shape[0], -1)[:, used].astype(float)
        del block
        if mask is not None:
            ok = mfix
            if ok is None:
                m = np.asarray(grid.field(mask).isel({grid.tdim: slice(a, a + step)}).values)
                m = m.reshape(m.shape[0], -1)[:, used]
                ok = np.isfinite(m) & (m != 0)
            v = np.where(ok, v, np.nan)
        valid = np.isfinite(v)
        pos = np.searchsorted(months, keys[a:a + step])
        np.add.at(total, pos, np.where(valid, v, 0.0))
        np.add.at(count, pos, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return months, np.where(count > 0, total / count, np.nan)


def _aligned(da: xr.DataArray, grid: _Grid, w: sparse.csr_matrix, used: np.ndarray, keys: np.ndarray,
             months: pd.DatetimeIndex, cells: np.ndarray, mask: xr.DataArray | None,
             codes_of: str | None = None) -> xr.DataArray:
    """Monthly means of the product on the model's cells and months (NaN where nothing is valid);
    with ``codes_of`` (what to name), an undeclared fill code in the boxes' monthly means is refused
    before the boxes are averaged (an average of a code and values is no longer the code)."""
    have, box = _monthly_boxes(da, grid, used, keys, mask)
    want = months.year * 12 + months.month
    if codes_of is not None:  # in the model's months, as the cells read them
        refuse_fill_codes(box[np.isin(have, want)], codes_of,
                          "monthly values of the boxes the model's cells read")
    valid = np.isfinite(box)
    num = (w @ np.where(valid, box, 0.0).T).T
    den = (w @ valid.T.astype(float)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    pos = pd.Index(have).get_indexer(want)
    out = np.where(pos[:, None] >= 0, out[np.maximum(pos, 0)], np.nan)
    return xr.DataArray(out.T, dims=("cell", "time"), coords={"cell": cells, "time": months.values})


def _refuse_missing(ds: xr.Dataset, where: str, *names: str | None) -> None:
    """A ReaderError for the first of ``names`` (the data's, the sigma's, the mask's variable;
    None: not asked for) the file lacks, naming the product key that names another (``GPP`` for
    ``gpp``: a name that differs in case only, or a close one)."""
    import difflib

    have = [str(n) for n in ds.data_vars]
    for v, key in zip(names, ("nc_variable", "sigma_variable", "mask_variable"), strict=False):
        if v is None or v in ds:
            continue
        near = [n for n in have if n.lower() == v.lower()] or difflib.get_close_matches(v, have, n=1)
        hint = f" (the product's '{key}' key names the file's variable: {key} = {near[0]!r}?)" if near else ""
        raise ReaderError(f"{where}: no variable {v!r}; the file has {sorted(have)}{hint}")


def _sigma_units(sv: xr.DataArray, da: xr.DataArray, have: str, sigma_units: str | None,
                 variable: str) -> str:
    """The sigma variable's units: the ``sigma_units`` key, else its attribute -- where that says
    what the data's attribute says (the same units, however written: ``g m-2 d-1`` and ``gC m-2
    day-1``), the data's units as read (``have``: a ``units`` key replacing the data's attribute
    replaces the sigma's too)."""
    attr, data_attr = str(sv.attrs.get("units", "")).strip(), str(da.attrs.get("units", "")).strip()
    if sigma_units:
        return sigma_units
    if attr == data_attr:
        return have
    try:
        same = bool(attr and data_attr) and abs(conversion_factor(attr, data_attr, variable) - 1.0) < 1e-9
    except UnitError:
        same = False
    return have if same else attr


def check_netcdf_file(path: str | Path, variable: str, *, nc_variable: str | None = None,
                      sigma_variable: str | None = None, relative_sigma: float | None = None,
                      mask_variable: str | None = None, file_units: str | None = None,
                      sigma_units: str | None = None, sigma_floor: float | None = None,
                      footprint_deg: float | None = None, key: str = "", **_: object) -> None:
    """What :func:`read_netcdf_product` would refuse of the file itself, checked without the
    model's cells, months or units (a model of your own gives them only when it runs): the file
    opens, its variables exist, its coordinates are found, its time decodes as months or finer,
    its units are readable. Raises :class:`~.fluxnet.ReaderError` starting with the key and file."""
    path = Path(path)
    where = f"{key + ': ' if key else ''}{path}"
    check_options(where, path, sigma_floor=sigma_floor, relative_sigma=relative_sigma,
                  footprint_deg=footprint_deg, sigma_variable=sigma_variable)
    with open_product(path, where) as ds:
        nc_variable = nc_variable or variable
        _refuse_missing(ds, where, nc_variable, sigma_variable, mask_variable)
        da = ds[nc_variable]
        units = file_units or str(da.attrs.get("units", "")).strip()
        if not units:
            raise ReaderError(f"{where}: variable {nc_variable!r} has no 'units' attribute (CF): give its "
                              "units in the product's 'units' key")
        try:
            parse_units(units)
        except UnitError as err:
            hint = "" if file_units else (f"; if its units attribute {units!r} is wrong or not a unit, give "
                                          "the file's units in the product's 'units' key")
            raise ReaderError(f"{where}: variable {nc_variable!r}: {err}{hint}") from None
        if sigma_variable is not None:  # in the data's units, or its own that convert to them
            su = _sigma_units(ds[sigma_variable], da, units, sigma_units, variable)
            sigma_factor_of(su, units, variable, 1.0, f"{where}: sigma variable {sigma_variable!r} [{su}] is "
                            f"not in units of {nc_variable!r}")
        tdim, lat, lon = find_cf_coordinates(ds, da, where)
        _Grid(ds, da, tdim, lat, lon, where)
        _month_keys(ds, da, tdim, where)


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
    file_units: str | None = None,
    sigma_units: str | None = None,
    sigma_floor: float | None = None,
    fill_value: float | None = None,
    key: str = "",
) -> Product:
    """A gridded product on the model's ``cells`` (``lat``, ``lon`` on ``cell``) and ``months``.

    ``variable`` is the model's name; ``nc_variable`` the file's (default the same); ``units``
    the model's units. ``file_units`` / ``sigma_units``: the units of the file's variable / sigma
    variable when its ``units`` attribute is missing or wrong (they replace it; replacing a
    readable attribute that says otherwise is a warning, and a sigma variable with the same
    attribute follows the replacement). ``sigma_floor``: the smallest sigma, in the data
    variable's units (a relative sigma of a zero value, a sigma missing where there are data).
    ``fill_value``: a missing-value code the file's attributes do not declare (``_FillValue`` and
    ``missing_value`` are honoured); without it, one large round number in three or more monthly
    values of the boxes the model's cells read, in the model's months, is an error asking for it.
    A sigma variable without time is the same every month. See the module docstring for the
    reading and the alignment.
    """
    path = Path(path)
    where = f"{key + ': ' if key else ''}{path}"
    check_options(where, path, sigma_floor=sigma_floor, relative_sigma=relative_sigma,
                  footprint_deg=footprint_deg, sigma_variable=sigma_variable)
    ds = open_product(path, where)
    with ds:
        nc_variable = nc_variable or variable
        _refuse_missing(ds, where, nc_variable, sigma_variable, mask_variable)
        da = masked(ds[nc_variable], fill_value)
        have, factor = data_units(da, file_units, units, variable, f"{where}: variable {nc_variable!r}")
        tdim, lat, lon = find_cf_coordinates(ds, da, where)
        grid = _Grid(ds, da, tdim, lat, lon, where)
        sv = None if sigma_variable is None else masked(ds[sigma_variable], fill_value)
        if sv is not None and tdim not in sv.dims:  # a map of sigma: the same every month
            sv = sv.expand_dims({tdim: ds[tdim]})
        mv = None if mask_variable is None else ds[mask_variable]
        for v, arr in ((sigma_variable, sv), (mask_variable, mv)):
            if v is not None:
                _Grid(ds, arr, tdim, lat, lon, where)  # same grid, no extra dimension
                if not set(grid.dims) <= set(arr.dims):
                    raise ReaderError(f"{where}: {v!r} is not on the grid of {nc_variable!r} "
                                      f"{list(grid.dims)}")
        mask = mv
        w = grid.weights(cells, footprint_deg)
        used = np.unique(w.indices)
        w = sparse.csr_matrix((w.data, np.searchsorted(used, w.indices), w.indptr),
                              shape=(w.shape[0], used.size))  # on the boxes some cell uses
        keys, times = _month_keys(ds, da, tdim, where), da[tdim].load()
        months = pd.DatetimeIndex(months)
        data = _aligned(da, grid, w, used, keys, months, cells["cell"].values, mask,
                        codes_of=f"{where}: variable {nc_variable!r}" if fill_value is None else None)
        sigma_factor, su = factor, have  # relative_sigma, or a sigma variable without units: the data's
        if sv is not None:
            sigma = _aligned(sv, grid, w, used, keys, months, cells["cell"].values, mask)
            su = _sigma_units(sv, da, have, sigma_units, variable) or have
            sigma_factor = sigma_factor_of(su, units, variable, factor, f"{where}: sigma variable "
                                         f"{sigma_variable!r} [{su}] is not in units of {nc_variable!r}")
        else:
            sigma = relative_sigma * np.abs(data)
    if not np.isfinite(data.values).any():
        raise ReaderError(f"{where}: no value on the model's cells and months "
                          f"({months[0]:%Y-%m}..{months[-1]:%Y-%m}): no overlap in time or space")
    if sigma_floor is not None:  # in the data variable's units; a missing sigma becomes the floor
        sigma = np.fmax(sigma, sigma_floor * factor / sigma_factor)
    check_sigma(data, sigma, f"{where}: sigma of {nc_variable!r}")
    days = calendar_months(times, keys, months)  # calendar months' totals per month: by their days
    data, sigma = data * per_month_factor(have, days), sigma * per_month_factor(su, days)
    data = (data * factor).assign_attrs(units=units, source=str(path), file_units=have)
    sigma = (sigma * abs(sigma_factor)).assign_attrs(units=units)
    return Product(name or f"{path.stem}", variable, data, sigma)


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
