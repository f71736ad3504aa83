"""Posterior sampling on the GP emulator: log-probability throughput, time to ESS, move choice.

    python benchmarks/bench_posterior.py

1. A GP emulator fitted at n = 1,530 (synthetic misfit of 20 or 165 parameters, 15 active);
   log-probability evaluations per second of the vectorised ScoreLikelihood (mean + sd) for a
   batch of walkers, at d = 20 and d = 165.
2. Wall time until every parameter has bulk ESS >= 1,000 at d = 20 (target <= 5 minutes).
3. Moves: emcee's default stretch move, the old DE / DE-snooker mix and the DE / stretch mix
   bayescal uses, on a narrow curved ridge (a * b = 1, 2 parameters) and on a 20-d correlated
   Gaussian: ESS per 1,000 log-probability evaluations (higher is better).
"""

from __future__ import annotations

import time
import warnings

import arviz as az
import emcee
import numpy as np

from bayescal.emulators import GPEmulator
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.posterior import (
    GaussianLikelihood,
    PosteriorSampler,
    PosteriorWarning,
    ScoreLikelihood,
    diagnose,
)


def space_of(d: int) -> ParameterSpace:
    return ParameterSpace([Parameter(f"p{i}", 0.5, 0.0, 1.0) for i in range(d)])


def misfit(u: np.ndarray) -> np.ndarray:
    d = u.shape[1]
    w = np.zeros(d)
    w[:15] = np.linspace(3.0, 0.5, 15)
    return ((u - 0.45) ** 2 * w).sum(1) + 0.3 * np.sin(3 * u[:, 0]) * u[:, 1]


def emulator(d: int, n: int = 1530) -> GPEmulator:
    X = np.random.default_rng(0).random((n, d))
    return GPEmulator(random_state=0).fit(X, misfit(X))


def throughput(d: int) -> tuple[float, GPEmulator]:
    gp = emulator(d)
    like = ScoreLikelihood(gp, 0.02)
    u = np.random.default_rng(1).random((2 * d + 2, d))
    like(u)
    t0 = time.perf_counter()
    reps = 50
    for _ in range(reps):
        like(u)
    return reps * u.shape[0] / (time.perf_counter() - t0), gp


def time_to_ess(gp: GPEmulator, target: float = 1000.0) -> tuple[float, int, float]:
    d = gp.n_features_in_
    ps = PosteriorSampler(ScoreLikelihood(gp, 0.02), space_of(d), seed=0)
    t0 = time.perf_counter()
    steps = 500
    while True:
        ps.run(steps, initial=gp.X_train_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PosteriorWarning)
            idata = ps.to_inference_data()
            ess = float(diagnose(idata, ess_min=0).ess_bulk.min())
        if ess >= target or steps >= 40_000:
            return time.perf_counter() - t0, steps, ess
        steps = int(steps * 1.5)


def ess_per_eval(log_like, space: ParameterSpace, moves, steps: int) -> float:
    ps = PosteriorSampler(log_like, space, moves=moves, seed=2)
    ps.run(steps)
    chain = ps.sampler.get_chain(discard=steps // 4)
    ess = float(az.ess(az.convert_to_dataset(np.swapaxes(chain, 0, 1))).to_array().min())
    return 1000 * ess / (chain.shape[0] * chain.shape[1])


def main() -> None:
    for d in (20, 165):
        rate, gp = throughput(d)
        print(f"d = {d:3d}, n = 1,530: {rate:,.0f} log-probability evaluations/s (mean + sd)")
        if d == 20:
            gp20 = gp
    wall, steps, ess = time_to_ess(gp20)
    print(
        f"d = 20: min bulk ESS {ess:,.0f} after {steps} steps x {2 * 20 + 2} walkers in {wall:.0f} s "
        "(target ESS >= 1,000 in <= 300 s)"
    )

    ridge = ParameterSpace([Parameter("a", 1.0, 0.5, 2.0), Parameter("b", 1.0, 0.5, 2.0)])

    def ab(u):
        x = ridge.from_unit(u)
        return (x[:, 0] * x[:, 1])[:, None]

    rng = np.random.default_rng(3)
    A = rng.normal(size=(20, 20)) @ np.diag(np.linspace(0.2, 3, 20))
    gauss = GaussianLikelihood(lambda u: u @ A.T, A @ np.full(20, 0.5), 0.02)
    problems = [
        ("ridge a*b = 1 (d = 2)", GaussianLikelihood(ab, [1.0], 0.01), ridge, 3000),
        ("correlated Gaussian (d = 20)", gauss, space_of(20), 6000),
    ]
    moves = {
        "stretch (emcee default)": [(emcee.moves.StretchMove(), 1.0)],
        "DE 0.8 + snooker 0.2 (old)": [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)],
        "DE 0.8 + stretch 0.2 (bayescal)": None,
    }
    print("\nmin ESS per 1,000 evaluations")
    for name, like, space, steps in problems:
        for mname, mv in moves.items():
            print(f"  {name:30s} {mname:33s} {ess_per_eval(like, space, mv, steps):6.1f}")


if __name__ == "__main__":
    main()
