"""Plain CSV time series: ``time,value[,sigma]`` for any variable the files of FLUXNET do not cover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..observations import Product
from .fluxnet import ReaderError
from .units import UnitError, convert

__all__ = ["read_csv_product"]


def read_csv_product(
    path: str | Path,
    variable: str,
    *,
    units: str,
    to_units: str | None = None,
    relative_sigma: float | None = None,
    sigma_floor: float = 0.0,
    name: str | None = None,
    key: str = "",
) -> Product:
    """A product from a CSV file with columns ``time`` (ISO dates), ``value`` and optionally ``sigma``.

    ``units`` are the file's (a CSV carries none); ``to_units`` converts. Without a ``sigma``
    column, ``relative_sigma`` x |value| is the sigma. Empty cells are missing values. Every
    sigma must be > 0 after the floor.
    """
    path = Path(path)
    where = f"{key + ': ' if key else ''}{path}"
    if not path.is_file():
        raise ReaderError(f"{where}: file not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ReaderError(f"{where}: not a CSV file ({err})") from None
    missing = [c for c in ("time", "value") if c not in df]
    if missing:
        raise ReaderError(f"{where}: missing columns {missing} (need time, value[, sigma])")
    try:
        time = pd.DatetimeIndex(pd.to_datetime(df["time"]), name="time")
    except (ValueError, TypeError) as err:
        raise ReaderError(f"{where}: column time is not dates ({err})") from None
    value = pd.to_numeric(df["value"], errors="coerce").to_numpy(float)
    if not np.isfinite(value).any():
        raise ReaderError(f"{where}: every value is missing")
    if "sigma" in df:
        sigma = pd.to_numeric(df["sigma"], errors="coerce").to_numpy(float)
    elif relative_sigma is not None:
        sigma = relative_sigma * np.abs(value)
    else:
        raise ReaderError(f"{where}: no sigma column; give relative_sigma")
    sigma = np.maximum(sigma, sigma_floor)
    ok = np.isfinite(value)
    if not (sigma[ok] > 0).all():
        bad = int(np.flatnonzero(ok & ~(sigma > 0))[0])
        raise ReaderError(f"{where}: sigma must be > 0; row {bad} ({time[bad].date()}) has {sigma[bad]}")
    try:
        out_units = to_units or units
        value, sigma = convert(value, units, out_units), convert(sigma, units, out_units)
    except UnitError as err:
        raise ReaderError(f"{where}: {err}") from None
    coords = {"time": time.values}
    data = xr.DataArray(np.where(ok, value, np.nan), dims="time", coords=coords,
                        attrs={"units": out_units, "source": str(path)}, name=variable)
    sig = xr.DataArray(np.where(ok, sigma, np.nan), dims="time", coords=coords, attrs={"units": out_units})
    return Product(name or path.stem, variable, data, sig)
