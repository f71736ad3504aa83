"""Cheap analytic simulators with controllable failures, for tests, examples and benchmarks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["ToySimulator", "ToySiteModel", "toy_site_series", "write_toy_site_csv"]


class ToySimulator:
    """A vectorised analytic simulator that fails for chosen members.

    Output for a parameter vector ``x``: ``y[t] = sum_j x_j * cos(t * (j + 1) / 7) + x_0 * x_1``
    on ``t = 0..n_time-1``, and a scalar ``s = sum(x**2)``.

    Parameters
    ----------
    n_time : int
        Length of the output series.
    raise_above, nan_above, report_above : float, optional
        A member fails by raising ``RuntimeError`` when ``x[0] > raise_above``; by returning NaN
        when ``x[1] > nan_above``; by reporting ``failed`` when ``x[2] > report_above``.
    sleep : float
        Seconds slept per member (to imitate an expensive model).
    """

    def __init__(self, n_time: int = 12, raise_above: float | None = None, nan_above: float | None = None,
                 report_above: float | None = None, sleep: float = 0.0):
        self.n_time = n_time
        self.raise_above = raise_above
        self.nan_above = nan_above
        self.report_above = report_above
        self.sleep = sleep

    def expected_failures(self, theta: np.ndarray) -> np.ndarray:
        """Which members fail (any mechanism)."""
        theta = np.atleast_2d(theta)
        bad = np.zeros(theta.shape[0], dtype=bool)
        for col, thr in ((0, self.raise_above), (1, self.nan_above), (2, self.report_above)):
            if thr is not None:
                bad |= theta[:, col] > thr
        return bad

    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self.sleep:
            time.sleep(self.sleep * theta.shape[0])
        if self.raise_above is not None and np.any(theta[:, 0] > self.raise_above):
            raise RuntimeError(f"toy model crashed: x0 > {self.raise_above}")
        t = np.arange(self.n_time)
        j = np.arange(theta.shape[1])
        y = theta @ np.cos(np.outer(j + 1, t) / 7.0) + (theta[:, 0] * theta[:, 1])[:, None]
        if self.nan_above is not None:
            y[theta[:, 1] > self.nan_above] = np.nan
        failed = np.zeros(theta.shape[0], dtype=bool)
        if self.report_above is not None:
            failed = theta[:, 2] > self.report_above
        return xr.Dataset(
            {"y": (("member", "t"), y, {"units": "1"}), "s": ("member", (theta**2).sum(axis=1)),
             "status": ("member", np.where(failed, "failed", "done")),
             "reason": ("member", np.where(failed, "toy model reports failure", ""))},
            coords={"member": np.arange(theta.shape[0]), "t": t},
        )


def toy_site_series(a: np.ndarray, b: np.ndarray, time: np.ndarray) -> np.ndarray:
    """``nee = a sin(2 pi doy / 365.25) + b`` on (member, time): the toy site model's output."""
    doy = np.asarray(time, dtype="datetime64[D]").astype(int) % 365.25
    return np.asarray(a)[:, None] * np.sin(2 * np.pi * doy / 365.25)[None, :] + np.asarray(b)[:, None]


def write_toy_site_csv(path, end: str = "2003-12-31", a: float = 2.5, b: float = -0.4, sigma: float = 0.3,
                       seed: int = 0) -> Path:
    """A CSV product of :func:`toy_site_series` from 2001-01-01 to ``end`` with iid noise ``sigma``
    (columns time, value, sigma): the observations of the toy site twin."""
    t = pd.date_range("2001-01-01", end, freq="D")
    y = toy_site_series(np.array([a]), np.array([b]), t.values)[0]
    y = y + np.random.default_rng(seed).normal(0, sigma, y.size)
    pd.DataFrame({"time": t.strftime("%Y-%m-%d"), "value": y, "sigma": sigma}).to_csv(path, index=False)
    return Path(path)


class ToySiteModel:
    """A site model in a few lines, for the Python entry-point route (``model.kind = "python"``):
    two parameters ``a`` (seasonal amplitude) and ``b`` (offset), daily ``nee`` on (member, time).

    ``ToySiteModel(start="2001-01-01", end="2004-12-31")`` is what
    ``entry_point = "bayescal.testing:ToySiteModel"`` with ``options = {start = ..., end = ...}`` makes.
    """

    def __init__(self, start: str = "2001-01-01", end: str = "2004-12-31") -> None:
        from bayescal.parameters import Parameter, ParameterSpace

        self.space = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0, "gC m-2 d-1", "seasonal amplitude"),
                                     Parameter("b", 0.0, -2.0, 2.0, "gC m-2 d-1", "offset")])
        first, last = np.datetime64(start, "D"), np.datetime64(end, "D")
        self.time = np.arange(first, last + np.timedelta64(1, "D")).astype("datetime64[ns]")

    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        theta = np.atleast_2d(theta)
        nee = toy_site_series(theta[:, 0], theta[:, 1], self.time)
        return xr.Dataset(
            {"nee": (("member", "time"), nee, {"units": "gC m-2 d-1"}),
             "status": ("member", np.full(theta.shape[0], "done")),
             "reason": ("member", np.full(theta.shape[0], ""))},
            coords={"member": np.arange(theta.shape[0]), "time": self.time},
        )
