"""Model runs for an accurate posterior: bayescal's emulator + acquisition, PyVBMC and direct emcee.

    python benchmarks/bench_posterior_efficiency.py [--problems A B C] [--seeds 3] [--quick]

Needs the peer: ``pip install ".[bench]"`` (PyVBMC); without it the PyVBMC rows are skipped.

Problems (all with uniform priors on the unit cube):

A. linear-Gaussian, 4 parameters, 12 outputs, sigma 0.1: the posterior is analytic.
B. nonlinear, 6 parameters, 6 outputs: a curved (banana) ridge in (x0, x1), two well
   identified parameters and two weakly identified ones (x4 + x5 observed with sigma 0.4, x4 -
   x5 with sigma 0.6, against a prior range of 2): the reference is a long emcee run
   (64 walkers x 30,000 steps after burn-in) on the exact likelihood.
C. the embedded-model twin of ``bench_emulator_vs_direct.py`` (24 cells, 2000-2010, four
   parameters, 2 % noise): the reference is emcee on the model, 32 walkers x 3,000 steps.

Error = max over parameters of max(|mean - mean_ref| / sd_ref, |sd / sd_ref - 1|).

Methods, each counting model runs (one run = one evaluation of the model's outputs):

* bayescal: a 20-point Latin hypercube, an SVD emulator of the outputs with GP components
  (truncation <= 0.1 sigma), ``GaussianLikelihood`` and :func:`bayescal.posterior.refinement.refine`
  (10 new runs per round chosen by acquisition), run to ``max_rounds`` without stopping; the
  error of every round's posterior is read from ``history``, and the round where the default
  stopping rule fires is marked.
* PyVBMC (Acerbi 2018/2020; default options, plausible box [0.05, 0.95]): the log-joint from
  the exact model; the error after each iteration is that of its variational posterior
  (moments of 10^5 samples), against its running count of function evaluations.
* emcee directly on the exact likelihood (32 walkers, bayescal's default moves): the error of
  the second half of the chain after k steps.

For each method and seed it prints the runs needed to reach error <= 0.3 and <= 0.1 (the first
time the error gets there and stays there for the rest of that method's run) and the best error
with at most 1,000 runs, with the wall time; then the median over seeds.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.stats import qmc

from bayescal.emulators import SVDEmulator
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.posterior import GaussianLikelihood, PosteriorSampler, PosteriorWarning
from bayescal.posterior.refinement import refine

BUDGET = 1000


# ------------------------------------------------------------------------------------ problems
class Problem:
    """Unit cube -> outputs, counting runs; ``observed``, ``sigma``, reference mean and sd."""

    def __init__(self, name, d, f, observed, sigma, ref_mean=None, ref_sd=None):
        self.name, self.d, self.f = name, d, f
        self.observed, self.sigma = np.asarray(observed, float), np.asarray(sigma, float)
        self.ref_mean, self.ref_sd = ref_mean, ref_sd
        self.space = ParameterSpace([Parameter(f"x{i}", 0.5, 0.0, 1.0) for i in range(d)])
        self.runs = 0

    def __call__(self, u):
        u = np.atleast_2d(u)
        self.runs += u.shape[0]
        return self.f(u)

    def loglike(self, u):
        y = self(u)
        ll = -0.5 * (((self.observed - y) / self.sigma) ** 2).sum(1)
        return np.where(np.isfinite(ll), ll, -np.inf)

    def error(self, mean, sd):
        return float(max(np.max(np.abs(mean - self.ref_mean) / self.ref_sd),
                         np.max(np.abs(sd / self.ref_sd - 1))))


def problem_a() -> Problem:
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 4))
    sigma = 0.1
    y = A @ np.array([0.35, 0.5, 0.6, 0.45]) + sigma * rng.normal(size=12)
    cov = sigma**2 * np.linalg.inv(A.T @ A)
    return Problem("A linear-Gaussian d=4", 4, lambda u: u @ A.T, y, sigma,
                   cov @ A.T @ y / sigma**2, np.sqrt(np.diag(cov)))


def _banana(u):
    x = 2 * u - 1
    return np.column_stack([x[:, 1] - x[:, 0] ** 2, x[:, 0], x[:, 2] + 0.5 * x[:, 3],
                            x[:, 3] - 0.3 * x[:, 2], x[:, 4] + x[:, 5], x[:, 4] - x[:, 5]])


def problem_b(quick: bool) -> Problem:
    sigma = np.array([0.05, 0.3, 0.05, 0.05, 0.4, 0.6])
    truth = (np.array([0.3, 0.2, -0.2, 0.1, 0.3, -0.2]) + 1) / 2
    y = _banana(truth[None])[0] + sigma * np.random.default_rng(1).normal(size=6)
    p = Problem("B banana + weak d=6", 6, _banana, y, sigma)
    steps = 6000 if quick else 30000
    ps = PosteriorSampler(lambda u: p.loglike(u), p.space, n_walkers=64, seed=99).run(steps)
    ch = ps.sampler.get_chain(discard=steps // 5, flat=True)
    p.ref_mean, p.ref_sd, p.runs = ch.mean(0), ch.std(0), 0
    return p


def problem_c(quick: bool) -> Problem:
    from bench_emulator_vs_direct import FREE, TRUTH, Counted

    from bayescal.models import LandCarbonModel, make_drivers, make_grid

    grid = make_grid(n_cells=24, seed=3)
    model = LandCarbonModel(grid=grid, drivers=make_drivers(grid, start=2000, end=2010, ramp_start=1995,
                                                            seed=3))
    sim = Counted(model, model.space.only(FREE))
    truth_y = sim(TRUTH[None])[0]
    sigma = 0.02 * np.abs(truth_y)
    observed = truth_y + np.random.default_rng(7).normal(0, sigma)
    p = Problem("C embedded-model twin d=4", 4, sim, observed, sigma)
    steps = 600 if quick else 3000
    ps = PosteriorSampler(lambda u: p.loglike(u), p.space, n_walkers=32, seed=101).run(steps)
    ch = ps.sampler.get_chain(discard=steps // 3, flat=True)
    p.ref_mean, p.ref_sd, p.runs = ch.mean(0), ch.std(0), 0
    return p


# ------------------------------------------------------------------------------------- methods
def runs_to(curve: list[tuple[int, float]], target: float) -> int | None:
    """First run count from which the error stays <= target (None: never within the run)."""
    runs, err = np.array([c[0] for c in curve]), np.array([c[1] for c in curve])
    above = np.flatnonzero(err > target)
    if above.size and above[-1] == err.size - 1:
        return None
    return int(runs[above[-1] + 1]) if above.size else int(runs[0])


def run_bayescal(p: Problem, seed: int, max_rounds: int):
    p.runs = 0
    X0 = qmc.LatinHypercube(p.d, seed=seed).random(20)
    Y0 = p(X0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorWarning)
        res = refine(p, SVDEmulator(residual_sd=0.1 * p.sigma), X0, Y0,
                     lambda e: GaussianLikelihood(e, p.observed, p.sigma), p.space, n_new=10,
                     max_rounds=max_rounds, tol=-1.0, seed=seed)
    h = res.history
    curve = [(int(h.n_train[r]), p.error(h["mean"][r].values, h["sd"][r].values)) for r in h["round"].values]
    # where the default stopping rule (tol 0.05, sd_loglik_max 0.3) would have stopped
    stop = next((int(h.n_train[r]) for r in h["round"].values[1:]
                 if h.mean_shift[r] < 0.05 and h.sd_change[r] < 0.05 and h.sd_loglik_q90[r] < 0.3), None)
    return curve, stop


def run_vbmc(p: Problem, seed: int):
    from pyvbmc import VBMC

    p.runs = 0
    np.random.seed(seed)  # PyVBMC draws from numpy's global generator  # noqa: NPY002
    lb, ub = np.zeros((1, p.d)), np.ones((1, p.d))
    x0 = np.full((1, p.d), 0.5)
    vbmc = VBMC(lambda x: float(p.loglike(np.asarray(x).reshape(1, -1))[0]), x0, lb, ub,
                lb + 0.05, ub - 0.05, options={"display": "off", "max_fun_evals": BUDGET})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vbmc.optimize()
    hist = vbmc.iteration_history
    curve = []
    for vp, n in zip(hist["vp"], hist["func_count"], strict=True):
        if vp is None:
            continue
        s = vp.sample(100000)[0]
        curve.append((int(n), p.error(s.mean(0), s.std(0))))
    return curve


def run_direct(p: Problem, seed: int, n_steps: int):
    p.runs = 0
    ps = PosteriorSampler(lambda u: p.loglike(u), p.space, n_walkers=32, seed=seed).run(n_steps)
    ch = ps.sampler.get_chain()
    per_step = p.runs / n_steps
    ks = np.unique(np.geomspace(10, n_steps, 60).astype(int))
    return [(int(per_step * k), p.error(ch[k // 2:k].reshape(-1, p.d).mean(0),
                                        ch[k // 2:k].reshape(-1, p.d).std(0))) for k in ks]


# ---------------------------------------------------------------------------------------- main
def summarise(name: str, curve, wall: float, extra: str = "") -> dict:
    r3, r1 = runs_to(curve, 0.3), runs_to(curve, 0.1)
    within = [e for n, e in curve if n <= BUDGET]
    best = min(within) if within else float("nan")
    print(f"  {name:9s} runs to <=0.3: {str(r3):>6}  to <=0.1: {str(r1):>6}  best error within "
          f"{BUDGET} runs: {best:.3f}  final: {curve[-1][1]:.3f} at {curve[-1][0]} runs  "
          f"({wall:.0f} s){extra}")
    return {"r3": r3, "r1": r1, "best": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["A", "B", "C"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="shorter references and runs (rough figures)")
    args = ap.parse_args()
    try:
        import pyvbmc  # noqa: F401

        have_vbmc = True
    except ImportError:
        have_vbmc = False
        print("PyVBMC is not installed (pip install '.[bench]'): its rows are skipped")
    makers = {"A": problem_a, "B": lambda: problem_b(args.quick), "C": lambda: problem_c(args.quick)}
    for key in args.problems:
        t0 = time.perf_counter()
        p = makers[key]()
        print(f"\n{p.name}: reference ready ({time.perf_counter() - t0:.0f} s); sd_ref "
              f"{np.round(p.ref_sd, 3)}")
        table: dict[str, list[dict]] = {"bayescal": [], "PyVBMC": [], "emcee": []}
        for seed in range(args.seeds):
            print(f" seed {seed}")
            t0 = time.perf_counter()
            curve, stop = run_bayescal(p, seed, 4 if args.quick else 12)
            table["bayescal"].append(summarise("bayescal", curve, time.perf_counter() - t0,
                                               f"  stop rule fires at {stop} runs"))
            if have_vbmc:
                t0 = time.perf_counter()
                table["PyVBMC"].append(summarise("PyVBMC", run_vbmc(p, seed), time.perf_counter() - t0))
            t0 = time.perf_counter()
            steps = 1000 if args.quick or key == "C" else 4000
            curve = run_direct(p, 100 + seed, steps)
            table["emcee"].append(summarise("emcee", curve, time.perf_counter() - t0))
        print(f" median over {args.seeds} seeds (None = not reached):")
        for name, rows in table.items():
            if not rows:
                continue

            def med(k, rows=rows):
                v = [r[k] for r in rows]
                return "None" if any(x is None for x in v) else f"{np.median(v):.0f}"

            print(f"  {name:9s} runs to <=0.3: {med('r3'):>6}  to <=0.1: {med('r1'):>6}  best error "
                  f"within {BUDGET} runs: {np.median([r['best'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
