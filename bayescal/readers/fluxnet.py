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
missing gets the median of the others (documented in docs/site.md); a negative one is an error
naming the column and the day. GPP and RECO have no random uncertainty in the files: their sigma is
``relative_sigma`` (> 0) x |value| (default 15 %, an assumption standing for the partitioning
uncertainty), floored.

Every file: fill values (:data:`FILL_VALUES`) are missing, rows are sorted by day, a duplicated day
is an error naming the first. The site is the ID in the file name (``FLX_<site>_...``); its
latitude for a site model comes from the shipped FLUXNET2015 site table (:func:`site_table`, 166
sites, ``bayescal/data/fluxnet/README.md``) unless given.
"""

from __future__ import annotations

import difflib
import re
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..observations.products import Product
from .csv_files import FILL_VALUES, ReaderError, open_text, read_csv_file, zip_member
from .driver_checks import WeatherError, check_site_drivers
from .units import UnitError, convert

__all__ = ["FILL_VALUES", "SITES", "ReaderError", "check_daily_calendar", "read_fluxnet",
           "data_path", "file_site", "read_fluxnet_drivers", "read_fluxnet_product", "site_info",
           "site_table"]

#: other missing-value codes files use: a value of these on three or more days or cell-months,
#: undeclared, is named (CSV and gridded readers; their ``fill_value`` says it is missing)
FILL_CODES = (-999.0, -99999.0, -999999.0, 999.0, 9999.0, 99999.0, 999999.0, -32768.0, -32767.0, 32767.0,
              65535.0, -8888.0, -7777.0)
SITE_TABLE = "data/fluxnet/fluxnet2015_sites.csv"


def fill_code_in(values: np.ndarray) -> tuple[float, int] | None:
    """The missing-value code (FLUXNET's, :data:`FILL_CODES`, or |x| >= 1e15) that ``values``
    hold most often, and how often, when it is three times or more; else None. Read as data such
    a code would enter the likelihood (the CSV and gridded readers name it)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    odd = x[np.isin(x, (*FILL_VALUES, *FILL_CODES)) | (np.abs(x) >= 1e15)]
    if odd.size < 3:
        return None
    codes, counts = np.unique(odd, return_counts=True)
    i = int(np.argmax(counts))
    return (float(codes[i]), int(counts[i])) if counts[i] >= 3 else None


@lru_cache(maxsize=1)
def site_table() -> pd.DataFrame:
    """The FLUXNET2015 site table bayescal ships (166 sites; ``bayescal/data/fluxnet/README.md``):
    ``latitude``, ``longitude``, ``elevation_m``, ``igbp``, ``first_year``, ``last_year`` by ``site_id``."""
    path = resources.files("bayescal") / SITE_TABLE
    with path.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh).set_index("site_id")


def site_info(site: str) -> dict | None:
    """A site's row of :func:`site_table` as a dict, or None if the site is not in it."""
    t = site_table()
    return None if site not in t.index else {"site": site, **t.loc[site].to_dict()}


#: Latitude, longitude and IGBP class of every FLUXNET2015 site (the shipped site table).
SITES = {str(k): (float(r.latitude), float(r.longitude), str(r.igbp)) for k, r in site_table().iterrows()}
_PRODUCTS = {  # variable -> (value column, qc column, sigma column or None, file units)
    "nee": ("NEE_VUT_REF", "NEE_VUT_REF_QC", "NEE_VUT_REF_RANDUNC", "gC m-2 d-1"),
    "gpp": ("GPP_{p}_VUT_REF", "NEE_VUT_REF_QC", None, "gC m-2 d-1"),
    "reco": ("RECO_{p}_VUT_REF", "NEE_VUT_REF_QC", None, "gC m-2 d-1"),
    "le": ("LE_F_MDS", "LE_F_MDS_QC", "LE_RANDUNC", "W m-2"),
}
_FLOORS = {"nee": 0.2, "gpp": 0.3, "reco": 0.3, "le": 2.0}  # file units
_DRIVERS = ("TA_F", "SW_IN_F", "CO2_F_MDS")
_CO2_HINT = ("a site model's drivers need the air's CO2 in ppm: fill CO2_F_MDS, e.g. with each year's "
             "global mean from NOAA's record (https://gml.noaa.gov/ccgg/trends/gl_data.html); a few missing "
             "days are interpolated")


