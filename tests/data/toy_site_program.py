#!/usr/bin/env python3
"""A site model as a separate program (the external route): PARAMS -> OUTPUT.nc with daily nee.

    python toy_site_program.py PARAMS OUTPUT.nc

The series of ``bayescal.testing.toy_site_series`` (``nee = a sin(2 pi doy / 365.25) + b``), daily
2001-2003, written as netCDF-4 with a CF time axis. It imports numpy and h5netcdf only (not
bayescal or xarray): the program runs once per model run, and its start-up is most of its cost.
"""

import sys

import h5netcdf
import numpy as np

params = {k.strip(): v for k, v in (line.split("=") for line in open(sys.argv[1]) if "=" in line)}
a, b = float(params["a"]), float(params["b"])
days = np.arange(np.datetime64("2001-01-01"), np.datetime64("2003-12-31") + 1)  # datetime64[D]
doy = days.astype(int) % 365.25
nee = a * np.sin(2 * np.pi * doy / 365.25) + b
with h5netcdf.File(sys.argv[2], "w") as f:
    f.dimensions["time"] = days.size
    t = f.create_variable("time", ("time",), "i8", data=np.arange(days.size))
    t.attrs["units"] = "days since 2001-01-01"
    t.attrs["calendar"] = "standard"
    f.create_variable("nee", ("time",), "f8", data=nee).attrs["units"] = "gC m-2 d-1"
