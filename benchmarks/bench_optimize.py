"""Oliver et al.'s comparison on a six-parameter twin of the embedded model, over several seeds.

    python benchmarks/bench_optimize.py [--seeds 3] [--experiment clean|noisy|sparse] [--cma-budget 1500]

Twin: 24 cells, 2000-2010, six parameters (vmax of needleleaf evergreen trees and C3 grass, kn and
vpd0 of broadleaf evergreen trees, gamma_w, and the weakly constrained leaf lifespan of C3 grass, the
role K_PHY plays in the paper), noise-free GPP, LAI and latent-heat products; misfit = sum of squared
regionally normalised residuals. Baseline misfit = the true run against three noisy realisations
(1 % noise). For each method and seed: evaluations to the baseline misfit (first run with misfit
<= baseline), parameters recovered (+-5 % of range, Oliver's rule), best misfit, evaluations, time.

Experiments (Oliver et al.): ``clean`` fits noise-free products; ``noisy`` fits one noisy
realisation (1 % noise, the baseline's level); ``sparse`` fits noise-free products with 80 % of the
cell-months missing.

Methods and budgets: GA (population 20, 30 generations), CMA-ES (population 10, as Oliver et al.;
1,500 evaluations by default, the paper's budget, ``--cma-budget``), DFO-LS (70 evaluations
from a random start), differential evolution (5 x 6
members, 20 generations), and emulator + posterior (30-run Latin hypercube, GP of log misfit,
emcee on exp(-log misfit) and 10 new runs per round -- the posterior's best point and 9 draws --
until 200 runs).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from bayescal.emulators import GPEmulator
from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.observations.products import ProductSpec, make_twin
from bayescal.optimize import (
    ModelObjective,
    Recorder,
    baseline_misfit,
    cma_es,
    dfols,
    differential_evolution,
    evaluations_to_baseline,
    genetic_algorithm,
    recovery,
)
from bayescal.optimize.history import result
from bayescal.parameters.design import latin_hypercube
from bayescal.posterior import PosteriorSampler, PosteriorWarning

SIX = ["vmax[NDL-EVG]", "vmax[GRASS-C3]", "kn[BDL-EVG]", "vpd0[BDL-EVG]", "gamma_w", "lfespany[GRASS-C3]"]
TRUTH = np.array([0.3, 0.6, 0.45, 0.7, 0.55, 0.4])


def emulator_posterior(objective, space, seed: int, budget: int = 200, baseline: float = 0.0):
    """Latin hypercube, then rounds of GP(log misfit) -> emcee -> 10 new runs."""
    rec = Recorder(objective, space.n_free)
    X = latin_hypercube(space, 30, seed=seed)
    U = space.to_unit(X.values)
    mis, _, _ = rec(U)
    rng = np.random.default_rng(seed)
    while rec.n_evaluations < budget and np.nanmin(mis) > baseline:
        ok = np.isfinite(mis)
        gp = GPEmulator(n_restarts=0, random_state=seed).fit(U[ok], np.log(mis[ok]))

        def loglik(u, gp=gp):
            return -gp.predict(u)

        sampler = PosteriorSampler(loglik, space, n_walkers=24, seed=int(rng.integers(2**31)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PosteriorWarning)
            sampler.run(400, initial=U[ok])
        chain = sampler.sampler.get_chain(discard=200, flat=True)
        lp = sampler.sampler.get_log_prob(discard=200, flat=True)
        new = np.vstack([chain[np.argmax(lp)], chain[rng.choice(len(chain), 9, replace=False)]])
        m_new, _, _ = rec(new)
        U, mis = np.vstack([U, new]), np.concatenate([mis, m_new])
    return result(rec, space, "emulator+posterior", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--experiment", choices=("clean", "noisy", "sparse"), default="clean")
    ap.add_argument("--cma-budget", type=int, default=1500)
    args = ap.parse_args()
    grid = make_grid(n_cells=24, seed=3)
    drivers = make_drivers(grid, start=2000, end=2010, ramp_start=1995, seed=3)
    model = LandCarbonModel(grid=grid, drivers=drivers, chunk_size=32)
    space = model.space.only(SIX)
    theta = space.expand(space.from_unit(TRUTH))
    names = [("gpp", "GPP"), ("lai", "LAI"), ("hfls", "HFLS")]
    noise, gaps = {"clean": (0.0, 0.0), "noisy": (0.01, 0.0), "sparse": (0.0, 0.8)}[args.experiment]
    obs, truth_run = make_twin(model, theta, [ProductSpec(v, n, noise=noise, gaps=gaps) for v, n in names],
                               seed=99)
    noisy = [ProductSpec(v, n, noise=0.01, gaps=gaps) for v, n in names]
    base = baseline_misfit(truth_run, [make_twin(model, theta, noisy, seed=s)[0] for s in range(3)])
    baseline = base.attrs["mean"]
    objective = ModelObjective(model, space, obs)
    print(f"experiment {args.experiment}; six-parameter twin; baseline misfit {baseline:.3e} "
          f"(realisations {np.round(base.values, 6)})")

    methods = {
        "GA": lambda s: genetic_algorithm(objective, space, pop_size=20, n_generations=30, seed=s),
        "CMA-ES": lambda s: cma_es(objective, space, x0=np.random.default_rng(100 + s).random(6),
                                   pop_size=10, max_evaluations=args.cma_budget, seed=s),
        "DFO-LS": lambda s: dfols(objective, space, starts=np.random.default_rng(100 + s).random((1, 6)),
                                  max_evaluations=70, seed=s),
        "DE": lambda s: differential_evolution(objective, space, pop_size=5, max_generations=20, seed=s,
                                               tol=0.0),
        "emulator+posterior": lambda s: emulator_posterior(objective, space, s, baseline=baseline),
    }
    rows = []
    for name, run in methods.items():
        for s in range(args.seeds):
            t0 = time.perf_counter()
            res = run(s)
            wall = time.perf_counter() - t0
            rec = recovery(res.history, TRUTH)
            rows.append({"method": name, "seed": s,
                         "evals_to_baseline": evaluations_to_baseline(res.history, baseline),
                         "recovered_of_6": rec.attrs["n_recovered"], "best_misfit": res.fun,
                         "evaluations": res.n_evaluations, "wall_s": round(wall, 1)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print("\nper run\n" + table.to_string(index=False))
    summary = table.groupby("method", sort=False).agg(
        evals_to_baseline_median=("evals_to_baseline", "median"),
        reached=("evals_to_baseline", lambda x: f"{x.notna().sum()}/{len(x)}"),
        recovered_median=("recovered_of_6", "median"),
        best_misfit_median=("best_misfit", "median"),
        evaluations_median=("evaluations", "median"),
    )
    print("\nsummary (median over seeds)\n" + summary.to_string())


if __name__ == "__main__":
    main()
