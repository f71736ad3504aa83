"""The values of a gridded product as its file gives them: the file opened, its units, fill codes
and sigma checked (for :func:`bayescal.readers.gridded.read_netcdf_product`); every problem a
:class:`~bayescal.readers.fluxnet.ReaderError` starting with where it is."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from .fluxnet import ReaderError, fill_code_in
from .units import UnitError, calendar_factor, conversion_factor, parse_units

__all__ = ["calendar_months", "check_options", "check_sigma", "data_units", "from_cesm", "masked",
           "open_product", "per_month_factor", "refuse_coarser_than_months", "refuse_fill_codes",
           "sigma_factor_of", "warn_if_stamped_at_month_ends"]


def check_options(where: str, path: Path, *, sigma_floor: float | None, relative_sigma: float | None,
                  footprint_deg: float | None, sigma_variable: str | None) -> None:
    """The file exists, the positive options are, and exactly one of sigma_variable and
    relative_sigma is given."""
    if not path.is_file():
        raise ReaderError(f"{where}: file not found")
    for option, value in (("sigma_floor", sigma_floor), ("relative_sigma", relative_sigma),
                          ("footprint_deg", footprint_deg)):
        if value is not None and not value > 0:
            raise ReaderError(f"{where}: {option} must be > 0, got {value!r}")
    if relative_sigma is not None and sigma_variable is not None:
        raise ReaderError(f"{where}: give only one of sigma_variable, relative_sigma")
    if relative_sigma is None and sigma_variable is None:
        raise ReaderError(f"{where}: give one of sigma_variable, relative_sigma")


def open_product(path: Path, where: str) -> xr.Dataset:
    """The file, lazily (a non-standard CF calendar, noleap or 360_day, decodes to cftime); both a
    ``_FillValue`` and a ``missing_value`` are missing values, as CF says, without xarray's warning.
    Time counted in ``months since`` a date (TRENDY and CMIP files, in any calendar; CF allows it
    in 360_day only) is decoded as calendar months: 0.5 is the middle of the reference's month."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*multiple fill values.*")
            try:
                return xr.open_dataset(path, chunks=None)
            except ValueError as err:
                if not _MONTHS.match(_undecodable_units(str(err))):
                    raise
                ds = xr.open_dataset(path, chunks=None, decode_times=False)
                try:
                    for name, var in _months_decoded(ds, where).items():
                        ds[name] = var
                    return xr.decode_cf(ds)
                except BaseException:
                    ds.close()
                    raise
    except ReaderError:  # said by the months' decoding, with where
        raise
    except (OSError, ValueError, TypeError) as err:
        why = str(err).splitlines()[0]
        if "did not find a match" in why:  # xarray's list of engines and links: not for this reader
            why = "neither netCDF-4 (HDF5) nor netCDF-3 classic"
        if "unable to decode time units" in why:  # xarray's hint (decode_times=False) is not the user's
            raise ReaderError(f"{where}: its time units {_undecodable_units(why)!r} cannot be decoded for "
                              "its calendar (CF counts years only in the 360_day calendar); write time as "
                              "'days since ...' (cftime's date2num gives them for any calendar)") from None
        raise ReaderError(f"{where}: not a readable netCDF file ({why})") from None


#: time counted in calendar months (CF: only in 360_day; TRENDY and CMIP files use it in any)
_MONTHS = re.compile(r"^\s*months?\s+since\s+(\S.*)$", re.IGNORECASE)


def _undecodable_units(message: str) -> str:
    """The units in xarray's 'unable to decode time units ...' message ('' if it is another)."""
    if "unable to decode time units" not in message:
        return ""
    return message.split("units", 1)[1].split("with", 1)[0].strip(" '\"")


