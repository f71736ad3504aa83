"""Simulator runs for one posterior: emulator + refinement against emcee directly on the model.

    python benchmarks/bench_emulator_vs_direct.py [--quick]

The problem is a twin on a small embedded model: 24 cells, 2000-2010, spin-up and a ramp from
1995; four free parameters (vmax[NDL-EVG], vmax[GRASS-C3], kn[BDL-EVG], gamma_w). The
observations are the 2000-2010 mean GPP, LAI and latent heat of each biome and the annual
global GPP of a "true" parameter set, with 2 % Gaussian noise. There is one Gaussian
likelihood and the priors are uniform.

1. Reference posterior: emcee run directly on the model, long (32 walkers x 3,000 steps).
2. Emulator route: a 40-point Latin hypercube, an SVD emulator with GP components, and
   ``bayescal.posterior.refinement.refine`` with 20 new runs per round, for 0 to 8 rounds. The error of
   its posterior against the reference is the largest, over the parameters, of
   |mean - mean_ref| / sd_ref and |sd / sd_ref - 1|.
3. Direct route: a second emcee run on the model (another seed, started from the same 40
   design points). After k steps its error is measured on the second half of its chain, and it
   has used 40 + (walker evaluations) runs. For each refinement round, the benchmark finds the
   fewest runs after which the direct chain's error falls to that round's error and stays
   there.

It prints, per round, both run counts and their ratio, and marks the round where refine's
default criterion (tol = 0.1) would stop. ``--quick`` uses a shorter reference, a shorter
direct run and 3 rounds (a smoke test; its figures are rough).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bayescal.emulators import SVDEmulator
from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.parameters.design import latin_hypercube
from bayescal.posterior import (
    GaussianLikelihood,
    PosteriorSampler,
    PosteriorWarning,
    unit_samples,
)
from bayescal.posterior.refinement import refine

FREE = ["vmax[NDL-EVG]", "vmax[GRASS-C3]", "kn[BDL-EVG]", "gamma_w"]
TRUTH = np.array([0.35, 0.6, 0.45, 0.55])
N_DESIGN, N_NEW, N_WALKERS = 40, 20, 32


class Counted:
    """The model as unit cube -> outputs (NaN rows for failed members), counting runs.

    Outputs: the 2000-2010 mean GPP, LAI and latent heat of each biome (area-weighted over its
    cells) and the annual global GPP.
    """

    def __init__(self, model: LandCarbonModel, space) -> None:
        self.model, self.space, self.runs = model, space, 0
        biome = model.grid["biome"].to_numpy()
        area = model.grid["area"].to_numpy()
        names = np.unique(biome)
        w = (biome[:, None] == names[None, :]) * area[:, None]
        self.weight = w / w.sum(0)  # (cell, biome)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u)
        self.runs += u.shape[0]
        ds = self.model.simulate(self.space.expand(self.space.from_unit(u)),
                                 variables=["gpp", "lai", "hfls"])
        by_biome = [ds[v].mean("time").values @ self.weight for v in ("gpp", "lai", "hfls")]
        y = np.hstack([by_biome[0] * 86400 * 365 * 1e3, *by_biome[1:], ds.gpp_global.values])
        y[(ds.status.values != "done")] = np.nan
        return y


def direct_likelihood(sim: Counted, observed: np.ndarray, sigma: np.ndarray):
    exact = GaussianLikelihood(lambda u: np.nan_to_num(sim(u), nan=1e6), observed, sigma,
                               emulator_variance=False)

    def loglike(u: np.ndarray) -> np.ndarray:
        ll = exact(u)
        return np.where(ll < -1e9, -np.inf, ll)  # failed members: zero likelihood

    return loglike


def error(samples: np.ndarray, ref_mean: np.ndarray, ref_sd: np.ndarray) -> float:
    mean, sd = samples.mean(0), samples.std(0)
    return float(max(np.max(np.abs(mean - ref_mean) / ref_sd), np.max(np.abs(sd / ref_sd - 1))))


def run_direct(sim: Counted, observed, sigma, space, design, n_steps: int, seed: int):
    """emcee directly on the model; returns the chain (steps, walkers, d) and runs per step."""
    sim.runs = 0
    ps = PosteriorSampler(direct_likelihood(sim, observed, sigma), space, n_walkers=N_WALKERS, seed=seed)
    ps.run(n_steps, initial=design)
    chain = ps.sampler.get_chain()
    return chain, sim.runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    ref_steps, direct_steps = (600, 400) if args.quick else (3000, 2000)
    max_rounds = 3 if args.quick else 8

    grid = make_grid(n_cells=24, seed=3)
    drivers = make_drivers(grid, start=2000, end=2010, ramp_start=1995, seed=3)
    model = LandCarbonModel(grid=grid, drivers=drivers)
    space = model.space.only(FREE)
    sim = Counted(model, space)
    truth_y = sim(TRUTH[None])[0]
    sigma = 0.02 * np.abs(truth_y)
    observed = truth_y + np.random.default_rng(7).normal(0, sigma)
    design = latin_hypercube(space, N_DESIGN, seed=1).values
    design_u = space.to_unit(design)

    t0 = time.perf_counter()
    chain, _ = run_direct(sim, observed, sigma, space, design_u, ref_steps, seed=101)
    ref = chain[ref_steps // 3:].reshape(-1, len(FREE))
    ref_mean, ref_sd = ref.mean(0), ref.std(0)
    print(f"reference: emcee on the model, {N_WALKERS} walkers x {ref_steps} steps "
          f"({time.perf_counter() - t0:.0f} s)")
    print("  posterior mean (unit cube):", np.round(ref_mean, 3), " sd:", np.round(ref_sd, 3),
          " truth:", TRUTH)

    # ---------------------------------------------------------------- emulator + refinement
    # refine() with tol=0 never stops early: calling it with max_rounds = r gives the posterior
    # after r rounds (same seed, so the same rounds); the default tol marks where refine stops
    Y = sim(design_u)
    ok = np.isfinite(Y).all(1)
    rounds = []
    t0 = time.perf_counter()
    for r in range(max_rounds + 1):
        sim.runs = N_DESIGN
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PosteriorWarning)
            res = refine(sim, SVDEmulator(random_state=0), design_u[ok], Y[ok],
                         lambda em: GaussianLikelihood(em, observed, sigma), space, n_new=N_NEW,
                         max_rounds=r, tol=-1.0, min_steps=2000, n_walkers=N_WALKERS, seed=3)
        hist = res.history
        stop = bool(r > 0 and hist.mean_shift.values[-1] < 0.1 and hist.sd_change.values[-1] < 0.2)
        u_emu = unit_samples(res.idata, space).values
        rounds.append((r, sim.runs, error(u_emu, ref_mean, ref_sd), stop))
    print(f"emulator + refinement ({time.perf_counter() - t0:.0f} s for all rounds); after the last "
          f"round, (mean - mean_ref) / sd_ref: {np.round((u_emu.mean(0) - ref_mean) / ref_sd, 2)}, "
          f"sd / sd_ref: {np.round(u_emu.std(0) / ref_sd, 2)}")

    # ---------------------------------------------------------------- direct, same accuracy
    t0 = time.perf_counter()
    chain, runs = run_direct(sim, observed, sigma, space, design_u, direct_steps, seed=202)
    runs_per_step = (runs - N_DESIGN) / direct_steps
    ks = np.arange(10, direct_steps + 1, 10)
    es = np.array([error(chain[k // 2:k].reshape(-1, len(FREE)), ref_mean, ref_sd) for k in ks])
    print(f"direct emcee: {runs} model runs for {direct_steps} steps ({time.perf_counter() - t0:.0f} s); "
          f"error after {direct_steps // 4} / {direct_steps // 2} / {direct_steps} steps: "
          + " / ".join(f"{es[ks == k][0]:.3f}" for k in (direct_steps // 4, direct_steps // 2, direct_steps)))

    def direct_runs_to(err: float) -> int | None:
        """Fewest runs after which the direct chain's error is <= err and stays there."""
        above = np.flatnonzero(es > err)
        if above.size and above[-1] == es.size - 1:
            return None
        k = int(ks[above[-1] + 1]) if above.size else int(ks[0])
        return int(N_DESIGN + runs_per_step * k)

    print()
    print("round | model runs (emulator) | error | refine would stop | direct runs, same error | ratio")
    for r, n, err, stop in rounds:
        d = direct_runs_to(err)
        ratio = f"{d / n:.0f}" if d is not None else f"> {runs / n:.0f}"
        print(f"{r:5d} | {n:21d} | {err:5.3f} | {'yes' if stop else '':17s} | "
              f"{d if d is not None else f'> {runs}':>22} | {ratio}")

if __name__ == "__main__":
    main()
