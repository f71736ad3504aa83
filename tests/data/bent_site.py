"""A three-parameter site model whose output bends with its parameters, for the site emulator
route's test against the exact posterior (tests/test_site_emulator.py): daily
``nee = a s exp(-4 k f) + c q`` with ``s``, ``q`` the seasonal sine and cosine and ``f`` the
fraction of the year gone: no few fixed curves span its outputs."""

import numpy as np
import xarray as xr

from bayescal.parameters import Parameter, ParameterSpace


def bent_series(theta: np.ndarray, time: np.ndarray) -> np.ndarray:
    a, k, c = np.atleast_2d(theta).T[:, :, None]
    doy = np.asarray(time, dtype="datetime64[D]").astype(int) % 365.25
    s, q = np.sin(2 * np.pi * doy / 365.25), np.cos(2 * np.pi * doy / 365.25)
    return a * s * np.exp(-4.0 * k * doy / 365.25) + c * q


class BentSiteModel:
    def __init__(self, start: str = "2001-01-01", end: str = "2003-12-31") -> None:
        self.space = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0, "gC m-2 d-1", "amplitude"),
                                     Parameter("k", 0.5, 0.0, 1.0, "1", "decay over the year"),
                                     Parameter("c", 0.0, -1.0, 1.0, "gC m-2 d-1", "phase term")])
        first, last = np.datetime64(start, "D"), np.datetime64(end, "D")
        self.time = np.arange(first, last + np.timedelta64(1, "D")).astype("datetime64[ns]")

    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        theta = np.atleast_2d(theta)
        n = theta.shape[0]
        return xr.Dataset(
            {"nee": (("member", "time"), bent_series(theta, self.time), {"units": "gC m-2 d-1"}),
             "status": ("member", np.full(n, "done")), "reason": ("member", np.full(n, ""))},
            coords={"member": np.arange(n), "time": self.time})
