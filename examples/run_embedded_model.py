"""The embedded global land-carbon model, from a default run to skill scores of a small ensemble.

    python examples/run_embedded_model.py

1. Simulate at the default parameters: 2003-2022 mean global fluxes and pools, and NBP beside the
   Global Carbon Budget 2024 NBP (Friedlingstein et al., 2025) with its propagated 1-sigma.
2. Twin experiment: make GPP, LAI and latent-heat products at a "true" parameter set, run a
   small Latin-hypercube ensemble, and score every member (AMBER/ILAMB scores, Gaussian
   log-likelihood, chi-squared of NBP against GCB 2024).
"""

import numpy as np
from scipy.stats import qmc

from bayescal.models import LandCarbonModel
from bayescal.observations.gcb import load_gcb2024
from bayescal.observations.products import make_twin
from bayescal.operators.scores import chi2_nbp, gaussian_loglik, score


def main() -> None:
    model = LandCarbonModel()
    print(f"{model.space!r}; grid of {model.grid.sizes['cell']} cells, {model.n_tiles} PFT tiles")
    ds = model.simulate(model.space.all_default).isel(member=0)
    if (str(ds.status.values) != "done"):
        raise SystemExit(f"default run failed: {ds.reason.item()}")
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

    # ---- twin experiment: products at a known truth, a small ensemble, its scores
    space = model.space
    truth = space.from_unit(np.full(space.n_free, 0.6))
    obs, _ = make_twin(model, space.expand(truth), seed=1)
    design = space.from_unit(qmc.LatinHypercube(d=space.n_free, seed=2).random(6))
    members = np.vstack([space.all_default, space.expand(truth), space.expand(design)])
    ens = model.simulate(members)
    s = score(ens, obs)
    ll = gaussian_loglik(ens, obs)
    chi2 = chi2_nbp(ens, years=slice(1960, 2023))
    names = ["default", "truth"] + [f"LHS {i}" for i in range(design.shape[0])]
    print(f"\nTwin experiment: {len(obs)} products of {', '.join(obs.variables)}")
    print("  member     overall   gpp    lai    hfls   log-lik      chi2(NBP vs GCB)")
    for i, name in enumerate(names):
        if (ens.status.values[i] != "done"):
            print(f"  {name:9s}  failed: {ens.reason.values[i]}")
            continue
        vs = s.variable_score.isel(member=i)
        print(f"  {name:9s}  {float(s.overall[i]):.3f}   "
              + "  ".join(f"{float(vs.sel(variable=v)):.3f}" for v in ("gpp", "lai", "hfls"))
              + f"  {float(ll.loglik[i]):12.4g}  {float(chi2[i]):8.1f}")


if __name__ == "__main__":
    main()
