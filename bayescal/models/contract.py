"""The own-model contract: one normaliser every route applies to what a user's model returns.

A model is a callable ``model(theta (k, n_values)) -> output`` with a ``space`` attribute
(docs/own-model.md). Its output may be

* an :class:`xarray.Dataset` with a leading ``member`` dimension, or a mapping of arrays
  (``{"nee": (k, n_time) array, "time": dates, "status": ..., "reason": ...}``);
* series on ``(member, time)``, or on ``(member, cell, time)`` in any order (the gridded form;
  the site route takes ``cell`` of length one);
* failures as ``status`` ("done"/"failed") + ``reason`` per member, the older ``failed`` (bool) +
  ``failure`` (str), non-finite values, or an exception for some members (that member fails with
  the exception as its reason; the others run on).

:class:`ConformingModel` wraps a model so that every caller sees one shape: a Dataset on
``(member, time)`` with ``status`` and ``reason``, ``time`` as datetime64 days (cftime calendars
and times of day read by :func:`daily_time`), each output in the units of its first finished call.
Output that breaks the contract for every member (no ``time`` axis, a missing variable, the
wrong number of members, a dict array of the wrong shape) is a :class:`ModelOutputError` naming
the variable, raised by ``bayescal check`` before any calibration run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["DAY_CALENDARS", "NO_LEAP_CALENDARS", "ConformingModel", "ModelOutputError", "conform_output",
           "daily_time", "member_status"]

_STATUS = ("status", "reason", "failed", "failure")


class ModelOutputError(ValueError):
    """The model's output breaks the contract of docs/own-model.md for every member."""


#: coordinates a mapping may give: dates, years of the global series, and the cells' area, region
#: and position (products on a latitude-longitude grid are mapped to the cells by lat and lon)
_COORDS = {"time": "time", "year": "year", "cell": "cell", "area": "cell", "biome": "cell", "lat": "cell",
           "lon": "cell"}


def _from_mapping(out: Mapping, k: int) -> xr.Dataset:
    """A mapping of arrays -> Dataset: 1-D on member, 2-D (member, time), 3-D (member, cell, time),
    ``<variable>_global`` (member, year); ``time``, ``year``, ``cell``, ``area``, ``biome``, ``lat``
    and ``lon`` (on cell) are coordinates (the global route's cells need ``area`` and ``biome``; cells without
    ``cell`` are numbered 0, 1, ...)."""
    data: dict[str, Any] = {}
    for name, value in out.items():
        if name in _COORDS:
            continue
        a = np.asarray(value)
        if name in _STATUS:
            data[name] = ("member", np.broadcast_to(a, (k,)))
        elif name.endswith("_global") and a.ndim == 2 and "year" in out:
            data[name] = (("member", "year"), a)
        elif a.ndim in (1, 2, 3):
            _check_shape(name, a, k, out)
            data[name] = ({1: ("member",), 2: ("member", "time"), 3: ("member", "cell", "time")}[a.ndim], a)
        else:
            raise ModelOutputError(f"model output '{name}' has {a.ndim} dimensions; expected (member, time) "
                                   "or (member, cell, time)")
    ds = xr.Dataset(data)
    for name, dim in _COORDS.items():
        if name in out and dim in ds.dims:
            ds = ds.assign_coords({name: (dim, np.asarray(out[name]))})
    if "cell" in ds.dims and "cell" not in ds.coords:  # cells numbered in their order
        ds = ds.assign_coords(cell=np.arange(ds.sizes["cell"]))
    return ds


