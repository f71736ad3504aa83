"""Is a site's daily weather plausible, in the units FLUXNET writes, at the latitude it is run at?

A site model's drivers in the wrong units or from the other hemisphere do not fail: the model runs
on them and the calibration blames the observations ("the observed values are 194 times the
model's: are the file's units right?"). :func:`check_site_drivers` refuses them first, naming the
column, the day and what the file's values look like:

- ``TA_F`` in [-70, 60] degC (kelvin is named), ``CO2_F_MDS`` in [100, 2000] ppm;
- ``SW_IN_F``, a daily mean in W m-2, set against the daily mean sunlight at the top of the
  atmosphere at the latitude (:func:`toa_daily_mean`): on no day above it (by more than
  50 W m-2), over the record not below 15 % of it (sites receive about 35-75 %; daily totals in
  MJ m-2 d-1 are 11.6 times smaller than W m-2: 3-6 %);
- away from the tropics (|latitude| >= 20), the radiation's seasons those of the latitude's
  hemisphere (the monthly means correlated with the top-of-atmosphere sunlight, not against
  it): a site's latitude with its sign dropped, or a file of another site, or dates shifted by
  half a year.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .csv_files import ReaderError

__all__ = ["WeatherError", "check_site_drivers", "toa_daily_mean"]

_SOLAR_CONSTANT = 1361.0  # W m-2 (Kopp and Lean 2011)


class WeatherError(ReaderError):
    """Drivers refused by :func:`check_site_drivers` (a caller may offer to run on them anyway)."""


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def toa_daily_mean(lat: float, doy: np.ndarray) -> np.ndarray:
    """Daily mean shortwave radiation at the top of the atmosphere (W m-2) at latitude ``lat``
    (degrees north) on days of year ``doy`` (Cooper's declination; Earth-Sun distance factor)."""
    doy = np.asarray(doy, dtype=float)
    phi = np.deg2rad(lat)
    decl = np.deg2rad(23.44) * np.sin(2.0 * np.pi * (284.0 + doy) / 365.0)
    cos_ws = np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0)
    ws = np.arccos(cos_ws)  # sunset hour angle: 0 in polar night, pi in polar day
    dist = 1.0 + 0.033 * np.cos(2.0 * np.pi * doy / 365.0)
    cosines = ws * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(ws)
    q = _SOLAR_CONSTANT / np.pi * dist * cosines
    return np.maximum(q, 0.0)


def check_site_drivers(df: pd.DataFrame, lat: float, where: str, site: str, error: type[Exception],
                       given: bool) -> None:
    """Raise ``error`` (naming ``where``, the column and a day) for drivers a site model must not
    run on; ``df`` has FLUXNET's ``TA_F`` (degC), ``SW_IN_F`` (W m-2) and ``CO2_F_MDS`` (ppm) on a
    daily index; ``given``: the latitude is the config's (``model.latitude``), not the site table's."""
    _check_range(df, "TA_F", -70.0, 60.0, "degC", where, error)
    _check_range(df, "CO2_F_MDS", 100.0, 2000.0, "ppm", where, error)
    sw = df["SW_IN_F"].to_numpy(float)
    toa = toa_daily_mean(lat, df.index.day_of_year.to_numpy())
    _check_hemisphere(df.index.month.to_numpy(), sw, toa, lat, where, site, error, given)
    low = sw < -5.0
    if low.any():
        i = int(np.flatnonzero(low)[0])
        raise error(f"{where}: SW_IN_F = {sw[i]:g} W m-2 on {df.index[i]:%Y-%m-%d}: a daily mean of incoming "
                    f"sunlight is not negative ({int(low.sum())} such day(s)); units or fill values?")
    high = sw > toa + 50.0
    if high.any():
        i = int(np.flatnonzero(high)[0])
        raise error(f"{where}: SW_IN_F = {sw[i]:g} W m-2 on {df.index[i]:%Y-%m-%d} is more than the sunlight "
                    f"at the top of the atmosphere at latitude {lat:g} that day ({toa[i]:.0f} W m-2), on "
                    f"{int(high.sum())} day(s): FLUXNET's SW_IN_F is a daily mean in W m-2 -- are these "
                    "values in other units or scaled?")
    ratio = float(np.nanmean(sw) / max(float(np.mean(toa)), 1e-9))
    if ratio < 0.15 and np.mean(toa) > 20.0:  # not judged on a polar night alone
        raise error(f"{where}: SW_IN_F averages {np.nanmean(sw):.3g} W m-2, {100 * ratio:.0f} % of the "
                    f"sunlight at the top of the atmosphere at latitude {lat:g} ({np.mean(toa):.0f} W m-2), "
                    "where sites receive about 35-75 %: FLUXNET's SW_IN_F is a daily mean in W m-2 (daily "
                    "totals in MJ m-2 d-1 are 11.6 times smaller: multiply them by 11.574)")


def _check_range(df: pd.DataFrame, col: str, lo: float, hi: float, units: str, where: str,
                 error: type[Exception]) -> None:
    x = df[col].to_numpy(float)
    out = (x < lo) | (x > hi)
    if not out.any():
        return
    i = int(np.flatnonzero(out)[0])
    hint = "units or fill values?"
    if col == "TA_F" and np.nanmedian(x) > 200.0:
        hint = f"kelvin? (median {np.nanmedian(x):.1f}; FLUXNET's TA_F is in degC: subtract 273.15)"
    raise error(f"{where}: {col} = {x[i]:g} {units} on {df.index[i]:%Y-%m-%d} is outside [{lo:g}, {hi:g}] "
                f"{units} ({int(out.sum())} such day(s)); {hint}")


def _check_hemisphere(month: np.ndarray, sw: np.ndarray, toa: np.ndarray, lat: float, where: str, site: str,
                      error: type[Exception], given: bool) -> None:
    """The radiation's seasons against the latitude's (``toa``: its top-of-atmosphere sunlight on the
    same days), away from the tropics (12 monthly means)."""
    if abs(lat) < 20.0:
        return
    have = np.array([np.isfinite(sw[month == m]).any() for m in range(1, 13)])
    if not have.all():
        return  # less than a year of months: too little to judge the seasons by
    sw_m = np.array([np.nanmean(sw[month == m]) for m in range(1, 13)])
    toa_m = np.array([toa[month == m].mean() for m in range(1, 13)])
    if np.std(sw_m) <= 0.0 or np.corrcoef(sw_m, toa_m)[0, 1] > -0.5:
        return
    peak = _MONTHS[int(np.argmax(sw_m))]
    side, other = ("north", "southern") if lat > 0 else ("south", "northern")
    if given:
        fix = (f"'model.latitude' = {lat:g} is {side} of the equator: a {other} site's latitude is "
               f"{'negative' if other == 'southern' else 'positive'}")
    else:
        fix = (f"site {site} is at {lat:.2f} in the FLUXNET2015 site table: is this {site}'s file (its "
               "dates shifted by half a year?), or give the site's latitude (model.latitude)")
    raise error(f"{where}: SW_IN_F peaks in {peak}, the summer of the {other} hemisphere; {fix}")
