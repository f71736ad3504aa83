"""Print the embedded model at its defaults against GCB 2024 and its 20 DGVMs (docs/model.md table).

    python examples/model_vs_gcb.py

The DGVM column gives the median and range over the 20 models' S2 land sink; for NBP and its
correlation each DGVM's NBP is its S_LAND minus GCB's E_LUC (as in GCB's budget).
"""

import numpy as np
import xarray as xr

from bayescal.models import LandCarbonModel
from bayescal.observations.gcb import compare_land_sink, load_gcb2024, load_gcb2024_land_models


def main() -> None:
    model = LandCarbonModel()
    ds = model.simulate(model.space.all_default, variables=["gpp"]).isel(member=0)
    ours = compare_land_sink(ds.nbp_global, ds.fluc_global)
    gcb = load_gcb2024().sel(year=slice(1959, 2022))
    dgvm = load_gcb2024_land_models().sel(year=slice(1959, 2022))
    rows = {k: [] for k in ours}
    for name in dgvm.model.values:
        sink = dgvm.sink.sel(model=name)
        if np.isnan(sink).any():
            continue
        fluc = xr.DataArray(gcb.luc.values, coords={"year": gcb.year.values})
        for k, (v, _) in compare_land_sink(sink - fluc, fluc).items():
            rows[k].append(v)
    print(f"{'quantity':22s} {'model':>8s} {'GCB 2024':>9s}   20 DGVMs: median [min, max]")
    for k, (m, g) in ours.items():
        d = np.array(rows[k])
        print(f"{k:22s} {m:8.2f} {g:9.2f}   {np.median(d):.2f} [{d.min():.2f}, {d.max():.2f}] (n={d.size})")
    pools = ds[["gpp_global", "cveg_global", "csoil_global", "fluc_global"]]
    print(f"GPP 2003-2022 (PgC/yr) {float(pools.gpp_global.sel(year=slice(2003, 2022)).mean()):8.1f}")
    print(f"vegetation C 2000-2020 {float(pools.cveg_global.sel(year=slice(2000, 2020)).mean()):8.0f}")
    print(f"soil C 2000-2020       {float(pools.csoil_global.sel(year=slice(2000, 2020)).mean()):8.0f}")
    luc = float(pools.fluc_global.sel(year=slice(1959, 2022)).sum() / gcb.luc.sum())
    print(f"fluc / E_LUC 1959-2022 {luc:8.2f}")


if __name__ == "__main__":
    main()