def _check_shape(name: str, a: np.ndarray, k: int, out: Mapping) -> None:
    """A dict entry on (member[, cell], time): ``k`` members first, as many values as ``time``
    has dates; else a ModelOutputError naming the entry and the shape expected."""
    n_time = np.shape(out["time"])[0] if "time" in out and np.ndim(out["time"]) == 1 else None
    if a.ndim == 1 and a.shape[0] != k:  # one value per member is (member,); a series is not
        series = f"a series of {a.shape[0]} values: give it as (member, time), a row per member" \
            + (" (values[None] for one member)" if a.shape[0] == n_time else "")
        raise ModelOutputError(f"model output '{name}' has shape {a.shape}; expected (member, time) = "
                               f"({k}, {n_time if n_time is not None else 'n_time'}): {series}")
    if a.ndim == 1 or (a.shape[0] == k and (n_time is None or a.shape[-1] == n_time)):
        return
    dims = "(member, time)" if a.ndim == 2 else "(member, cell, time)"
    want = (k, n_time if n_time is not None else "n_time") if a.ndim == 2 else (k, "n_cell", n_time)
    if a.shape[0] == k:
        why = f"it has {a.shape[-1]} values on time but 'time' has {n_time} dates"
    elif a.shape[-1] == k or a.shape[0] == n_time:
        why = "a (time, member) array: the members come first, transpose it"
    else:
        why = f"the model returned {a.shape[0]} members for {k} parameter vectors"
    raise ModelOutputError(f"model output '{name}' has shape {a.shape}; expected {dims} = "
                           f"{tuple(want)}: {why}")


