#!/usr/bin/env python3
"""A small DALEC-style site carbon model: a separate program that bayescal runs as a black box.

    python dalec_model.py PARAMS DRIVERS OUTPUT.nc

PARAMS is a text file of ``name = value`` lines (t1..t10, lma); DRIVERS is the DALEC driver file
of Williams et al. (2005) for Metolius, Oregon (day of year, mean/max/min temperature, irradiance,
soil-leaf water-potential difference, CO2, hydraulic resistance, foliar N); OUTPUT is a netCDF
file with daily gpp, nee, ra, rh, lai and the five carbon pools.

GPP follows the aggregated canopy model (ACM) of Williams et al. (1997) as used in DALEC; the
carbon pools (foliage, wood, roots, litter, soil organic matter) follow DALEC's evergreen
structure with first-order turnover and temperature-dependent decomposition. Exits with code 3
and a message on stderr when a pool goes negative (a "crashed" run).
"""

import sys

import numpy as np
import xarray as xr

ACM = (2.155, 0.0142, 217.9, 0.980, 0.155, 2.653, 4.309, 0.060, 1.062, 0.0006)
LAT = np.deg2rad(44.4)
INITIAL = {"cf": 57.7, "cw": 769.0, "cr": 101.0, "clit": 40.0, "csom": 9900.0}  # gC m-2
REQUIRED = ("t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "lma")


def read_params(path):
    params = {}
    for n, line in enumerate(open(path), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        if "=" not in line:
            sys.exit(f"{path}:{n}: expected 'name = value', got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        params[key] = float(value)
    missing = [k for k in REQUIRED if k not in params]
    if missing:
        sys.exit(f"{path}: missing parameters {missing}")
    return params


def acm_gpp(lai, doy, tmax, tmin, rad, psid, ca, rtot, nit):
    a = ACM
    gc = np.abs(psid) ** a[9] / (0.5 * (tmax - tmin) + a[5] * rtot)
    pp = lai * nit / gc * a[0] * np.exp(a[7] * tmax)
    qq = a[2] - a[3]
    ci = 0.5 * (ca + qq - pp + np.sqrt((ca + qq - pp) ** 2 - 4 * (ca * qq - pp * a[2])))
    e0 = a[6] * lai**2 / (lai**2 + a[8])
    dec = -23.4 * np.cos(np.deg2rad(360.0 * (doy + 10) / 365.0))
    daylen = 24.0 * np.arccos(-np.tan(LAT) * np.tan(np.deg2rad(dec))) / np.pi
    return e0 * rad * gc * (ca - ci) * (a[1] * daylen + a[4]) / (e0 * rad + gc * (ca - ci))


def main(params_path, drivers_path, out_path):
    p = read_params(params_path)
    drv = np.loadtxt(drivers_path)
    doy, tmean, tmax, tmin, rad, psid, ca, rtot, nit = drv[:, :9].T
    n = drv.shape[0]
    pools = dict(INITIAL)
    out = {k: np.empty(n) for k in ("gpp", "ra", "rh", "nee", "lai", *INITIAL)}
    for d in range(n):
        lai = max(pools["cf"] / p["lma"], 1e-3)
        gpp = acm_gpp(lai, doy[d], tmax[d], tmin[d], rad[d], psid[d], ca[d], rtot[d], nit[d])
        temp = 0.5 * np.exp(p["t10"] * tmean[d])
        ra = p["t2"] * gpp
        npp = gpp - ra
        af = p["t3"] * npp
        ar = p["t4"] * (npp - af)
        aw = npp - af - ar
        lf, lw, lr = p["t5"] * pools["cf"], p["t6"] * pools["cw"], p["t7"] * pools["cr"]
        rh1 = p["t8"] * pools["clit"] * temp
        rh2 = p["t9"] * pools["csom"] * temp
        dec = p["t1"] * pools["clit"] * temp
        pools["cf"] += af - lf
        pools["cw"] += aw - lw
        pools["cr"] += ar - lr
        pools["clit"] += lf + lr - rh1 - dec
        pools["csom"] += dec - rh2 + lw
        bad = [k for k, v in pools.items() if not np.isfinite(v) or v < 0]
        if bad:
            sys.stderr.write(f"negative or non-finite pool {bad[0]} on day {d + 1}\n")
            sys.exit(3)
        for k, v in (("gpp", gpp), ("ra", ra), ("rh", rh1 + rh2), ("nee", ra + rh1 + rh2 - gpp),
                     ("lai", lai)):
            out[k][d] = v
        for k in INITIAL:
            out[k][d] = pools[k]
    units = {"gpp": "gC m-2 d-1", "ra": "gC m-2 d-1", "rh": "gC m-2 d-1", "nee": "gC m-2 d-1",
             "lai": "m2 m-2"}
    ds = xr.Dataset({k: ("day", v, {"units": units.get(k, "gC m-2")}) for k, v in out.items()},
                    coords={"day": np.arange(1, n + 1)},
                    attrs={"model": "DALEC-style site model (bayescal example)", "site": "Metolius"})
    ds.to_netcdf(out_path, engine="h5netcdf")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