def data_path(path: str | Path) -> Path:
    """``path``, with ``bayescal:data/...`` (as a config names the shipped files) made the
    installed package's file: ``read_fluxnet_drivers("bayescal:data/fluxnet/FLX_DE-Gri_DD_2004-2014.csv")``
    works in a model of your own as in a config."""
    text = str(path)
    if text.startswith("bayescal:"):
        return Path(str(resources.files("bayescal") / text.split(":", 1)[1]))
    return Path(path)


def _where(path: Path, key: str) -> str:
    return f"{key + ': ' if key else ''}{path}"


def _missing_to_nan(df: pd.DataFrame) -> pd.DataFrame:
    """Fill values (:data:`FILL_VALUES`, also as text such as ``-9999.0``) as NaN in numeric columns."""
    num = df.select_dtypes(include="number").columns
    df[num] = df[num].mask(df[num].isin(FILL_VALUES))
    return df


def _daily_index(time: pd.DatetimeIndex, where: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` on ``time``: duplicated days are an error naming the first; unsorted rows are sorted."""
    dup = time.duplicated()
    if dup.any():
        first = time[dup][0]
        raise ReaderError(f"{where}: {int(dup.sum())} duplicated day(s); the first is {first:%Y-%m-%d} "
                          "(one row per day)")
    df = df.set_index(pd.DatetimeIndex(time, name="time"))
    return df if time.is_monotonic_increasing else df.sort_index(kind="stable")


def read_fluxnet(path: str | Path, columns: list[str] | None = None, key: str = "") -> pd.DataFrame:
    """The file as a DataFrame on a sorted daily ``time`` index, fill values (``-9999``) as NaN.

    ``columns`` must all exist; ``key`` (the config key that named the file) goes into errors.
    Duplicated days are an error naming the first; rows out of order are sorted.
    """
    path = data_path(path)
    where = _where(path, key)
    df = read_csv_file(path, where, "a FLUXNET CSV file")
    if "TIMESTAMP" not in df and "TIMESTAMP" in {str(c).strip().upper() for c in df.columns}:
        df.columns = [str(c).strip().upper() for c in df.columns]  # FLUXNET's names, in upper case
    df = df[~df.isna().all(axis=1)]  # a spreadsheet's blank rows (",,,,"): nothing in them
    if "TIMESTAMP" not in df:
        hint = " (is this a FLUXNET2015 daily file?)"
        if "TIMESTAMP_START" in df:  # FLUXNET2015's half-hourly, hourly (YYYYMMDDHHMM) and weekly files
            first = str(df["TIMESTAMP_START"].iloc[0]).split(".")[0] if len(df) else ""
            what = "a weekly" if len(first) == 8 else "a half-hourly or hourly"
            hint = (f": TIMESTAMP_START and _END are {what} file's; give the site's daily file of the same "
                    "download, FLX_<site>_FLUXNET2015_<SUBSET|FULLSET>_DD_<years>_<v>.csv")
        raise ReaderError(f"{where}: no TIMESTAMP column{hint}")
    missing = [c for c in columns or [] if c not in df]
    if missing:
        # GPP_DT_VUT_REF missing, GPP_NT_VUT_REF there: the other partitioning is
        other = [c.replace(a, b) for c in missing for a, b in (("_DT_", "_NT_"), ("_NT_", "_DT_"))
                 if a in c and c.replace(a, b) in df]
        hint = f" (the file has {other[0]}: partitioning = {other[0].split('_')[1]!r})" if other else ""
        if any(c.endswith("_QC") for c in missing):
            hint += " (a file without quality flags: qc_min = 0 keeps every value it gives)"
        if "CO2_F_MDS" in missing:
            hint += f" ({_CO2_HINT})"
        raise ReaderError(f"{where}: missing columns {missing}{hint}")
    _warn_short_rows(path, where, [str(c) for c in df.columns], columns or [])
    stamp = df.pop("TIMESTAMP")
    number = pd.to_numeric(stamp, errors="coerce")
    text = number.where(number == np.floor(number)).astype("Int64").astype(str)  # 20000101.5: not a day
    time = pd.to_datetime(text.where(text.str.fullmatch(r"\d{8}")), format="%Y%m%d", errors="coerce")
    iso = stamp.astype(str).str.strip()
    iso = pd.to_datetime(iso.where(iso.str.fullmatch(r"\d{4}-\d{2}-\d{2}")), format="%Y-%m-%d",
                         errors="coerce")
    time = time.fillna(iso)  # a file saved with ISO dates (2004-01-31): those days
    if time.isna().any():
        i = int(np.flatnonzero(time.isna())[0])
        coarse = text.str.fullmatch(r"\d{4}(\d{2})?").all()  # FLUXNET2015's YY and MM files
        hint = "; a yearly or monthly file? give the site's daily (_DD_) file" if coarse else ""
        raise ReaderError(f"{where}: TIMESTAMP '{stamp.iloc[i]}' (data row {stamp.index[i] + 1}) is not a "
                          f"YYYYMMDD day{hint}")
    for c in columns or []:
        if not pd.api.types.is_numeric_dtype(df[c]):
            i = int(np.flatnonzero(pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna())[0])
            raise ReaderError(f"{where}: column {c} is not numeric on {time.iloc[i]:%Y-%m-%d} (data row "
                              f"{df.index[i] + 1}): {df[c].iloc[i]!r}")  # the file's row: blank rows count
    return _daily_index(pd.DatetimeIndex(time), where, _missing_to_nan(df))


def _warn_short_rows(path: Path, where: str, header: list[str], columns: list[str]) -> None:
    """A warning for data rows that end before one of ``columns`` (a file cut short, a row edited
    by hand): pandas reads the fields they lack as missing, as it reads -9999. One pass over the
    lines, counting commas (a quoted comma makes a row look longer, never shorter)."""
    at = {c: header.index(c) for c in columns if c in header}
    if not at:
        return
    need = max(at.values())
    short = []
    with open_text(path, where, errors="replace") as fh:
        next(fh, None)
        for n, line in enumerate(fh, 2):
            text = line.strip()
            if text.strip(", ") and text.count(",") < need:
                short.append((n, text.split(",")[0].strip(), text.count(",")))
    if short:
        n, day, commas = short[0]
        lack = [c for c, i in at.items() if i > commas]
        warnings.warn(f"{where}: {len(short)} data row(s) end before the last of the columns read; the "
                      f"first is line {n} (TIMESTAMP {day}, {commas + 1} of the header's {len(header)} "
                      f"fields), without {', '.join(lack)}: read as missing there. A file cut short or "
                      "edited by hand? (FLUXNET writes -9999 for a missing value)", UserWarning, stacklevel=3)


def check_daily_calendar(time: pd.DatetimeIndex, where: str) -> None:
    """Every day from the first to the last once (model drivers): a gap or a missing year is an
    error naming the first missing day and how many are missing."""
    time = pd.DatetimeIndex(time)
    if time.size == 0:
        raise ReaderError(f"{where}: no day")
    full = pd.date_range(time[0], time[-1], freq="D")
    if full.size != time.size:
        gone = full.difference(time)
        per_year = pd.Series(gone.year).value_counts()
        years = sorted(int(y) for y, n in per_year.items() if n >= 365)
        yrs = f"; whole years missing: {years}" if years else ""
        raise ReaderError(f"{where}: drivers must cover every day from {time[0]:%Y-%m-%d} to "
                          f"{time[-1]:%Y-%m-%d}; {gone.size} day(s) missing, the first "
                          f"{gone[0]:%Y-%m-%d}{yrs}")


def file_site(path: str | Path) -> str | None:
    """The site ID a flux file's name gives (``FLX_DE-Hai_...``, ``flx_de-hai_...``: ``DE-Hai``,
    as the site table spells it), or None for another name."""
    site = _site(Path(path))
    return None if site == Path(path).stem else site


def _site(path: Path) -> str:
    """The site ID of a flux file name: ``FLX_DE-Hai_...`` (FLUXNET), ``AMF_US-Ha1_...`` (AmeriFlux);
    of a zip renamed (``hainich.zip``), the name of the file read in it."""
    pattern = r"(?:FLX|AMF|ICOSETC|ICOS)_([A-Za-z]{2}-[A-Za-z0-9]{3})_"
    m = re.match(pattern, path.name, flags=re.IGNORECASE)
    if not m and path.suffix.lower() == ".zip":  # the zip opened only when its own name says nothing
        m = re.match(pattern, Path(zip_member(path) or "").name, flags=re.IGNORECASE)
    if not m:
        return path.stem
    return {s.upper(): s for s in SITES}.get(m.group(1).upper(), m.group(1))  # FLX_fi-hyy_: FI-Hyy


def read_fluxnet_drivers(path: str | Path, lat: float | None = None, key: str = "",
                         check_weather: bool = True) -> xr.Dataset:
    """Daily meteorology for a site model: ``ta`` (degC), ``sw`` (MJ m-2 d-1), ``vpd`` (hPa),
    ``co2`` (ppm) on ``time``; ``attrs``: ``site``, ``lat``, ``source``.

    ``SW_IN_F`` is a daily mean flux (W m-2) and becomes a daily total (x 0.0864). Missing CO2
    (e.g. 195 days at FR-Pue) is filled by linear interpolation in time (nearest value at the
    ends). ``lat`` (degrees north) defaults to the site's row in the FLUXNET2015 site table
    (:func:`site_table`), the site taken from the file name (``FLX_<site>_...``). The days
    must run without a gap, a duplicate or a missing year (:func:`check_daily_calendar`), and the
    weather must be plausible in FLUXNET's units at that latitude
    (:func:`~bayescal.readers.driver_checks.check_site_drivers`: kelvin, radiation scaled or in
    MJ m-2 d-1, the other hemisphere's seasons are a
    :class:`~bayescal.readers.driver_checks.WeatherError` naming the column and a day), unless
    ``check_weather`` is false (an experiment on weather of another site or hemisphere).
    """
    path = data_path(path)
    where = _where(path, key)
    df = read_fluxnet(path, list(_DRIVERS), key)
    site = _site(path)
    given = lat is not None
    if lat is None:
        info = site_info(site)
        if info is None:
            named = f"site {site!r} (from the file name FLX_<site>_...) is not" if site != path.stem else \
                f"the file name is not FLX_<site>_... (the site {site!r}?), so its site is not found"
            close = difflib.get_close_matches(site, list(SITES), n=3, cutoff=0.8)  # a letter off
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ReaderError(f"{where}: {named} in the FLUXNET2015 site table ({len(SITES)} sites, "
                              f"bayescal:{SITE_TABLE}){hint}; give its latitude (model.latitude)")
        lat = info["latitude"]
    if not (np.isfinite(lat) and -90.0 <= float(lat) <= 90.0):
        raise ReaderError(f"{where}: latitude must be in [-90, 90] degrees north, got {lat}")
    check_daily_calendar(df.index, where)
    _warn_before_the_site(df.index, site, where)
    gaps = [f"{col} on {int(df[col].isna().sum())} day(s), the first {df.index[df[col].isna()][0]:%Y-%m-%d}"
            for col in ("TA_F", "SW_IN_F") if df[col].isna().any()]
    if gaps:
        raise ReaderError(f"{where}: drivers missing: {'; '.join(gaps)}; drivers must be gap-filled "
                          "(FLUXNET's _F columns are, so -9999 there is a gap of this copy: fill it, e.g. a "
                          "few days by interpolation in time, or take them from the site's original file)")
    co2 = df["CO2_F_MDS"].interpolate(limit_direction="both")
    if co2.isna().all():
        raise ReaderError(f"{where}: CO2_F_MDS is missing on every day ({_CO2_HINT})")
    filled = int(df["CO2_F_MDS"].isna().sum())
    if check_weather:
        check_site_drivers(df.assign(CO2_F_MDS=co2), float(lat), where, site, WeatherError, given)
    ds = xr.Dataset(
        {"ta": ("time", df["TA_F"].to_numpy(float), {"units": "degC"}),
         "sw": ("time", df["SW_IN_F"].to_numpy(float) * 0.0864, {"units": "MJ m-2 d-1"}),
         "co2": ("time", co2.to_numpy(float), {"units": "ppm"})},
        coords={"time": df.index.values},
        attrs={"site": site, "lat": float(lat), "source": str(path), "co2_filled_days": filled},
    )
    if "VPD_F" in df:
        ds["vpd"] = ("time", df["VPD_F"].to_numpy(float), {"units": "hPa"})
    return ds


def _warn_before_the_site(days: pd.DatetimeIndex, site: str, where: str) -> None:
    """A warning for drivers that start before the site's first FLUXNET2015 year (the site table):
    a file named for another site? (Later years may be a newer release's.)"""
    import warnings

    info = site_info(site)
    if info is not None and len(days) and days[0].year < int(info["first_year"]):
        first, last = int(info["first_year"]), int(info["last_year"])
        warnings.warn(f"{where}: the days start in {days[0].year}, before {site}'s first FLUXNET2015 year "
                      f"{first} (its record: {first}-{last}, the site table): is this {site}'s file? Its "
                      f"latitude and vegetation are {site}'s", UserWarning, stacklevel=3)


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
        Keep days whose QC fraction (measured or good-quality gap-filled half-hours) >= this; 0
        keeps every value, also where its QC is missing or the file has no QC column.
    sigma_floor : float, optional
        Smallest sigma, in the file's units (default: nee 0.2, gpp/reco 0.3 gC m-2 d-1, le 2 W m-2).
    relative_sigma : float, default 0.15
        Sigma of gpp/reco as a fraction of |value|.
    units : str, optional
        Convert to these units (default the file's).
    """
    path = data_path(path)
    where = _where(path, key)
    if variable not in _PRODUCTS:
        raise ReaderError(f"{where}: unknown FLUXNET variable {variable!r}; known: {sorted(_PRODUCTS)}")
    col, qc_col, sig_col, file_units = _PRODUCTS[variable]
    if "{p}" in col:
        if partitioning not in ("NT", "DT"):
            raise ReaderError(f"{where}: {variable} needs partitioning 'NT' or 'DT', got {partitioning!r}")
        col = col.format(p=partitioning)
    if not 0.0 <= qc_min <= 1.0:
        raise ReaderError(f"{where}: qc_min must be in [0, 1], got {qc_min}")
    if not (isinstance(relative_sigma, int | float) and relative_sigma > 0):
        raise ReaderError(f"{where}: relative_sigma must be > 0, got {relative_sigma!r}")
    floor = _FLOORS[variable] if sigma_floor is None else float(sigma_floor)
    if not floor > 0:
        raise ReaderError(f"{where}: sigma_floor must be > 0, got {floor}")
    # qc_min = 0: every value the file gives, also where its quality flag is missing (-9999) or the
    # file has no quality column at all
    df = read_fluxnet(path, [c for c in (col, qc_col if qc_min > 0 else None, sig_col) if c], key)
    value = df[col].to_numpy(float)
    keep = np.isfinite(value) & ((qc_min <= 0.0) or (df[qc_col].to_numpy(float) >= qc_min))
    if not keep.any():
        raise ReaderError(f"{where}: every value of {col} is missing after QC ({qc_col} >= {qc_min})")
    if sig_col is not None:
        sigma = df[sig_col].to_numpy(float)
        neg = keep & (sigma < 0)
        if neg.any():
            raise ReaderError(f"{where}: {sig_col} (the 1-sigma of {col}) is negative on {int(neg.sum())} "
                              f"kept day(s), the first {df.index[neg][0]:%Y-%m-%d} ({sigma[neg][0]}); "
                              "sigma must be > 0")
        known = np.isfinite(sigma) & keep
        if not known.any():
            warnings.warn(f"{where}: {sig_col} (the 1-sigma of {col}) is missing on every kept day, so every "
                          f"day's sigma is sigma_floor = {floor} {file_units}: give sigma_floor the "
                          "uncertainty you trust for this file", UserWarning, stacklevel=2)
        sigma = np.where(np.isfinite(sigma), sigma, np.median(sigma[known]) if known.any() else floor)
    else:
        sigma = relative_sigma * np.abs(value)
    sigma = np.maximum(sigma, floor)
    value, sigma = np.where(keep, value, np.nan), np.where(keep, sigma, np.nan)
    out_units = units or file_units
    try:
        value = convert(value, file_units, out_units, variable)
        sigma = convert(sigma, file_units, out_units, variable)
    except UnitError as err:
        raise ReaderError(f"{where}: {err}") from None
    site = _site(path)
    suffix = f"-{partitioning}" if "{p}" in _PRODUCTS[variable][0] else ""
    label = name or f"{site}-{variable.upper()}{suffix}"
    attrs = {"units": out_units, "source": str(path), "column": col, "qc": f"{qc_col} >= {qc_min}",
             **({"file_units": file_units} if out_units != file_units else {})}
    data = xr.DataArray(value, dims="time", coords={"time": df.index.values}, attrs=attrs, name=variable)
    sig = xr.DataArray(sigma, dims="time", coords={"time": df.index.values}, attrs={"units": out_units})
    return Product(label, variable, data, sig, attrs={"site": site, "sigma_floor": floor})