def member_status(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The one failure encoding: ``status`` ("done"/"failed") and ``reason`` per member.

    Reads a simulator's ``status``/``reason`` variables on ``member`` (or the older spelling
    ``failed`` (bool) / ``failure`` (str)); members without either are done.
    """
    n = ds.sizes.get("member", 1)
    if "status" in ds:
        status = np.broadcast_to(ds["status"].values.astype(str), (n,)).copy()
        reason = (np.broadcast_to(ds["reason"].values.astype(str), (n,)).copy() if "reason" in ds
                  else np.full(n, "", dtype=object).astype(str))
    elif "failed" in ds:
        failed = np.broadcast_to(ds["failed"].values.astype(bool), (n,))
        status = np.where(failed, "failed", "done")
        reason = (np.broadcast_to(ds["failure"].values.astype(str), (n,)).copy() if "failure" in ds
                  else np.full(n, "", dtype=object).astype(str))
    else:
        return np.full(n, "done"), np.full(n, "", dtype=object).astype(str)
    bad = status != "done"
    reason = np.where(bad & (reason == ""), "model-reported failure", np.where(bad, reason, ""))
    return np.where(bad, "failed", "done"), reason


def _status(ds: xr.Dataset) -> xr.Dataset:
    """``status``/``reason`` from either spelling; the older names dropped."""
    if "status" in ds and "reason" in ds and "failed" not in ds and "failure" not in ds:
        st = ds["status"].values
        if ds["status"].dims == ("member",) and (st == "done").all():  # the common case: as it is
            return ds
    status, reason = member_status(ds)
    ds = ds.drop_vars([v for v in _STATUS if v in ds])
    return ds.assign(status=("member", np.asarray(status, dtype=str)),
                     reason=("member", np.asarray(reason, dtype=str)))


def conform_output(out: Any, k: int, variables: Sequence[str] | None = None, *,
                   series: bool | None = True) -> xr.Dataset:
    """One model output in the contract's shape.

    Parameters
    ----------
    out : xarray.Dataset or mapping of arrays
        What the model returned for ``k`` members.
    k : int
        The number of parameter vectors the model was given.
    variables : sequence of str, optional
        Variables the caller needs; a missing one is a :class:`ModelOutputError`.
    series : bool, default True
        Site series: each needed variable on ``(member, time)`` (a ``cell`` of length one is
        dropped). ``False`` keeps the dimensions as they are (the global route's cells: cftime
        months as datetime64 month starts). ``None``: as ``False``, and cftime dates of a daily
        model (spaced by days) as datetime64 days, a single cftime stamp as it is
        (:func:`run_ensemble`, whichever route calls it).

    Returns
    -------
    xarray.Dataset
        On ``member`` (length ``k``) with ``status`` and ``reason``.
    """
    if isinstance(out, Mapping) and not isinstance(out, xr.Dataset):
        out = _from_mapping(out, k)
    if not isinstance(out, xr.Dataset):
        raise ModelOutputError(f"the model returned {type(out).__name__}; expected an xarray.Dataset or "
                               "a dict of arrays with a leading member dimension (docs/own-model.md)")
    if out.sizes.get("member") != k:
        raise ModelOutputError(f"the model returned {out.sizes.get('member', 'no')} members (dimension "
                               f"'member') for {k} parameter vectors")
    ds = _status(out)
    if not (ds["status"].values == "done").any():  # every member failed: its reasons say why
        return ds[["status", "reason"]]
    for v in variables or ():
        if v not in ds:
            have = sorted(n for n in ds.data_vars if n not in ("status", "reason"))
            raise ModelOutputError(f"the model output has no variable '{v}' (it has {have})")
    if series:
        if "time" in ds.coords:
            ds = daily_time(ds)
        ds = _as_series(ds, variables or [n for n in ds.data_vars if n not in ("status", "reason")])
    else:
        ds = _cells_in_order(ds, series)
    return ds


def _cells_in_order(ds: xr.Dataset, series: bool | None) -> xr.Dataset:
    """The global route's output (``series`` False or None) on ``(member, cell, time, ...)`` in
    that order, whatever order the model gave (so a twin's noise, drawn in array order, is the
    same), its cftime months as datetime64 month starts (or a daily model's days), ISO date
    strings as the dates they name."""
    ds = ds.transpose("member", "cell", "time", ..., missing_dims="ignore")
    if "time" not in ds.coords or not ds["time"].size:
        return ds
    t = ds["time"].values
    if hasattr(t.flat[0], "calendar"):
        spacing = "month" if series is False else _spacing(t)
        if spacing == "month":
            ds = monthly_time(ds)
        elif spacing == "day":
            ds = daily_time(ds)
        # a single stamp (run_ensemble): as it is, cftime (month or day cannot be told)
    elif t.dtype.kind in "OU" and isinstance(t.flat[0], str):
        try:
            dates = np.asarray(t).astype("datetime64[ns]")
        except (TypeError, ValueError):
            raise ModelOutputError(f"the model output's 'time' holds text such as {str(t.flat[0])!r}, "
                                   "not dates; give datetime64 or cftime dates, or ISO dates "
                                   "('2001-01-15')") from None
        ds = ds.assign_coords(time=(ds["time"].dims, dates, ds["time"].attrs))
    return ds


def _spacing(t: np.ndarray) -> str | None:
    """``"day"`` for cftime stamps two of which share a month or that are less than 28 days
    apart (median, in time order), ``"month"`` for others, None for a single stamp; stamps of two
    calendars are a :class:`ModelOutputError`."""
    if t.ndim != 1:
        raise ModelOutputError(f"the model output's 'time' has {t.ndim} dimensions; it must be one axis")
    if t.size < 2:
        return None
    calendars = {str(d.calendar) for d in t}
    if len(calendars) > 1:
        raise ModelOutputError(f"the model output's 'time' mixes the calendars {sorted(calendars)}")
    months = {(d.year, d.month) for d in t}
    ordered = sorted(t)
    gaps = [(b - a).days for a, b in zip(ordered[:-1], ordered[1:], strict=True)]
    return "day" if len(months) < t.size or np.median(gaps) < 28 else "month"


def monthly_time(ds: xr.Dataset) -> xr.Dataset:
    """The global route's monthly ``time`` in cftime dates (any calendar: ``noleap``, ``360_day``
    ...) as datetime64 month starts, the embedded model's stamps (the calendar kept as the
    ``model_calendar`` attribute); two stamps in one month are a :class:`ModelOutputError`."""
    t = ds["time"].values
    ym = np.array([(d.year, d.month) for d in t], dtype=np.int64).reshape(-1, 2)
    if ym.size and not (1678 <= ym[:, 0].min() and ym[:, 0].max() <= 2261):
        raise ModelOutputError(f"the model output's 'time' runs from year {ym[:, 0].min()} to "
                               f"{ym[:, 0].max()}; write the real years (1678-2261)")
    months = ((ym[:, 0] - 1970) * 12 + ym[:, 1] - 1).astype("datetime64[M]")
    uniq, counts = np.unique(months, return_counts=True)
    if (counts > 1).any():
        raise ModelOutputError(f"the model output's 'time' has {counts[counts > 1][0]} stamps in "
                               f"{uniq[counts > 1][0]}: the global route takes one value per month")
    attrs = {**ds["time"].attrs, "model_calendar": str(t.flat[0].calendar)}
    return ds.assign_coords(time=("time", months.astype("datetime64[ns]"), attrs))


#: calendars whose dates are days of the (proleptic) Gregorian calendar, read as those dates
DAY_CALENDARS = ("standard", "gregorian", "proleptic_gregorian", "julian", "noleap", "365_day",
                 "all_leap", "366_day")
#: calendars without 29 February: that day has no model value (its observations are left out)
NO_LEAP_CALENDARS = ("noleap", "365_day")


def daily_time(ds: xr.Dataset) -> xr.Dataset:
    """The series' ``time`` as datetime64 days, whatever the model stamped.

    cftime dates of the calendars in :data:`DAY_CALENDARS` become the same dates (a date the
    real calendar lacks, 29 February 2003 of ``all_leap`` say, is dropped with its values; the
    calendar is kept as the ``model_calendar`` attribute of ``time``, as :func:`monthly_time`
    keeps it: netCDF's own ``calendar`` is the encoding's); a time of day is dropped (a daily
    value stamped at noon is that day's). Another calendar (``360_day``), stamps that are not
    dates, or two stamps on one day are a :class:`ModelOutputError`.
    """
    t = ds["time"].values
    if t.dtype.kind == "M":
        days = t.astype("datetime64[D]")
        if (days == t).all() and (t.size < 2 or (np.diff(days) > np.timedelta64(0, "D")).all()):
            return ds  # the common case (days in order, each once), on the hot path: as it is
        calendar, real = "", None
    elif t.size and hasattr(t.flat[0], "calendar") and hasattr(t.flat[0], "day"):  # cftime
        calendar = str(t.flat[0].calendar)
        if calendar not in DAY_CALENDARS:
            raise ModelOutputError(
                f"the model output's 'time' is in the {calendar!r} calendar, whose dates are not days of "
                f"the observations' calendar; write it in one of {list(DAY_CALENDARS)} (docs/own-model.md)")
        ymd = np.array([(d.year, d.month, d.day) for d in t], dtype=np.int64).reshape(-1, 3)
        if ymd.size and not (1678 <= ymd[:, 0].min() and ymd[:, 0].max() <= 2261):
            raise ModelOutputError(
                f"the model output's 'time' runs from year {ymd[:, 0].min()} to {ymd[:, 0].max()}; the "
                "site route compares it with the observations' dates (years 1678-2261): write the "
                "real years")
        month = ((ymd[:, 0] - 1970) * 12 + ymd[:, 1] - 1).astype("datetime64[M]")
        days = month.astype("datetime64[D]") + (ymd[:, 2] - 1).astype("timedelta64[D]")
        real = days.astype("datetime64[M]") == month  # 29 Feb of a common year rolls into March
    else:
        try:
            days = np.asarray(t).astype("datetime64[ns]").astype("datetime64[D]")
        except (TypeError, ValueError):
            days = None
        if days is None or t.dtype.kind in "iufb":
            raise ModelOutputError(f"the model output's 'time' holds {t.dtype} values such as "
                                   f"{str(t.flat[0]) if t.size else None!r}; it must be dates (datetime64 "
                                   "or cftime), one per day")
        calendar, real = "", None
    if real is not None and not real.all():
        ds, days = ds.isel(time=np.flatnonzero(real)), days[real]
    uniq, counts = np.unique(days, return_counts=True)
    if (counts > 1).any():
        raise ModelOutputError(f"the model output's 'time' has {counts[counts > 1][0]} stamps on "
                               f"{uniq[counts > 1][0]} ({days.size} stamps on {uniq.size} days): the site "
                               "route takes one value per day (daily output, any time of day)")
    attrs = {**ds["time"].attrs, **({"model_calendar": calendar} if calendar else {})}
    return ds.assign_coords(time=("time", days.astype("datetime64[ns]"), attrs))


def _as_series(ds: xr.Dataset, variables: Sequence[str]) -> xr.Dataset:
    """Each of ``variables`` on (member, time); members with non-finite values failed. Numpy on
    the hot path (the direct route calls this at every chain step): xarray only to reshape."""
    status = reason = None
    for v in variables:
        da = ds[v]
        if da.dims == ("member", "time"):
            x = da.values
        else:
            x = _reshaped(ds, v)
            ds[v] = (("member", "time"), x, da.attrs)
        if np.issubdtype(x.dtype, np.number):
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                if status is None:
                    status, reason = ds["status"].values.astype(object), ds["reason"].values.astype(object)
                new = bad & (status == "done")
                status[new], reason[new] = "failed", _non_finite(ds, v, x[new])
    if status is not None:
        ds = ds.assign(status=("member", status.astype(str)), reason=("member", reason.astype(str)))
    if "cell" in ds.dims and all("cell" not in ds[v].dims for v in ds.data_vars):
        ds = ds.drop_dims("cell", errors="ignore")
    return ds


def _non_finite(ds: xr.Dataset, v: str, x: np.ndarray) -> list[str]:
    """Each failed member's reason: how many of its days of ``v`` are not finite, and the first."""
    bad = ~np.isfinite(x)
    t = np.asarray(ds["time"].values) if "time" in ds.coords else None
    first = [f", the first {str(t[i])[:10]}" if t is not None else "" for i in bad.argmax(axis=1)]
    return [f"non-finite output in {v} ({n} of {x.shape[1]} days{f})" for n, f in zip(bad.sum(axis=1), first,
                                                                                      strict=True)]


def _reshaped(ds: xr.Dataset, v: str) -> np.ndarray:
    """Variable ``v`` as a (member, time) array: any order, other dimensions of length one (a
    ``cell``, CLM's ``lndgrid``, JULES's ``x``/``y``, a ``lat``/``lon`` point) dropped."""
    da = ds[v]
    if "time" not in da.dims:
        raise ModelOutputError(f"model output '{v}' has dimensions {da.dims}: a series needs a 'time' "
                               "dimension, (member, time) or (member, cell, time)")
    extra = [d for d in da.dims if d not in ("member", "time")]
    if extra and all(da.sizes[d] == 1 for d in extra):
        da = da.isel({d: 0 for d in extra}, drop=True)
    elif extra:
        raise ModelOutputError(f"model output '{v}' has dimensions {dict(da.sizes)}; the site route takes "
                               "(member, time), or a single point (other dimensions of length one)")
    return da.transpose("member", "time").values


class ConformingModel:
    """A user's model seen through the contract: every call returns series on ``(member, time)``
    (or the global route's cells) with ``status``/``reason``; a member whose run raises fails alone.

    Parameters
    ----------
    model : callable
        ``model(theta (k, n)) -> Dataset or mapping`` with a ``space`` attribute.
    variables : sequence of str, optional
        Variables the workflow needs (checked on every call).
    space : ParameterSpace, optional
        Replaces ``model.space`` (a ``parameters_file``); must name the same values in order.
    series : bool, default True
        Site series on ``(member, time)``; ``False`` keeps the global route's cells
        (:func:`conform_output`).
    """

    def __init__(self, model: Any, variables: Sequence[str] | None = None, space: Any = None,
                 series: bool = True) -> None:
        self.model = model
        self.variables = list(variables or [])
        self.space = space if space is not None else model.space
        self.series = series
        self._template: xr.Dataset | None = None
        self._units: dict[str, str] = {}  # each output's units in the first finished call
        self._factors: dict[tuple[str, str, str], float] = {}

    def __getattr__(self, name: str) -> Any:  # the model's own attributes (``drivers``, ...)
        if name in ("model", "simulate"):  # a simulate of the model's own would bypass the contract
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        try:
            ds = conform_output(self.model(theta), theta.shape[0], self.variables, series=self.series)
        except ModelOutputError:
            raise
        except Exception as err:  # noqa: BLE001 - a raising member fails alone (docs/own-model.md)
            if theta.shape[0] == 1:
                return self._failed(f"{type(err).__name__}: {err}")
            # halves, recursively: k raising members among n cost ~2 k log2(n) calls, not n (a
            # tempered SMC's batches of 500 with a few raising members each)
            h = theta.shape[0] // 2
            return self._concat([self(theta[:h]), self(theta[h:])])
        declared = getattr(self.model, "units", None)  # a dict output's units (docs/own-model.md)
        if isinstance(declared, Mapping):
            for v, u in declared.items():
                if v in ds and not ds[v].attrs.get("units"):
                    ds[v].attrs["units"] = str(u)
        if self._template is None and (ds["status"].values == "done").any():
            self._template = ds.isel(member=[int(np.argmax(ds["status"].values == "done"))])
            self._units = {str(v): str(a.attrs["units"]) for v, a in ds.data_vars.items()
                           if a.attrs.get("units")}
        elif self._units:
            ds = self._in_first_units(ds)
        return ds

    def _in_first_units(self, ds: xr.Dataset) -> xr.Dataset:
        """Each output in the units of the first finished call (the run at the defaults, which the
        products were converted to); a call in units that do not convert fails all its members,
        with a reason naming the variable and both units."""
        from bayescal.readers import UnitError, conversion_factor

        for v, want in self._units.items():
            have = ds[v].attrs.get("units") if v in ds else None
            if not have or have == want:
                continue
            try:
                f = self._factors.get((have, want, v))
                if f is None:
                    f = self._factors[(have, want, v)] = conversion_factor(have, want, v)
            except UnitError as err:
                bad = f"output '{v}' in [{have}] cannot be converted to [{want}] of the first run: {err}"
                status = np.where(ds["status"].values == "done", "failed", ds["status"].values)
                reason = np.where(ds["status"].values == "done", bad, ds["reason"].values)
                ds = ds.assign({v: ds[v] * np.nan, "status": ("member", status.astype(str)),
                                "reason": ("member", reason.astype(str))})
                ds[v].attrs["units"] = want
                continue
            ds[v] = (ds[v] * f).assign_attrs({**ds[v].attrs, "units": want})
        return ds

    def _failed(self, reason: str) -> xr.Dataset:
        """One failed member: NaN series shaped like a finished one (status/reason alone if none yet)."""
        status = xr.Dataset({"status": ("member", ["failed"]), "reason": ("member", [reason])})
        return status if self._template is None else _failed_like(self._template, status)

    @staticmethod
    def _concat(parts: list[xr.Dataset]) -> xr.Dataset:
        full = [p for p in parts if len(p.data_vars) > 2]
        if full and len(full) < len(parts):  # a member failed before any finished: pad it
            parts = [p if len(p.data_vars) > 2 else _failed_like(full[0], p) for p in parts]
        return xr.concat(parts, dim="member", data_vars="all", coords="minimal", compat="override")


def _failed_like(like: xr.Dataset, status: xr.Dataset) -> xr.Dataset:
    """``status``'s members shaped like ``like``'s first (a finished one), NaN outputs, their
    status/reason."""
    like = like.isel(member=[0] * status.sizes["member"])
    out = like.map(lambda a: a * np.nan if np.issubdtype(a.dtype, np.floating) else a)
    return out.assign(status=("member", status["status"].values), reason=("member", status["reason"].values))
