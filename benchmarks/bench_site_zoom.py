"""Sequential designs for the site emulator route on a twin with an exact posterior (issue 25, item 7).

    python benchmarks/bench_site_twin.py --config examples/site_twin_reflex/twin.toml --out /tmp/bst
    python benchmarks/bench_site_zoom.py --direct /tmp/bst/direct             # every strategy, seed 1
    python benchmarks/bench_site_zoom.py --direct /tmp/bst/direct --strategy zoom_local --seed 2

The emulator route needs its runs where the exact posterior is (``bench_site_emulator_design.py``:
100 runs at exact posterior draws give an SVD-GP emulator 0.3 nats median error there). This
benchmark asks how close each sequential design gets, within a budget of runs, on the twin's
exact posterior (``--direct``: a finished direct-route run of the same twin). It first prints how
small the posterior's region is: the fraction of uniform prior draws whose exact log-likelihood
is within 15 nats of the posterior's best (the twin's DALEC run directly, its fast path). Then,
per strategy and round: model runs so far, how many lie in that region ("slab"), the emulator's
|log L error| over exact posterior draws (median, q90), and the largest difference of the 5/50/95 %
quantiles (unit cube) between the emulated posterior sampled that round and the exact one; below
it, the model run at 300 of that posterior's draws (outside the budget, to check it): the fraction
in the region, and the held-out year's annual-NEE band against the exact posterior's.

Strategies (all start from the same Latin hypercube):

- ``refine``: the route as shipped -- each round the SVD-GP is fitted on every run, its mean's
  likelihood is sampled with emcee, and the round's runs are posterior draws.
- ``hm_series``: history matching on the whole series -- the implausibility is the Mahalanobis
  distance of the observations from the emulator's mean with the observation and the emulator's
  (low-rank) covariance, ``(D - n) / sqrt(2 n) <= 3``; each wave's runs uniform in the region not
  ruled out by any wave (:func:`~bayescal.posterior.history_matching.sample_not_ruled_out`).
- ``zoom_local``: rounds whose runs are draws of the emulator's *marginal* likelihood (its mean
  and covariance, the log-determinant included) fitted on every run; after ``--zoom-rounds`` the
  emulator is refitted on the runs within 30 nats of the best run only (a *local* emulator) and
  its mean's likelihood is sampled inside the box of those runs (padded 10 %); the later rounds'
  runs are draws of that.
- ``refine_local``: the runs of ``refine``; from round ``--zoom-rounds`` on, the posterior is
  the local emulator's (as ``zoom_local``'s), fitted on them.
- ``expected``: each round the SVD-GP is fitted on the runs within 300 nats of the best (the bad
  runs near the region included), and its *expected* log-likelihood -- the Gaussian log-likelihood
  averaged over the emulator's uncertainty, ``log L(mean) - 1/2 sum_k V_k ||c_k / sigma||^2`` -- is
  sampled; the round's runs are its draws. After the last round, the local emulator (as
  ``refine_local``'s) is also sampled where that expected log-likelihood is within 30, 60 or 100
  nats of its best over the local runs.
- ``ceiling``: no sequential design -- the rest of the budget at *exact* posterior draws, then the
  local emulator (runs within ``chi2.ppf(0.999, d)`` nats) sampled inside its box: the best an
  emulator of the good runs alone can do.

Each round's chain: 32 walkers, DE-stretch, to 50 tau between 1,500 and 6,000 steps (second half
kept). Figures depend on the seed; the chains are cheap (the emulator), the runs are the budget.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Twin:
    """The twin's model, likelihood and exact posterior (from the direct-route run)."""

    def __init__(self, config: Path, direct: Path, seed: int) -> None:
        from bayescal.operators.timeseries import SeriesLikelihood
        from bayescal.posterior import load_inference_data, unit_samples
        from bayescal.posterior.site_calibration import model_values
        from bayescal.workflows import load_config, make_context

        self.ctx = make_context(load_config(config), direct, progress=False)
        self.space, op = self.ctx.space(), self.ctx.operator("calibration")
        self.y, self.sigma = op.y, op.sigma
        self.like = SeriesLikelihood(op)  # the twin's error model: sigma alone
        self.values = model_values(self.ctx.calibration_simulator, self.space, op,
                                   arrays=self.ctx.calibration_arrays())
        idata = load_inference_data(direct / "posterior" / "posterior.nc")
        post = np.asarray(unit_samples(idata, self.space))
        self.rng = np.random.default_rng(seed)
        self.quantiles = np.quantile(post, [0.05, 0.5, 0.95], axis=0)
        order = self.rng.permutation(post.shape[0])
        self.test, self.spare = post[order[:300]], post[order[300:]]
        self.exact = self.like(self.values(self.test))
        self.band = self.annual_nee(self.test)

    def annual_nee(self, u: np.ndarray) -> np.ndarray:
        """5/50/95 % of the held-out year's annual NEE (gC m-2 y-1) over the model run at ``u``."""
        year = str(self.ctx.config["site"]["validation_years"][0])
        ds = self.ctx.model(self.space.expand(self.space.from_unit(u)))
        return np.nanquantile(ds["nee"].sel(time=year).sum("time").values, [0.05, 0.5, 0.95])

    def check_draws(self, draws: np.ndarray) -> None:
        """The model run at 300 of a round's posterior draws (not counted as the design's runs): the
        fraction whose exact log L is within 15 nats of the posterior's best, and the annual-NEE band."""
        u = draws[self.rng.choice(len(draws), 300, replace=False)]
        inside = np.mean(self.like(self.values(u)) > self.exact.max() - 15.0)
        band = self.annual_nee(u)
        off = np.abs(band - self.band).max()
        print(f"{'':<11s}  draws within 15 nats: {inside:.2f}; annual NEE 5/50/95 % "
              f"{np.round(band).tolist()} vs exact {np.round(self.band).tolist()}: off by {off:.0f}")

    def emulator(self, X: np.ndarray, Y: np.ndarray):
        from bayescal.workflows.site.stages import _emulator

        return _emulator(self.ctx).fit(X, Y)

    def chain(self, loglik, start: np.ndarray) -> np.ndarray:
        from bayescal.posterior import PosteriorSampler

        start = start[np.isfinite(loglik(start))]
        ps = PosteriorSampler(loglik, self.space, n_walkers=32, seed=int(self.rng.integers(2**31)))
        ps.run_adaptive(6000, initial=start, min_steps=1500)
        ch = ps.sampler.get_chain()
        return ch[ch.shape[0] // 2:].reshape(-1, self.space.n_free)

    def row(self, name: str, r: int, X: np.ndarray, Y: np.ndarray, em, draws: np.ndarray | None,
            t0: float) -> None:
        """One round's figures (module docstring)."""
        slab = int(np.sum(self.like(Y) > self.exact.max() - 15.0))
        err = np.abs(self.like(em.predict(self.test)) - self.exact)
        dq = "" if draws is None else \
            f"{np.abs(np.quantile(draws, [0.05, 0.5, 0.95], 0) - self.quantiles).max():.3f}"
        print(f"{name:<11s}{r:>6d}{X.shape[0]:>6d}{slab:>6d}{np.median(err):>10.2f}"
              f"{np.quantile(err, 0.9):>10.2f}{dq:>9s}{time.perf_counter() - t0:>8.0f}", flush=True)
        if draws is not None:
            self.check_draws(draws)


def component_moments(em, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each SVD component's GP mean and variance at ``u`` (points, components), in score units."""
    S, V = np.empty((u.shape[0], em.n_components_)), np.empty((u.shape[0], em.n_components_))
    for k, est in enumerate(em.estimators_):
        S[:, k], sd = est.predict(u, return_std=True)
        V[:, k] = sd**2
    return S * em.score_scale_, V * em.score_scale_**2


def mahalanobis(em, u: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(D, log det)`` of ``y - mean(u)`` under ``diag(sigma^2 + residual) + C' diag(V(u)) C``
    (Woodbury over the emulator's components; log det up to a constant)."""
    S, V = component_moments(em, np.atleast_2d(u))
    C, a = em.components_, sigma**2 + em.residual_variance_
    r = y - (em.mean_ + S @ C)
    b = (r / a) @ C.T
    inner = ((C / a) @ C.T)[None] + np.einsum("mk,kj->mkj", 1.0 / V, np.eye(C.shape[0]))
    sol = np.linalg.solve(inner, b[..., None])[..., 0]
    return (r * r / a).sum(1) - (b * sol).sum(1), np.linalg.slogdet(inner)[1] + np.log(V).sum(1)


def run_refine(tw: Twin, X, Y, rounds: int, n_new: int, t0: float, **_) -> None:
    for r in range(rounds + 1):
        ok = np.isfinite(Y).all(1)
        em = tw.emulator(X[ok], Y[ok])
        u = tw.chain(lambda v, em=em: tw.like(em.predict(v)), X[ok])
        tw.row("refine", r, X, Y, em, u, t0)
        if r < rounds:
            pick = u[tw.rng.choice(len(u), n_new, replace=False)]
            X, Y = np.vstack([X, pick]), np.vstack([Y, tw.values(pick)])


def run_hm_series(tw: Twin, X, Y, rounds: int, n_new: int, t0: float, **_) -> None:
    from bayescal.posterior.history_matching import NotRuledOut, sample_not_ruled_out

    n = tw.y.size

    class Region(NotRuledOut):
        def implausibility(self, u, wave=-1):
            return (mahalanobis(self.emulators[wave], u, tw.y, tw.sigma)[0] - n) / np.sqrt(2 * n)

        def _within(self, u, wave):
            return self.implausibility(u, wave) <= self.cutoff

    ems, samples = [], None
    for r in range(rounds + 1):
        ok = np.isfinite(Y).all(1)
        ems.append(tw.emulator(X[ok], Y[ok]))
        region = Region(list(ems), np.zeros(1), np.ones(1), 0.0, 3.0, 1)
        samples, rate, cond = sample_not_ruled_out(region, 2000, tw.rng, samples, 20000 if r == 0 else 4000)
        tw.row("hm_series", r, X, Y, ems[-1], None, t0)
        print(f"{'':<11s}  not ruled out: {rate:.3f} of the prior; exact posterior draws inside: "
              f"{region.contains(tw.test).mean():.3f}")
        if r < rounds:
            pick = samples[tw.rng.choice(len(samples), n_new, replace=False)]
            X, Y = np.vstack([X, pick]), np.vstack([Y, tw.values(pick)])


def local_posterior(tw: Twin, X: np.ndarray, Y: np.ndarray, within: float = 30.0, pad: float = 0.1):
    """The emulator of the runs within ``within`` nats of the best run (at least the best 40),
    and its mean's likelihood inside the box of those runs (padded by ``pad`` of its sides):
    :func:`bayescal.posterior.refinement.local_runs` and ``InBox``, as ``refine(run_loglik=...)``."""
    from bayescal.posterior.refinement import InBox, local_runs

    near = local_runs(tw.like(Y), X.shape[1], within, 40)
    em = tw.emulator(X[near], Y[near])
    lo, hi = X[near].min(0), X[near].max(0)
    lo, hi = np.clip(lo - pad * (hi - lo), 0, 1), np.clip(hi + pad * (hi - lo), 0, 1)
    return em, tw.chain(InBox(lambda v: tw.like(em.predict(v)), lo, hi), X[near])


def run_zoom_local(tw: Twin, X, Y, rounds: int, n_new: int, t0: float, zoom_rounds: int = 3, **_) -> None:
    for r in range(rounds + 1):
        if r < zoom_rounds:
            ok = np.isfinite(Y).all(1)
            em = tw.emulator(X[ok], Y[ok])

            def target(v, em=em):
                D, logdet = mahalanobis(em, v, tw.y, tw.sigma)
                return -0.5 * (D + logdet)
            u = tw.chain(target, X[ok])
        else:
            em, u = local_posterior(tw, X, Y)
        tw.row("zoom_local", r, X, Y, em, u, t0)
        if r < rounds:
            pick = u[tw.rng.choice(len(u), n_new, replace=False)]
            X, Y = np.vstack([X, pick]), np.vstack([Y, tw.values(pick)])


def run_refine_local(tw: Twin, X, Y, rounds: int, n_new: int, t0: float, zoom_rounds: int = 3, **_) -> None:
    for r in range(rounds + 1):
        ok = np.isfinite(Y).all(1)
        em = tw.emulator(X[ok], Y[ok])
        u = tw.chain(lambda v, em=em: tw.like(em.predict(v)), X[ok])
        if r >= zoom_rounds:  # the runs stay refine's; the posterior is the local emulator's
            em_local, u_local = local_posterior(tw, X, Y)
            tw.row("refine_loc", r, X, Y, em_local, u_local, t0)
            dq = np.abs(np.quantile(u_local, [0.05, 0.5, 0.95], 0) - tw.quantiles).max(0)
            print(f"{'':<11s}  largest quantile difference per value: {np.round(dq, 2).tolist()}")
        if r < rounds:
            pick = u[tw.rng.choice(len(u), n_new, replace=False)]
            X, Y = np.vstack([X, pick]), np.vstack([Y, tw.values(pick)])


def expected_loglik(tw: Twin, em, kappa: float = 1.0):
    """The emulator's *expected* log-likelihood, ``log L(mean) - kappa/2 sum_k V_k ||c_k / sigma||^2``:
    the mean over the emulator's uncertainty of the Gaussian log-likelihood (``V_k``: component k's
    GP variance; ``c_k``: its loadings), which drops where the emulator has not seen runs."""
    w = ((em.components_ / tw.sigma) ** 2).sum(1)

    def f(v: np.ndarray) -> np.ndarray:
        v = np.atleast_2d(v)
        return tw.like(em.predict(v)) - 0.5 * kappa * (component_moments(em, v)[1] * w).sum(1)
    return f


def run_expected(tw: Twin, X, Y, rounds: int, n_new: int, t0: float, **_) -> None:
    """Each round: the emulator of the runs within 300 nats of the best (at least 40; the bad
    runs near the region teach it where fits fail), its expected log-likelihood sampled, and
    the round's runs drawn from that posterior."""
    from bayescal.posterior.refinement import local_runs

    for r in range(rounds + 1):
        near = local_runs(tw.like(Y), X.shape[1], 300.0, 40)
        em = tw.emulator(X[near], Y[near])
        u = tw.chain(expected_loglik(tw, em), X[near])
        tw.row("expected", r, X, Y, em, u, t0)
        if r < rounds:
            pick = u[tw.rng.choice(len(u), n_new, replace=False)]
            X, Y = np.vstack([X, pick]), np.vstack([Y, tw.values(pick)])
    expected_veto(tw, X, Y, em)


def expected_veto(tw: Twin, X: np.ndarray, Y: np.ndarray, wide) -> None:
    """The local emulator sampled where the wide emulator's expected log L is within T nats of
    its best over the local runs (T = 30, 60, 100)."""
    from bayescal.posterior.refinement import local_runs

    near = local_runs(tw.like(Y), X.shape[1], 31.26, 40)
    em, fw = tw.emulator(X[near], Y[near]), expected_loglik(tw, wide)
    top = fw(X[near]).max()
    for T in (30.0, 60.0, 100.0):
        def target(v: np.ndarray, T: float = T) -> np.ndarray:
            v = np.atleast_2d(v)
            out = np.full(v.shape[0], -np.inf)
            keep = fw(v) >= top - T
            if keep.any():
                out[keep] = tw.like(em.predict(v[keep]))
            return out
        u = tw.chain(target, X[near][np.isfinite(target(X[near]))])
        dq = np.abs(np.quantile(u, [0.05, 0.5, 0.95], 0) - tw.quantiles).max()
        print(f"{'':<11s}  local emulator where the expected log L is within {T:.0f} nats: exact draws "
              f"kept {np.mean(fw(tw.test) >= top - T):.2f}, largest quantile difference {dq:.3f}")
        tw.check_draws(u)


def run_ceiling(tw: Twin, X, Y, rounds: int, n_new: int, t0: float, **_) -> None:
    """The best a design could do: the Latin hypercube plus the rest of the budget at *exact*
    posterior draws, then the local emulator as ``local_posterior`` (one row)."""
    pick = tw.spare[tw.rng.choice(len(tw.spare), rounds * n_new, replace=False)]
    X, Y = np.vstack([X, pick]), np.vstack([Y, tw.values(pick)])
    em, u = local_posterior(tw, X, Y, within=31.26)
    tw.row("ceiling", 0, X, Y, em, u, t0)


STRATEGIES = {"refine": run_refine, "hm_series": run_hm_series, "zoom_local": run_zoom_local,
              "refine_local": run_refine_local, "expected": run_expected, "ceiling": run_ceiling}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_twin_reflex" / "twin.toml")
    ap.add_argument("--direct", type=Path, required=True, help="a finished direct-route run of the twin")
    ap.add_argument("--strategy", choices=sorted(STRATEGIES), nargs="+", default=list(STRATEGIES))
    ap.add_argument("--design", type=int, default=60, help="Latin hypercube runs")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--zoom-rounds", type=int, default=3, help="zoom_local: rounds before the local emulator")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--uniform", type=int, default=20000, help="prior draws for the region's size")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # the chains' length warnings: each round's chain is capped on purpose
    from bayescal.parameters.design import latin_hypercube

    tw = Twin(args.config, args.direct, args.seed)
    u = np.random.default_rng(args.seed).random((args.uniform, tw.space.n_free))
    ll = np.concatenate([tw.like(tw.values(u[i:i + 2000])) for i in range(0, len(u), 2000)])
    best = tw.exact.max()
    print(f"{args.config.name}: {tw.space.n_free} values, {tw.y.size} observed values; exact log L over the "
          f"posterior {tw.exact.min():.1f} .. {best:.1f}")
    print("uniform prior draws with log L within 15 / 30 / 100 nats of the posterior's best: "
          + " / ".join(f"{np.mean(ll > best - t):.4f}" for t in (15, 30, 100))
          + f" ({args.uniform} draws, {np.mean(~np.isfinite(ll)):.3f} failed)")
    X = tw.space.to_unit(latin_hypercube(tw.space, args.design, seed=args.seed).values)
    Y = tw.values(X)
    n_new = 40 if args.design <= 60 else 30
    print(f"{'strategy':<11s}{'round':>6s}{'runs':>6s}{'slab':>6s}{'err med':>10s}{'err q90':>10s}"
          f"{'max dq':>9s}{'s':>8s}   (slab: runs within 15 nats; err: |log L| error over exact draws)")
    for name in args.strategy:
        STRATEGIES[name](tw, X.copy(), Y.copy(), args.rounds, n_new, time.perf_counter(),
                         zoom_rounds=args.zoom_rounds)


if __name__ == "__main__":
    main()
