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
``(member, time)`` with ``status`` and ``reason``. Output that breaks the contract for every
member (no ``time`` axis, a missing variable, the wrong number of members) is a
:class:`ModelOutputError` naming the variable, raised by ``bayescal check`` before any
calibration run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ConformingModel", "ModelOutputError", "conform_output", "member_status"]

_STATUS = ("status", "reason", "failed", "failure")


class ModelOutputError(ValueError):
    """The model's output breaks the contract of docs/own-model.md for every member."""


#: coordinates a mapping may give: dates, years of the global series, and the cells' area and region
_COORDS = {"time": "time", "year": "year", "cell": "cell", "area": "cell", "biome": "cell"}


def _from_mapping(out: Mapping, k: int) -> xr.Dataset:
    """A mapping of arrays -> Dataset: 1-D on member, 2-D (member, time), 3-D (member, cell, time),
    ``<variable>_global`` (member, year); ``time``, ``year``, ``cell``, ``area`` and ``biome`` (on
    cell) are coordinates (the global route's cells need ``area`` and ``biome``; cells without
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
                   series: bool = True) -> xr.Dataset:
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
        dropped). ``False`` keeps the dimensions as they are (the global route's cells).

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
        ds = _as_series(ds, variables or [n for n in ds.data_vars if n not in ("status", "reason")])
    return ds


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
                status[new], reason[new] = "failed", f"non-finite output in {v}"
    if status is not None:
        ds = ds.assign(status=("member", status.astype(str)), reason=("member", reason.astype(str)))
    if "cell" in ds.dims and all("cell" not in ds[v].dims for v in ds.data_vars):
        ds = ds.drop_dims("cell", errors="ignore")
    return ds


def _reshaped(ds: xr.Dataset, v: str) -> np.ndarray:
    """Variable ``v`` as a (member, time) array: any order, a ``cell`` of length one dropped."""
    da = ds[v]
    if "time" not in da.dims:
        raise ModelOutputError(f"model output '{v}' has dimensions {da.dims}: a series needs a 'time' "
                               "dimension, (member, time) or (member, cell, time)")
    extra = [d for d in da.dims if d not in ("member", "time")]
    if extra == ["cell"] and da.sizes["cell"] == 1:
        da = da.isel(cell=0, drop=True)
    elif extra:
        raise ModelOutputError(f"model output '{v}' has dimensions {da.dims}; the site route takes "
                               "(member, time) or (member, cell, time) with one cell")
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

    def __getattr__(self, name: str) -> Any:  # the model's own attributes (``drivers``, ...)
        if name == "model":
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
            return self._concat([self(theta[i : i + 1]) for i in range(theta.shape[0])])
        declared = getattr(self.model, "units", None)  # a dict output's units (docs/own-model.md)
        if isinstance(declared, Mapping):
            for v, u in declared.items():
                if v in ds and not ds[v].attrs.get("units"):
                    ds[v].attrs["units"] = str(u)
        if self._template is None and (ds["status"].values == "done").any():
            self._template = ds.isel(member=[int(np.argmax(ds["status"].values == "done"))])
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
    """One member shaped like ``like`` (one finished member), NaN outputs, ``status``'s status/reason."""
    out = like.map(lambda a: a * np.nan if np.issubdtype(a.dtype, np.floating) else a)
    return out.assign(status=("member", status["status"].values), reason=("member", status["reason"].values))
