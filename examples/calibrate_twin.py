"""Twin calibration on the embedded model: runs -> emulators -> posterior -> equifinality.

    python examples/calibrate_twin.py [OUT_DIR]        # a few minutes on 2 cores

Uses the embedded model on a 60-cell grid over 2000-2010 (the physics of the global default,
fewer cells and years so the example runs in minutes) and 20 screened parameters:

1. twin products at a known truth; a 300-member Latin hypercube through the resumable runner;
2. emulators: a GP of the least-squares misfit (closed-form LOO) and an SVD emulator of the
   log biome means of GPP, LAI and latent heat; both saved to netCDF;
3. posterior: Gaussian likelihood on the emulated biome means (product spread as sigma,
   emulator variance included), emcee with a checkpoint, two refinement rounds;
4. equifinality: identifiability table, strongest correlations, PCA, alternatives, and the
   distance-vs-misfit clouds.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from bayescal.analysis.equifinality import (
    alternatives,
    correlation,
    distance_score_cloud,
    identifiability,
    pca,
    strongest_pairs,
)
from bayescal.emulators import GPEmulator, SVDEmulator
from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.observations.products import make_twin, observed_regional_means, regional_means
from bayescal.operators.scores import residuals, score
from bayescal.parameters.design import latin_hypercube
from bayescal.posterior import (
    GaussianLikelihood,
    PosteriorWarning,
    Priors,
    diagnose,
    emulator_trust,
    refine,
    unit_samples,
)
from bayescal.run.ensemble import EnsembleStore, run_ensemble

SCREENED = [
    "vmax[NDL-EVG]",
    "vmax[BDL-EVG]",
    "vmax[GRASS-C3]",
    "vmax[GRASS-C4]",
    "vmax[CROP-C3]",
    "kn[BDL-EVG]",
    "kn[GRASS-C3]",
    "alpha_phtsyn[BDL-EVG]",
    "alpha_phtsyn[GRASS-C4]",
    "sn[GRASS-C3]",
    "vpd0[BDL-EVG]",
    "gamma_w",
    "beta2",
    "rmlcoef[BDL-EVG]",
    "lfespany[BDL-EVG]",
    "lfespany[GRASS-C3]",
    "bsratesc",
    "q10_rh",
    "humicfac",
    "kappa[BDL-EVG]",
]
VARS = ["gpp", "lai", "hfls"]


def main(out: str = "runs/calibrate_twin") -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = make_grid(n_cells=60, seed=3)
    model = LandCarbonModel(
        grid=grid, drivers=make_drivers(grid, start=2000, end=2010, ramp_start=1995, seed=3)
    )
    space = model.space.only(SCREENED)
    truth = space.from_unit(np.linspace(0.3, 0.7, space.n_free))
    obs, truth_run = make_twin(model, space.expand(truth), seed=11)

    # 1. runs (resumable: re-running skips finished members)
    design = latin_hypercube(space, 300, seed=1)
    summary = run_ensemble(
        model, space.expand(design.values), out_dir / "ensemble", batch_size=32, keep=VARS, progress=True
    )
    print(summary)
    ens = EnsembleStore(out_dir / "ensemble").load()
    ok = ens["status"].values == "done"
    u = space.to_unit(design.values)[ok]

    # 2. emulators
    misfit = (residuals(ens.isel(member=ok), obs) ** 2).sum("residual").values
    u_da = xr.DataArray(u, dims=("member", "parameter"), coords={"parameter": space.labels})
    gp = GPEmulator(random_state=0).fit(u_da, misfit)
    loo = gp.loo()
    print(
        f"\nGP misfit emulator: {ok.sum()} runs, LOO R2 {loo.attrs['r2']:.3f}, "
        f"95 % coverage {loo.attrs['coverage_95']:.2f}"
    )
    gp.save(out_dir / "misfit_emulator.nc")

    observed, sigma = observed_regional_means(obs, VARS, truth_run.biome, truth_run.area)
    Y = regional_means(ens.isel(member=ok), VARS).values

    def simulate(points: np.ndarray) -> np.ndarray:
        ds = model.simulate(space.expand(space.from_unit(points)), variables=VARS)
        y = regional_means(ds, VARS).values
        y[(ds.status.values != "done")] = np.nan
        return y

    # 3. posterior with two refinement rounds
    emulator = SVDEmulator(variance_threshold=0.999, estimator=GPEmulator(n_restarts=0, random_state=0))
    res = refine(
        simulate,
        emulator,
        u,
        Y,
        lambda e: GaussianLikelihood(e, observed, sigma),
        space,
        n_new=40,
        max_rounds=2,
        min_steps=2000,
        max_steps=6000,
        seed=0,
    )
    per_round = [v for v in res.history.data_vars if res.history[v].dims == ("round",)]
    print("\nrefinement rounds\n", res.history[per_round].to_dataframe().round(3))
    res.emulator.save(out_dir / "output_emulator.nc")
    idata = res.idata
    idata.to_netcdf(str(out_dir / "posterior.nc"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorWarning)
        diag = diagnose(idata)
    print(f"R-hat max {float(diag.r_hat.max()):.3f}, bulk ESS min {float(diag.ess_bulk.min()):.0f}")
    post = unit_samples(idata, space)
    emulator_trust(post, res.X, GaussianLikelihood(res.emulator, observed, sigma))

    # 4. equifinality
    table = identifiability(post, Priors(space).sd())
    t_u = space.to_unit(truth)
    print("\nidentifiability (unit cube): ratio = posterior sd / prior sd")
    for j, lab in enumerate(space.labels):
        flag = "constrained" if table.constrained.values[j] else ""
        inside = table.q05.values[j] <= t_u[j] <= table.q95.values[j]
        print(
            f"  {lab:24s} ratio {float(table.ratio[j]):.2f}  90 % [{float(table.q05[j]):.2f}, "
            f"{float(table.q95[j]):.2f}] truth {t_u[j]:.2f} {'in' if inside else 'OUT'}  {flag}"
        )
    print(
        "strongest correlations:", [(a, b, round(c, 2)) for a, b, c in strongest_pairs(correlation(post), 3)]
    )
    p = pca(post)
    print(f"PCA: {p.attrs['n_components']} of {space.n_free} components hold 90 % of the posterior variance")
    best = u[np.argmin(misfit)]
    for local in (None, 0.1):
        cloud = distance_score_cloud(gp, best, n=50_000, local=local, seed=0)
        print(f"distance vs emulated misfit ({cloud.attrs['local']}): Spearman {cloud.attrs['spearman']:.2f}")
    alt = alternatives(u, misfit, k=5)
    print(f"five alternative near-optimal runs, min Eq. 18 distance {alt.attrs['min_distance']:.2f}")

    post_mean = space.from_unit(post.values.mean(0))
    check = model.simulate(np.vstack([space.all_default, space.expand(post_mean), space.expand(truth)]))
    s = score(check, obs).overall.values
    print(f"\noverall score: default {s[0]:.3f}, posterior mean {s[1]:.3f}, truth {s[2]:.3f}")
    print(f"written to {out_dir}/")


if __name__ == "__main__":
    main(*sys.argv[1:])
