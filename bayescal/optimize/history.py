"""The record of an optimisation: every evaluation as one row of an xarray Dataset, and the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..parameters import ParameterSpace
from .objective import OptimizeError, evaluate

__all__ = ["OptimizationResult", "Recorder"]


class Recorder:
    """Calls the objective and keeps the evaluation history."""

    def __init__(self, objective: Callable, n_dim: int) -> None:
        self.objective = objective
        self.n_dim = n_dim
        self.t0 = time.perf_counter()
        self.u: list[np.ndarray] = []
        self.misfit: list[np.ndarray] = []
        self.status: list[np.ndarray] = []
        self.reason: list[np.ndarray] = []
        self.time: list[np.ndarray] = []
        self.batch: list[np.ndarray] = []
        self.start: list[np.ndarray] = []
        self.n_batches = 0
        self.current_start = 0

    @property
    def n_evaluations(self) -> int:
        return int(sum(len(m) for m in self.misfit))

    def __call__(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        mis, res, status, reason = evaluate(self.objective, u)
        k = u.shape[0]
        self.u.append(u.copy())
        self.misfit.append(mis)
        self.status.append(status)
        self.reason.append(reason)
        self.time.append(np.full(k, time.perf_counter() - self.t0))
        self.batch.append(np.full(k, self.n_batches))
        self.start.append(np.full(k, self.current_start))
        self.n_batches += 1
        return mis, res, status

    def to_dict(self) -> dict[str, Any]:
        return {"u": [x.tolist() for x in self.u], "misfit": [x.tolist() for x in self.misfit],
                "status": [x.tolist() for x in self.status], "reason": [x.tolist() for x in self.reason],
                "time": [x.tolist() for x in self.time], "batch": [x.tolist() for x in self.batch],
                "start": [x.tolist() for x in self.start], "n_batches": self.n_batches}

    def load_dict(self, d: dict[str, Any]) -> None:
        self.u = [np.asarray(x, dtype=float).reshape(-1, self.n_dim) for x in d["u"]]
        self.misfit = [np.asarray(x, dtype=float) for x in d["misfit"]]
        self.status = [np.asarray(x, dtype=str) for x in d["status"]]
        self.reason = [np.asarray(x, dtype=str) for x in d["reason"]]
        self.time = [np.asarray(x, dtype=float) for x in d["time"]]
        self.batch = [np.asarray(x, dtype=int) for x in d["batch"]]
        self.start = [np.asarray(x, dtype=int) for x in d["start"]]
        self.n_batches = int(d["n_batches"])
        if self.time:
            self.t0 = time.perf_counter() - float(self.time[-1][-1])

    def history(self, space: ParameterSpace | None, method: str) -> xr.Dataset:
        labels = space.labels if space is not None else [f"x{i}" for i in range(self.n_dim)]

        def cat(xs: list[np.ndarray], dt) -> np.ndarray:
            return np.concatenate(xs) if xs else np.zeros(0, dtype=dt)

        u = np.concatenate(self.u) if self.u else np.zeros((0, self.n_dim))
        mis = cat(self.misfit, float)
        n = mis.size
        best = np.fmin.accumulate(np.where(np.isfinite(mis), mis, np.inf)) if n else mis
        ds = xr.Dataset(
            {
                "u": (("member", "parameter"), u, {"long_name": "unit-cube value"}),
                "misfit": ("member", mis),
                "best_misfit": ("member", best, {"long_name": "best misfit so far"}),
                "status": ("member", cat(self.status, str).astype(str)),
                "reason": ("member", cat(self.reason, str).astype(str)),
                "time": ("member", cat(self.time, float),
                         {"units": "s", "long_name": "wall time since start"}),
                "batch": ("member", cat(self.batch, int)),
                "start": ("member", cat(self.start, int), {"long_name": "starting point (DFO-LS)"}),
            },
            coords={"member": np.arange(n), "evaluation": ("member", np.arange(1, n + 1)),
                    "parameter": labels},
            attrs={"method": method},
        )
        if space is not None and n:
            ds["theta"] = (("member", "parameter"), space.from_unit(np.clip(u, 0.0, 1.0)),
                            {"long_name": "parameter value"})
        return ds


@dataclass
class OptimizationResult:
    """What an optimiser found and every evaluation it made.

    Attributes
    ----------
    method : str
    u : numpy.ndarray
        Best point in the unit cube.
    x : numpy.ndarray or None
        Best point in parameter units (when a space was given).
    fun : float
        Best misfit.
    history : xarray.Dataset
        One row per evaluation (``u``, ``theta``, ``misfit``, ``best_misfit``, ``status``,
        ``reason``, ``time``, ``batch``, ``start``).
    message : str
    """

    method: str
    u: np.ndarray
    x: np.ndarray | None
    fun: float
    history: xr.Dataset
    message: str = ""

    @property
    def n_evaluations(self) -> int:
        return int(self.history.sizes["member"])

    def training_data(
        self, drop_failed: bool = True, drop_worst: float = 0.0
    ) -> tuple[xr.DataArray, xr.DataArray]:
        """The history as emulator training data: unit-cube points and misfits.

        Parameters
        ----------
        drop_failed : bool, default True
            Leave out failed evaluations.
        drop_worst : float, default 0.0
            Fraction of the worst (highest-misfit) evaluations to leave out; Seiler trains on the
            GA's runs after dropping failed runs and the worst 25 % (``drop_worst=0.25``).
            Repeated points are kept once.

        Returns
        -------
        X : xarray.DataArray (member, parameter)
        y : xarray.DataArray (member) misfit
        """
        if not 0.0 <= drop_worst < 1.0:
            raise OptimizeError(f"drop_worst must be in [0, 1), got {drop_worst}")
        h = self.history
        keep = np.ones(h.sizes["member"], dtype=bool)
        if drop_failed:
            keep &= h["status"].values == "done"
        _, first = np.unique(h["u"].values, axis=0, return_index=True)
        uniq = np.zeros_like(keep)
        uniq[first] = True
        keep &= uniq
        idx = np.flatnonzero(keep)
        if drop_worst > 0 and idx.size:
            mis = h["misfit"].values[idx]
            n_keep = int(np.ceil(idx.size * (1.0 - drop_worst)))
            idx = np.sort(idx[np.argsort(mis, kind="stable")[:n_keep]])
        X = xr.DataArray(h["u"].values[idx], dims=("member", "parameter"),
                         coords={"parameter": h["parameter"].values}, name="u")
        y = xr.DataArray(h["misfit"].values[idx], dims="member", name="misfit")
        return X, y


def dimension(space: ParameterSpace | None, n_dim: int | None) -> int:
    if space is not None:
        return space.n_free
    if n_dim is None or n_dim < 1:
        raise OptimizeError("give a ParameterSpace or n_dim >= 1")
    return int(n_dim)


def start_point(space: ParameterSpace | None, d: int, x0, name: str = "x0") -> np.ndarray:
    """Starting unit-cube point: 'default' (the space's defaults), or given unit values."""
    if isinstance(x0, str):
        if x0 != "default":
            raise OptimizeError(f"{name} must be 'default' or unit-cube values, got {x0!r}")
        return space.to_unit(space.default) if space is not None else np.full(d, 0.5)
    arr = np.asarray(x0, dtype=float)
    if arr.shape != (d,) or np.any(arr < 0) or np.any(arr > 1):
        raise OptimizeError(f"{name} must be {d} values in [0, 1] (unit cube), got shape {arr.shape}")
    return arr


def result(rec: Recorder, space: ParameterSpace | None, method: str, message: str) -> OptimizationResult:
    hist = rec.history(space, method)
    mis = hist["misfit"].values
    if not np.isfinite(mis).any():
        raise OptimizeError(f"{method}: every evaluation failed; see history reasons: "
                            f"{sorted(set(hist['reason'].values.tolist()))[:3]}")
    i = int(np.nanargmin(np.where(np.isfinite(mis), mis, np.nan)))
    u = hist["u"].values[i]
    x = space.from_unit(u) if space is not None else None
    return OptimizationResult(method, u, x, float(mis[i]), hist, message)

