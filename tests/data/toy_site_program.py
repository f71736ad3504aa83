#!/usr/bin/env python3
"""A site model as a separate program (the external route): PARAMS -> OUTPUT.nc with daily nee.

    python toy_site_program.py PARAMS OUTPUT.nc
"""

import sys

import numpy as np
import xarray as xr

from bayescal.testing import toy_site_series

params = {k.strip(): v for k, v in (line.split("=") for line in open(sys.argv[1]) if "=" in line)}
a, b = float(params["a"]), float(params["b"])
time = np.arange(np.datetime64("2001-01-01"), np.datetime64("2003-12-31") + 1).astype("datetime64[ns]")
nee = toy_site_series(np.array([a]), np.array([b]), time)[0]
xr.Dataset({"nee": ("time", nee, {"units": "gC m-2 d-1"})}, coords={"time": time}).to_netcdf(sys.argv[2])
