"""FLUXNET2015 daily (``_DD_``) files: site meteorology for a model, and observation products.

Format (FLUXNET2015 SUBSET, Pastorello et al. 2020): one row per day, ``TIMESTAMP`` YYYYMMDD,
``-9999`` missing. Products (every flux in gC m-2 d-1 or W m-2 as in the file, converted to the
units asked for):

======== ================================ ======================== ========================
variable column                           1-sigma                  days kept
======== ================================ ======================== ========================
nee      ``NEE_VUT_REF``                  ``NEE_VUT_REF_RANDUNC``  ``NEE_VUT_REF_QC >= qc``
gpp      ``GPP_NT_VUT_REF`` / ``_DT_``    relative (partitioning)  ``NEE_VUT_REF_QC >= qc``
reco     ``RECO_NT_VUT_REF`` / ``_DT_``   relative (partitioning)  ``NEE_VUT_REF_QC >= qc``
le       ``LE_F_MDS``                     ``LE_RANDUNC``           ``LE_F_MDS_QC >= qc``
======== ================================ ======================== ========================

Every sigma is floored (``sigma_floor``, in the file's units); a day whose random uncertainty is
missing gets the median of the others (documented in docs/site.md). GPP and RECO have no random
uncertainty in the files: their sigma is ``relative_sigma`` x |value| (default 15 %, an
assumption standing for the partitioning uncertainty), floored.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..observations import ObservationError, Product
from .units import UnitError, convert

__all__ = ["SITES", "ReaderError", "read_fluxnet", "read_fluxnet_drivers", "read_fluxnet_product"]

#: Latitude, longitude and IGBP class of the FLUXNET2015 sites bayescal ships (FLUXNET2015 site list).
SITES = {
    "DE-Hai": (51.0792, 10.4530, "DBF"),
    "FR-Pue": (43.7414, 3.5958, "EBF"),
    "DE-Gri": (50.9495, 13.5125, "GRA"),
}
_PRODUCTS = {  # variable -> (value column, qc column, sigma column or None, file units)
    "nee": ("NEE_VUT_REF", "NEE_VUT_REF_QC", "NEE_VUT_REF_RANDUNC", "gC m-2 d-1"),
    "gpp": ("GPP_{p}_VUT_REF", "NEE_VUT_REF_QC", None, "gC m-2 d-1"),
    "reco": ("RECO_{p}_VUT_REF", "NEE_VUT_REF_QC", None, "gC m-2 d-1"),
    "le": ("LE_F_MDS", "LE_F_MDS_QC", "LE_RANDUNC", "W m-2"),
}
_FLOORS = {"nee": 0.2, "gpp": 0.3, "reco": 0.3, "le": 2.0}  # file units
_DRIVERS = ("TA_F", "SW_IN_F", "CO2_F_MDS")


class ReaderError(ObservationError):
    """A problem with an observation or driver file; the message names the file (and key)."""


def read_fluxnet(path: str | Path, columns: list[str] | None = None, key: str = "") -> pd.DataFrame:
    """The file as a DataFrame on a daily ``time`` index, ``-9999`` as NaN.

    ``columns`` must all exist; ``key`` (the config key that named the file) goes into errors.
    """
    path = Path(path)
    where = f"{key + ': ' if key else ''}{path}"
    if not path.is_file():
        raise ReaderError(f"{where}: file not found")
    try:
        df = pd.read_csv(path, na_values=[-9999, "-9999"])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ReaderError(f"{where}: not a FLUXNET CSV file ({err})") from None
    if "TIMESTAMP" not in df:
        raise ReaderError(f"{where}: no TIMESTAMP column (is this a FLUXNET2015 daily file?)")
    missing = [c for c in columns or [] if c not in df]
    if missing:
        raise ReaderError(f"{where}: missing columns {missing}")
    try:
        time = pd.to_datetime(df.pop("TIMESTAMP").astype(str), format="%Y%m%d")
    except ValueError as err:
        raise ReaderError(f"{where}: TIMESTAMP is not YYYYMMDD daily ({err})") from None
    return df.set_index(pd.DatetimeIndex(time, name="time"))


def _site(path: Path) -> str:
    m = re.match(r"FLX_([A-Z]{2}-[A-Za-z0-9]{3})_", path.name)
    return m.group(1) if m else path.stem


def read_fluxnet_drivers(path: str | Path, lat: float | None = None, key: str = "") -> xr.Dataset:
    """Daily meteorology for a site model: ``ta`` (degC), ``sw`` (MJ m-2 d-1), ``vpd`` (hPa),
    ``co2`` (ppm) on ``time``; ``attrs``: ``site``, ``lat``, ``source``.

    ``SW_IN_F`` is a daily mean flux (W m-2) and becomes a daily total (x 0.0864). Missing CO2
    (e.g. 195 days at FR-Pue) is filled by linear interpolation in time (nearest value at the
    ends). ``lat`` defaults to the site table (:data:`SITES`) for the sites bayescal ships.
    """
    path = Path(path)
    df = read_fluxnet(path, list(_DRIVERS), key)
    site = _site(path)
    if lat is None:
        if site not in SITES:
            raise ReaderError(f"{key + ': ' if key else ''}{path}: site {site!r} is not in bayescal's site "
                              f"table {sorted(SITES)}; give its latitude")
        lat = SITES[site][0]
    for col in ("TA_F", "SW_IN_F"):
        if df[col].isna().any():
            raise ReaderError(f"{path}: {col} has {int(df[col].isna().sum())} missing days; drivers must be "
                              "gap-filled (the _F columns are)")
    co2 = df["CO2_F_MDS"].interpolate(limit_direction="both")
    if co2.isna().all():
        raise ReaderError(f"{path}: CO2_F_MDS is missing on every day")
    ds = xr.Dataset(
        {"ta": ("time", df["TA_F"].to_numpy(float), {"units": "degC"}),
         "sw": ("time", df["SW_IN_F"].to_numpy(float) * 0.0864, {"units": "MJ m-2 d-1"}),
         "co2": ("time", co2.to_numpy(float), {"units": "ppm"})},
        coords={"time": df.index.values},
        attrs={"site": site, "lat": float(lat), "source": str(path)},
    )
    if "VPD_F" in df:
        ds["vpd"] = ("time", df["VPD_F"].to_numpy(float), {"units": "hPa"})
    return ds


def read_fluxnet_product(
    path: str | Path,
    variable: str,
    *,
    partitioning: str | None = None,
    qc_min: float = 0.8,
    sigma_floor: float | None = None,
    relative_sigma: float = 0.15,
    units: str | None = None,
    name: str | None = None,
    key: str = "",
) -> Product:
    """One observation product of ``variable`` (nee, gpp, reco, le) from a FLUXNET daily file.

    Parameters
    ----------
    partitioning : {"NT", "DT"}, required for gpp and reco
        Night-time (Reichstein et al. 2005) or day-time (Lasslop et al. 2010) partitioning.
    qc_min : float, default 0.8
        Keep days whose QC fraction (measured or good-quality gap-filled half-hours) >= this.
    sigma_floor : float, optional
        Smallest sigma, in the file's units (default: nee 0.2, gpp/reco 0.3 gC m-2 d-1, le 2 W m-2).
    relative_sigma : float, default 0.15
        Sigma of gpp/reco as a fraction of |value|.
    units : str, optional
        Convert to these units (default the file's).
    """
    path = Path(path)
    where = f"{key + ': ' if key else ''}{path}"
    if variable not in _PRODUCTS:
        raise ReaderError(f"{where}: unknown FLUXNET variable {variable!r}; known: {sorted(_PRODUCTS)}")
    col, qc_col, sig_col, file_units = _PRODUCTS[variable]
    if "{p}" in col:
        if partitioning not in ("NT", "DT"):
            raise ReaderError(f"{where}: {variable} needs partitioning 'NT' or 'DT', got {partitioning!r}")
        col = col.format(p=partitioning)
    if not 0.0 <= qc_min <= 1.0:
        raise ReaderError(f"{where}: qc_min must be in [0, 1], got {qc_min}")
    floor = _FLOORS[variable] if sigma_floor is None else float(sigma_floor)
    if not floor > 0:
        raise ReaderError(f"{where}: sigma_floor must be > 0, got {floor}")
    df = read_fluxnet(path, [c for c in (col, qc_col, sig_col) if c], key)
    value = df[col].to_numpy(float)
    keep = np.isfinite(value) & (df[qc_col].to_numpy(float) >= qc_min)
    if not keep.any():
        raise ReaderError(f"{where}: every value of {col} is missing after QC ({qc_col} >= {qc_min})")
    if sig_col is not None:
        sigma = df[sig_col].to_numpy(float)
        known = np.isfinite(sigma) & keep
        sigma = np.where(np.isfinite(sigma), sigma, np.median(sigma[known]) if known.any() else floor)
    else:
        sigma = relative_sigma * np.abs(value)
    sigma = np.maximum(sigma, floor)
    value, sigma = np.where(keep, value, np.nan), np.where(keep, sigma, np.nan)
    out_units = units or file_units
    try:
        value, sigma = convert(value, file_units, out_units), convert(sigma, file_units, out_units)
    except UnitError as err:
        raise ReaderError(f"{where}: {err}") from None
    site = _site(path)
    suffix = f"-{partitioning}" if "{p}" in _PRODUCTS[variable][0] else ""
    label = name or f"{site}-{variable.upper()}{suffix}"
    attrs = {"units": out_units, "source": str(path), "column": col, "qc": f"{qc_col} >= {qc_min}"}
    data = xr.DataArray(value, dims="time", coords={"time": df.index.values}, attrs=attrs, name=variable)
    sig = xr.DataArray(sigma, dims="time", coords={"time": df.index.values}, attrs={"units": out_units})
    return Product(label, variable, data, sig, attrs={"site": site, "sigma_floor": floor})
