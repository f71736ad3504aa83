"""Run the embedded global land-carbon model at its default parameters and print global totals.

    python examples/run_embedded_model.py

Prints 2003-2022 mean global fluxes and pools, and simulated NBP beside the Global Carbon
Budget 2024 NBP (Friedlingstein et al., 2025) with its propagated 1-sigma.
"""

import numpy as np

from bayescal.gcb import load_gcb2024
from bayescal.models import LandCarbonModel


def main() -> None:
    model = LandCarbonModel()
    print(f"{model.space!r}; grid of {model.grid.sizes['cell']} cells, {model.n_tiles} PFT tiles")
    ds = model.simulate(model.space.all_default).isel(member=0)
    if bool(ds.failed):
        raise SystemExit(f"default run failed: {ds.failure.item()}")
    period = ds.sel(year=slice(2003, 2022))
    print("\nGlobal means 2003-2022 (default parameters)")
    for var in ("gpp", "ra", "rh", "fire", "fluc", "nbp"):
        print(f"  {var:6s} {float(period[f'{var}_global'].mean()):8.2f} PgC/yr")
    for var in ("cveg", "clitter", "csoil"):
        print(f"  {var:7s}{float(period[f'{var}_global'].mean()):8.1f} PgC")
    gcb = load_gcb2024()
    print("\nNBP by decade, PgC/yr: simulated vs GCB 2024 (+/- 1 sigma)")
    for start in range(1960, 2021, 10):
        sl = slice(start, min(start + 9, 2023))
        sim = float(ds.nbp_global.sel(year=sl).mean())
        ref = float(gcb.nbp.sel(year=sl).mean())
        sig = float(np.sqrt((gcb.nbp_sigma.sel(year=sl) ** 2).mean()))
        print(f"  {start}s  simulated {sim:5.2f}   GCB {ref:5.2f} +/- {sig:4.2f}")


if __name__ == "__main__":
    main()