def _months_decoded(ds: xr.Dataset, where: str) -> dict[str, xr.Variable]:
    """Each variable of ``ds`` counted in months since a date, as cftime dates in its calendar
    (month ``floor(v)`` after the reference's, ``v``'s fraction of the way through it)."""
    import cftime

    out = {}
    inherited = {var.attrs["bounds"]: var.attrs for var in ds.variables.values()  # CF: bounds have their
                 if "bounds" in var.attrs and var.attrs["bounds"] in ds.variables}  # time's units
    for name, var in ds.variables.items():
        attrs = var.attrs if "units" in var.attrs else inherited.get(name, {})
        match = _MONTHS.match(str(attrs.get("units", "")))
        if match is None or var.dtype.kind not in "iuf":
            continue
        calendar = str(attrs.get("calendar", "standard"))
        try:
            ref = cftime.num2date(0, f"days since {match.group(1)}", calendar=calendar)
        except (ValueError, TypeError) as err:
            raise ReaderError(f"{where}: time variable {name!r} has units {attrs['units']!r} in the "
                              f"{calendar!r} calendar, which cftime cannot read ({err})") from None
        v = np.asarray(var.values, dtype=float)
        if not np.isfinite(v).all():
            raise ReaderError(f"{where}: time variable {name!r} ({attrs['units']!r}) has "
                              f"{int((~np.isfinite(v)).sum())} missing values: every time step needs its "
                              "time")
        whole = np.floor(v + 1e-9)
        month = ref.year * 12 + ref.month - 1 + np.nan_to_num(whole).astype(np.int64)
        first = [cftime.datetime(m // 12, m % 12 + 1, 1, calendar=calendar) for m in month.ravel()]
        after = [cftime.datetime((m + 1) // 12, (m + 1) % 12 + 1, 1, calendar=calendar)
                 for m in month.ravel()]
        dates = [a + (b - a) * f for a, b, f in zip(first, after, (v - whole).ravel(), strict=True)]
        attrs = {k: x for k, x in var.attrs.items() if k not in ("units", "calendar")}
        out[name] = xr.Variable(var.dims, np.array(dates, dtype=object).reshape(v.shape), attrs)
    return out


def masked(da: xr.DataArray, fill_value: float | None) -> xr.DataArray:
    """``da`` with the product's ``fill_value`` (a code the file does not declare) missing (lazy)."""
    return da if fill_value is None else da.where(da != fill_value)


def data_units(da: xr.DataArray, file_units: str | None, units: str, variable: str,
                what: str) -> tuple[str, float]:
    """The file variable's units (the ``units`` key, else its attribute) and the factor to the
    model's; a key replacing a readable attribute that says otherwise is a warning naming both."""
    attr = str(da.attrs.get("units", "")).strip()
    have = file_units or attr
    if not have:
        raise ReaderError(f"{what} has no 'units' attribute (CF): give its units in the product's "
                          "'units' key")
    try:
        factor = conversion_factor(have, units, variable)
    except UnitError as err:
        hint = "" if file_units else (f"; if its units attribute {attr!r} is wrong or not a unit, give the "
                                      f"file's units in the product's 'units' key (the model's: {units!r})")
        raise ReaderError(f"{what}: {err}{hint}") from None
    if file_units and attr:
        try:
            parse_units(attr)
        except UnitError:  # an attribute pint cannot read: the key is there to replace it
            return have, factor
        try:
            same = abs(conversion_factor(attr, file_units, variable) - 1.0) < 1e-9
        except UnitError:
            same = False
        if not same:
            warnings.warn(f"{what}: its units attribute says {attr!r}; the product's 'units' key "
                          f"{file_units!r} replaces it (remove the key if the attribute is right)",
                          UserWarning, stacklevel=3)
    return have, factor


def refuse_fill_codes(values: np.ndarray, what: str, counted: str = "of the model's cell-months") -> None:
    """A common missing-value code on three or more cell-months (:func:`~.fluxnet.fill_code_in`)
    that the file does not declare: an error asking for ``fill_value``; ``counted``: what the
    count is of."""
    found = fill_code_in(values)
    if found is not None:
        v, n = found
        raise ReaderError(f"{what} holds {v:g} on {n} {counted}, and its _FillValue / "
                          "missing_value attributes do not say it is missing: give the product "
                          f"fill_value = {v:g} (or set the attribute in the file)")


def check_sigma(data: xr.DataArray, sigma: xr.DataArray, what: str) -> None:
    """A ReaderError starting with ``what`` unless sigma > 0 wherever there are data, saying which
    way it is not: negative (a sign or a fill value), missing, or zero."""
    has, s = np.isfinite(data.values), np.asarray(sigma.values, dtype=float)
    kinds = (("negative", has & (s < 0), "a sign, or an undeclared fill value? (fill_value)"),
             ("missing", has & np.isnan(s), "give the product a 'sigma_floor' (in the file's units) to "
                                            "fill it"),
             ("zero", has & (s == 0), "zero values with relative_sigma, or too small for the file's type? "
                                      "give the product a 'sigma_floor' (in the file's units)"))
    for name, bad, hint in kinds:
        if bad.any():
            first = data["time"].values[np.flatnonzero(bad.any(axis=0))[0]]
            raise ReaderError(f"{what} is {name} on {int(bad.sum())} of the {int(has.sum())} cell-months "
                              f"with data (the first in {str(first)[:7]}): {hint}")


def sigma_factor_of(sigma_units: str, units: str, variable: str, data_factor: float, what: str) -> float:
    """The factor taking the sigma variable to the model's ``units``: the data's without units of
    its own (an empty attribute); a ReaderError starting with ``what`` if they do not convert."""
    if not sigma_units:
        return data_factor
    try:
        return conversion_factor(sigma_units, units, variable)
    except UnitError as err:
        hint = " (a relative error: give relative_sigma)" if "(dimensionless)" in str(err) else ""
        raise ReaderError(f"{what}: {err}{hint}") from None


def refuse_coarser_than_months(bounds: np.ndarray | None, keys: np.ndarray, name, where: str) -> None:
    """A ReaderError for a product of seasons or years: its steps' bounds span more than 45 days
    (median), or without bounds its steps are two or more months apart. Such a value
    stands for the mean of its period, and read by its month it would be compared with one month.
    Without bounds: no two steps a month apart, and two or more steps (or one of a year)."""
    if bounds is not None and len(bounds):
        try:
            span = np.array([(b - a) / np.timedelta64(1, "D") if isinstance(b, np.datetime64)
                             else (b - a).total_seconds() / 86400 for a, b in bounds[:, :2]], dtype=float)
        except (TypeError, AttributeError):  # bounds that are not dates are named by _month_keys's caller
            return
        if np.median(span) > 45:
            raise ReaderError(f"{where}: the time steps of {name!r} span {np.median(span):.0f} days each "
                              "(its time bounds): a product of seasons or years (or a climatology); the "
                              "global route compares months, so give monthly (or finer) values")
        return
    steps = np.diff(np.unique(keys))  # months apart: never one apart (gaps aside), two or more steps,
    if steps.size and steps.min() >= 2 and (steps.size >= 2 or steps[0] >= 12):  # or a year apart
        raise ReaderError(f"{where}: the time steps of {name!r} are {np.median(steps):g} months apart: a "
                          "product of seasons or years? The global route compares months, so give monthly "
                          "(or finer) values; if each value is one month's mean, give the time its bounds "
                          "(time_bnds of one month each) to say so")


def from_cesm(attrs: dict) -> bool:
    """The file's global attributes say CESM or CLM wrote it (``case_id``, or a source or title
    naming it)."""
    said = " ".join(str(attrs.get(k, "")) for k in ("source", "title", "model", "source_id"))
    return "case_id" in attrs or re.search(r"\b(?:CESM|CLM)\d*\b|Community Land Model", said) is not None


def warn_if_stamped_at_month_ends(t: xr.DataArray, keys: np.ndarray, what: str, cesm: bool) -> None:
    """A warning for monthly stamps on the 1st at midnight without time bounds, February to
    January or in a file CESM/CLM wrote (whatever months it holds): CESM/CLM history files stamp
    each month at its end, and read by their stamps every value would be a month late (with
    bounds the middle of each month is taken)."""
    if keys.size < 2 or np.any(np.diff(keys) != 1):
        return
    on_firsts = bool((t.dt.day == 1).all() and (t.dt.hour == 0).all())
    if not on_firsts or not (cesm or (keys.size >= 12 and t.dt.month.values[0] == 2
                                      and t.dt.month.values[-1] == 1)):
        return
    warnings.warn(f"{what}: its monthly time stamps fall on the 1st, from {str(t.values[0])[:7]} to "
                  f"{str(t.values[-1])[:7]}, without time bounds, and are read as the months they name. A "
                  "CESM/CLM history file stamps each month at its end (January on 1 February): if this is "
                  "one, every value is read a month late -- give the file its time bounds (time_bnds)",
                  UserWarning, stacklevel=4)


def calendar_months(times: xr.DataArray, keys: np.ndarray, months) -> dict[str, object]:
    """What puts a monthly product's calendar months' totals in units per month on pint's nominal
    month (:func:`~.units.calendar_factor`): each of the model's ``months``' days in the file's
    calendar (a ``360_day`` February has 30, a ``noleap`` one 28) -- ``{"days": ...}``, or
    ``{}`` when the file's steps are finer than months (``keys``, year * 12 + month of each
    step, repeat: a rate per month of a day is pint's month). :func:`per_month_factor` applies it."""
    import cftime

    if np.unique(keys).size < keys.size:
        return {}
    first = times.values.ravel()[0] if times.size else None
    calendar = getattr(first, "calendar", None) or "standard"
    ym = np.asarray(months.year) * 12 + np.asarray(months.month) - 1
    days = [(cftime.datetime((k + 1) // 12, (k + 1) % 12 + 1, 1, calendar=calendar)
             - cftime.datetime(k // 12, k % 12 + 1, 1, calendar=calendar)).days for k in ym]
    return {"days": np.asarray(days, dtype=float), "time": np.asarray(months)}


def per_month_factor(units: str, months: dict[str, object]) -> xr.DataArray | float:
    """The factor on ``time`` for values in ``units`` (:func:`calendar_months`); 1.0 for units not
    per month, or steps finer than months."""
    if not months:
        return 1.0
    return xr.DataArray(calendar_factor(units, months["days"]), dims="time", coords={"time": months["time"]})
