"""Plain CSV time series: ``time,value[,sigma]`` for any variable the files of FLUXNET do not cover."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..observations.products import Product
from .csv_files import read_csv_file
from .fluxnet import (
    FILL_VALUES,
    ReaderError,
    _daily_index,
    _missing_to_nan,
    _where,
    data_path,
    fill_code_in,
)
from .units import UnitError, calendar_factor, convert, per_period

__all__ = ["PERIODS", "PERIOD_FREQUENCY", "read_csv_product"]

#: what one value of a CSV product stands for: its day's mean (the default), or its week's, month's
#: or year's (the period holding its date); :class:`~bayescal.operators.timeseries.SeriesOperator`
#: compares it with the model's mean over that period
PERIODS = ("day", "week", "month", "year")
#: each period's pandas frequency (``DatetimeIndex.to_period``)
PERIOD_FREQUENCY = {"day": "D", "week": "W", "month": "M", "year": "Y"}


def _days(column: pd.Series, where: str, name: str = "time") -> pd.DatetimeIndex:
    """The day of each row: ISO dates (``2010-01-31``), ISO times (``2010-01-31T12:00``, a daily
    value stamped within its day) or ``YYYYMMDD`` integers (FLUXNET's TIMESTAMP)."""
    text = column.astype(str).str.strip()
    compact = text.str.fullmatch(r"\d{8}(\.0)?")
    try:
        if compact.all():
            time = pd.to_datetime(text.str.slice(0, 8), format="%Y%m%d")
        else:
            time = pd.to_datetime(text.where(~text.isin(["", "nan", "NaT"]), None), format="ISO8601")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        bad = text[parsed.isna() & ~text.isin(["", "nan", "NaT"])]
        first = repr(bad.iloc[0]) if len(bad) else "?"
        raise ReaderError(f"{where}: column {name} must hold ISO dates (YYYY-MM-DD) or YYYYMMDD; line "
                          f"{bad.index[0] + 2 if len(bad) else '?'} has {first}") from None
    time = pd.DatetimeIndex(time, name="time")
    if time.isna().any():
        row = int(np.flatnonzero(time.isna())[0])
        raise ReaderError(f"{where}: column {name} has an empty or unreadable cell (line {row + 2})")
    return time.normalize()  # a value stamped at noon is that day's: duplicates are then found by day


def _numbers(column: pd.Series, name: str, where: str) -> pd.Series:
    """A column as floats: empty cells, ``NaN`` and fill values are missing; other text is an error
    naming the file's line (a header, then one line per row)."""
    num = pd.to_numeric(column, errors="coerce")
    text = column.astype(str).str.strip().str.lower()
    bad = num.isna() & column.notna() & ~text.isin(["", "nan", "na", "n/a"] + [str(v) for v in FILL_VALUES])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReaderError(f"{where}: column {name} on line {i + 2} is not a number: {column.iloc[i]!r} "
                          f"({int(bad.sum())} such cell(s); a missing value is an empty cell or NaN)")
    return num


def _refuse_fill_codes(column: pd.Series, name: str, time: pd.DatetimeIndex, where: str) -> None:
    """A common missing-value code on three or more days (:func:`~.fluxnet.fill_code_in`): an
    error asking for ``fill_value``."""
    found = fill_code_in(column.to_numpy(float))
    if found is None:
        return
    v, n = found
    first = time[int(np.flatnonzero(column.to_numpy(float) == v)[0])]
    raise ReaderError(f"{where}: column {name} holds {v:g} on {n} days (the first {first:%Y-%m-%d}): a "
                      f"missing-value code? Give the product fill_value = {v:g} (those days are then "
                      "missing), or correct the file; if they are data, give a fill_value the file does "
                      "not use, such as -9999")


def read_csv_product(
    path: str | Path,
    variable: str,
    *,
    units: str,
    to_units: str | None = None,
    relative_sigma: float | None = None,
    sigma_floor: float = 0.0,
    sigma_units: str | None = None,
    fill_value: float | None = None,
    name: str | None = None,
    period: str | None = None,
    columns: dict[str, str] | None = None,
    key: str = "",
) -> Product:
    """A product from a CSV file with columns ``time`` (ISO dates, or ISO times within the day,
    or ``YYYYMMDD``), ``value`` and optionally ``sigma``.

    ``units`` are the file's (a CSV carries none); ``to_units`` converts (dimensionally checked,
    in ``variable``'s context: :mod:`bayescal.readers.units`). The ``sigma`` column is in
    ``units`` too, unless ``sigma_units`` says otherwise. Without a ``sigma`` column,
    ``relative_sigma`` (> 0) x |value| is the sigma. Empty cells, ``NaN`` and the FLUXNET fill
    values (``-9999``, ``-6999``) are missing values; any other text in ``value`` or ``sigma`` is an
    error naming its line. ``fill_value`` is the file's own missing-value code (such as ``-999``);
    without it, a common code (-999, 9999, -32768, ..., or |x| >= 1e15) on three days or more is
    an error that asks for it -- a fill value read as data would enter the likelihood. Duplicated
    days are an error naming the first; rows out of order are sorted. A negative or missing sigma
    on a day with a value is an error naming the day; every sigma must be > 0 after the floor
    (``sigma_floor``, in ``units``).

    ``period`` is what a value stands for: the mean of its ``"day"`` (None, the default), or of the
    ``"week"``, ``"month"`` or ``"year"`` holding its date (an annual GPP, a monthly product):
    one value per period, compared with the model's mean over all the period's days. A daily
    product whose values are a month or more apart is warned of (each value is compared with the
    model's value on its one day). ``columns`` names the file's columns where they are not
    ``time``, ``value`` and ``sigma`` (``{"time": "date", "value": "GPP", "sigma": "GPP_sd"}``).
    With ``period = "month"`` and ``units`` per month (``gC m-2
    month-1``), a value is its calendar month's total: divided by that month's days, not pint's
    30.44 (:func:`~bayescal.readers.units.calendar_factor`); likewise a year's in units per year.
    """
    path = data_path(path)
    where = _where(path, key)
    period = "day" if period is None else period  # None: not written into a config (its stage keys)
    if period not in PERIODS:
        raise ReaderError(f"{where}: period must be one of {list(PERIODS)}, got {period!r}")
    df, shown = _named_columns(read_csv_file(path, where, "a CSV file"), columns, where)
    missing = [c for c in ("time", "value") if c not in df]
    if missing:
        raise ReaderError(f"{where}: missing columns {missing} (need time, value[, sigma]; the file has "
                          f"{[str(c) for c in df.columns][:10]}: name them with the product's columns key, "
                          "such as columns = {time = \"date\", value = \"GPP\", sigma = \"GPP_sd\"})")
    other = [str(c) for c in df.columns if re.search(r"sd|std|unc|err|sig", str(c), re.IGNORECASE)
             and c not in ("time", "value", "sigma")]  # columns that may be an uncertainty
    unread = f"; its column(s) {other[:5]} are not read: give columns = {{sigma = \"{other[0]}\"}}" \
        if other and "sigma" not in df else ""
    if unread and relative_sigma is not None:
        import warnings

        warnings.warn(f"{where}: no sigma column, so relative_sigma gives sigma{unread}", UserWarning,
                      stacklevel=2)
    if relative_sigma is not None and not (isinstance(relative_sigma, int | float) and relative_sigma > 0):
        raise ReaderError(f"{where}: relative_sigma must be > 0, got {relative_sigma!r}")
    if not sigma_floor >= 0:
        raise ReaderError(f"{where}: sigma_floor must be >= 0, got {sigma_floor!r}")
    time = _days(df.pop("time"), where, shown["time"])
    for c in ("value", "sigma"):
        if c in df:
            df[c] = _numbers(df[c], shown[c], where)
            if fill_value is None:
                _refuse_fill_codes(df[c], shown[c], time, where)
            else:
                df[c] = df[c].mask(df[c] == fill_value)
    df = _daily_index(time, where, _missing_to_nan(df))
    time = df.index
    value = df["value"].to_numpy(float)
    if not np.isfinite(value).any():
        raise ReaderError(f"{where}: every value is missing")
    ok = np.isfinite(value)
    if "sigma" not in df and relative_sigma is None:
        raise ReaderError(f"{where}: no sigma column; give relative_sigma{unread}")
    if "sigma" in df and relative_sigma is not None:  # it would do nothing
        raise ReaderError(f"{where}: the file has a sigma column and relative_sigma is given: give only "
                          "one (leave relative_sigma out to use the column)")
    sigma = _file_sigma(df["sigma"].to_numpy(float), ok, time, where, units, sigma_units, variable,
                        shown["sigma"], period) if "sigma" in df else relative_sigma * np.abs(value)
    sigma = np.maximum(sigma, sigma_floor)
    if not (sigma[ok] > 0).all():
        bad = int(np.flatnonzero(ok & ~(sigma > 0))[0])
        hint = ("; relative_sigma x |value| is 0 where a value is 0: give sigma_floor too (a smallest sigma, "
                f"in {units})") if "sigma" not in df and value[bad] == 0 else ""
        raise ReaderError(f"{where}: sigma must be > 0 (after sigma_floor {sigma_floor}); {time[bad].date()} "
                          f"has {sigma[bad]}{hint}")
    f, out_units = _calendar_totals(units, period, time), to_units or units
    try:
        value, sigma = (convert(x * f, units, out_units, variable) for x in (value, sigma))
    except UnitError as err:
        raise ReaderError(f"{where}: {err}") from None
    coords = {"time": time.values}
    data = xr.DataArray(np.where(ok, value, np.nan), dims="time", coords=coords,
                        attrs={"units": out_units, "source": str(path)}, name=variable)
    sig = xr.DataArray(np.where(ok, sigma, np.nan), dims="time", coords=coords, attrs={"units": out_units})
    _check_period(time[ok], period, where)
    return Product(name or path.stem, variable, data, sig, attrs={"period": period})


def _calendar_totals(units: str, period: str, time: pd.DatetimeIndex) -> np.ndarray:
    """Per value: a calendar month's (year's) total in units per month (year) on pint's month
    (:func:`~.units.calendar_factor`); ones for any other product."""
    if period not in ("month", "year") or per_period(units) != period:
        return np.ones(time.size)
    days = time.days_in_month if period == "month" else np.where(time.is_leap_year, 366, 365)
    return calendar_factor(units, days)


def _named_columns(df: pd.DataFrame, columns: dict[str, str] | None,
                   where: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The file's columns renamed to ``time``, ``value``, ``sigma`` as ``columns`` says, and each
    role's name in the file (for messages); an unknown role, or a column the file lacks, is an
    error naming it and what there is."""
    shown = {r: (columns or {}).get(r, r) for r in ("time", "value", "sigma")}
    if not columns:
        return df, shown
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise ReaderError(f"{where}: columns must be a table of column names, such as "
                          "{time = \"date\", value = \"GPP\"}, got " + repr(columns))
    wrong = sorted(set(columns) - {"time", "value", "sigma"})
    if wrong:
        raise ReaderError(f"{where}: columns: {wrong[0]!r} is not one of 'time', 'value', 'sigma'")
    for role, name in columns.items():
        if name not in df:
            raise ReaderError(f"{where}: columns.{role} = {name!r}: the file has no such column (it has "
                              f"{[str(c) for c in df.columns][:10]})")
    taken = {name: role for role, name in columns.items()}
    replaced = [role for role in columns if role in df and role not in taken]  # a file's own "value", say
    return df.drop(columns=replaced).rename(columns=taken), shown


def _file_sigma(sigma: np.ndarray, ok: np.ndarray, time: pd.DatetimeIndex, where: str, units: str,
                sigma_units: str | None, variable: str, name: str = "sigma", span: str = "day") -> np.ndarray:
    """The ``sigma`` column (the file's ``name``) in ``units``: an error naming the first observed
    day (``span``: week, month, year) where it is negative or missing."""
    neg = ok & (sigma < 0)
    if neg.any():
        bad = int(np.flatnonzero(neg)[0])
        raise ReaderError(f"{where}: column {name} is negative on {int(neg.sum())} {span}(s), the first "
                          f"{time[bad]:%Y-%m-%d} ({sigma[bad]}); sigma must be > 0")
    gone = ok & np.isnan(sigma)
    if gone.any():
        bad = int(np.flatnonzero(gone)[0])
        empty = "; the column is empty: leave it out of the file and give relative_sigma instead" \
            if gone.sum() == ok.sum() else ""
        raise ReaderError(f"{where}: column {name} is missing on {int(gone.sum())} {span}(s) with a value, "
                          f"the first {time[bad]:%Y-%m-%d}; give every observed {span} its sigma{empty}")
    if not sigma_units:
        return sigma
    try:
        return convert(sigma, sigma_units, units, variable)
    except UnitError as err:
        raise ReaderError(f"{where}: sigma_units: {err}") from None


def _check_period(time: pd.DatetimeIndex, period: str, where: str) -> None:
    """One value per period; a daily product's values a month or more apart are warned of."""
    import warnings

    if period != "day":
        periods = time.to_period(PERIOD_FREQUENCY[period])
        twice = periods.duplicated()
        if twice.any():
            raise ReaderError(f"{where}: {int(twice.sum())} value(s) share a {period} with another (the "
                              f"first in {periods[twice][0]}); with period = {period!r} give one value per "
                              f"{period}, the mean over it")
        return
    gap = np.median(np.diff(time.values).astype("timedelta64[D]").astype(int)) if time.size > 2 else 0
    if gap >= 28:
        warnings.warn(f"{where}: its values are {gap:.0f} days apart (median), and each is compared with "
                      "the model's value on its one day (period = 'day'); if each is a mean over its "
                      "month or year, give the product period = 'month' or 'year'", UserWarning,
                      stacklevel=3)
