"""Peak memory of reading and regridding a 0.05 degree global product (issue 27).

Writes a CF-netCDF product on a global 0.05 degree grid (7200 x 3600 boxes, float32, land only,
zlib-compressed, ~104 MB per time step uncompressed), then reads it in a fresh process with
:func:`bayescal.readers.read_netcdf_product` onto ``--cells`` model cells with a ``--footprint``
degree footprint, and prints that process's peak resident memory (``VmHWM``) and the
baseline after the imports. Target: well under 1 GiB.

    python benchmarks/bench_regrid.py                      # 1 time step, 60 cells, 1 degree
    python benchmarks/bench_regrid.py --steps 3 --cells 200 --footprint 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write(path: Path, res: float, steps: int) -> None:
    import numpy as np
    import pandas as pd
    import xarray as xr

    lat = np.arange(-90 + res / 2, 90, res)
    lon = np.arange(-180 + res / 2, 180, res)
    t = pd.date_range("2001-01-01", periods=steps, freq="MS")
    la = np.deg2rad(lat, dtype=np.float32)[:, None]
    lo = np.deg2rad(lon, dtype=np.float32)[None, :]
    ds = xr.Dataset(coords={"time": t,
                            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
                            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"})})
    field = np.empty((steps, lat.size, lon.size), dtype=np.float32)
    for k in range(steps):  # a smooth GPP-like field, "ocean" (a band pattern) missing
        f = (5.0 + 4.0 * np.cos(la) * np.cos(lo * 3 + k)).astype(np.float32)
        f[np.sin(la * 7) * np.cos(lo * 5) > 0.6] = np.nan
        field[k] = f
    ds["gpp"] = (("time", "lat", "lon"), field, {"units": "gC m-2 d-1", "long_name": "GPP (synthetic)"})
    enc = {"gpp": {"zlib": True, "complevel": 1, "chunksizes": (1, 600, 1200),
                   "_FillValue": np.float32(-9999)}}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)


def _hwm_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read(path: Path, cells: int, footprint: float) -> dict:
    import tracemalloc

    import numpy as np
    import pandas as pd
    import xarray as xr

    from bayescal.readers import read_netcdf_product

    base = _hwm_mib()
    rng = np.random.default_rng(0)
    c = xr.Dataset({"lat": ("cell", rng.uniform(-55, 70, cells)),
                    "lon": ("cell", rng.uniform(-180, 180, cells))}, coords={"cell": np.arange(cells)})
    with xr.open_dataset(path) as ds:
        months = pd.DatetimeIndex(ds["time"].values)
    tracemalloc.start()
    t0 = time.perf_counter()
    p = read_netcdf_product(path, "gpp", cells=c, months=months, units="kgC m-2 s-1", relative_sigma=0.1,
                            footprint_deg=footprint)
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    peak = _hwm_mib()
    return {"peak_rss_mib": round(peak, 1), "baseline_rss_mib": round(base, 1),
            "numpy_traced_peak_mib": round(traced, 1), "seconds": round(wall, 1),
            "cells_with_data": int(np.isfinite(p.data.values).any(axis=1).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--cells", type=int, default=60)
    ap.add_argument("--footprint", type=float, default=1.0)
    ap.add_argument("--file", type=Path, help="(internal) the product to read")
    args = ap.parse_args()
    if args.file is not None:  # the measured process: read + regrid only
        print(json.dumps(read(args.file, args.cells, args.footprint)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpp_0p05.nc"
        t0 = time.perf_counter()
        write(path, args.res, args.steps)
        size = path.stat().st_size / 2**20
        print(f"wrote {path.name}: {args.res} deg global, {args.steps} step(s), {size:.0f} MiB on disk "
              f"({time.perf_counter() - t0:.0f} s)")
        out = subprocess.run([sys.executable, __file__, "--file", str(path), "--cells", str(args.cells),
                              "--footprint", str(args.footprint)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"read + regrid onto {args.cells} cells, footprint {args.footprint} deg: {r['seconds']} s; "
          f"{r['cells_with_data']} cells with data")
    print(f"peak RSS {r['peak_rss_mib']} MiB (after imports {r['baseline_rss_mib']} MiB; numpy peak traced "
          f"{r['numpy_traced_peak_mib']} MiB); target < 1024 MiB")


if __name__ == "__main__":
    main()
