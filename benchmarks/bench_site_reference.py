"""An exact posterior of a site twin that holds every part of it, and finished runs against it.

    python benchmarks/bench_site_reference.py --config examples/site_twin_reflex/twin_live.toml \\
        --save /tmp/twin_live_reference.nc --compare /tmp/bst_live/direct /tmp/bst_live/emulator
    python benchmarks/bench_site_reference.py --reference /tmp/twin_live_reference.nc --compare RUN ...
    python benchmarks/bench_site_reference.py --reference /tmp/twin_live_reference.nc --ceiling 280 20

The living REFLEX-shaped twin's posterior has two parts: the main one and an arm (p8 low where
p9 is high) that an emcee chain started at the maximum-likelihood point never reaches (docs/site-studies.md).
The reference here does not start anywhere in particular. Per seed (``--seeds``): a tempered SMC
from the prior (:func:`bayescal.posterior.smc.tempered_smc`, ``--particles`` particles, 25 accepted
moves per particle and temperature), then an exact emcee chain on the model (64 walkers started at
SMC particles; an :class:`~bayescal.posterior.IndependenceMove` fitted to the particles, 1:1 with
:class:`~bayescal.posterior.DESubspaceMove`: it proposes across the parts, so the chain corrects the
SMC's share of each), ``--steps`` steps. Printed per seed: the SMC's temperatures and model runs,
the share of ``--region`` in the particles and in each fifth of the chain, the chain's largest τ and
steps / τ; then the largest 5/50/95 % quantile difference between the seeds' chains (their
agreement is the reference's error), and each ``--compare`` run against the pooled chains (their
last four fifths): the largest quantile difference per value and the held-out year's annual-NEE
band (the model at 300 draws).

``--ceiling N_REF N_LHS`` asks what the emulator route could reach with an ideal design: the route's
SVD-GP fitted on ``N_LHS`` Latin-hypercube runs and ``N_REF`` runs at reference draws, sampled by
SMC with the emulator mean's log L (the route's target) and with the expected log L (averaged over
the emulator's predictive sd), each against the reference.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_twin_reflex" / "twin_live.toml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--particles", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--region", default="p8<0.6 p9>0.8", help="a part of the posterior to count (unit cube)")
    ap.add_argument("--save", type=Path, help="save the pooled reference draws here (netCDF)")
    ap.add_argument("--reference", type=Path, help="reference draws saved by --save: no model runs")
    ap.add_argument("--compare", type=Path, nargs="*", default=[], help="finished runs of the config")
    ap.add_argument("--emulator-error", type=Path, nargs="*", default=[],
                    help="finished emulator-route runs: their final emulator's log L against the exact one "
                         "at 600 reference draws, in the region and outside it")
    ap.add_argument("--ceiling", type=int, nargs=2, metavar=("N_REF", "N_LHS"),
                    help="the route's emulator fitted on N_LHS Latin-hypercube runs and N_REF runs at "
                         "reference draws (an ideal design), its posterior sampled (SMC) with the mean's "
                         "log L and the expected log L, against the reference; once per --seeds")
    ap.add_argument("--restarts", type=int, default=0, help="--ceiling: the GPs' optimiser restarts "
                    "(emulator.n_restarts; the route's default 0)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from bayescal.workflows import load_config, make_context

    ctx = make_context(load_config(args.config), Path("/tmp") / "bench_site_reference", progress=False)
    space = ctx.space()
    region = _region(args.region, space.labels)
    if args.reference is not None:
        ref = xr.load_dataarray(args.reference).values
    else:
        chains = [_reference_chain(ctx, space, seed, args.particles, args.steps, region)
                  for seed in args.seeds]
        q = [np.quantile(c, [0.05, 0.5, 0.95], 0) for c in chains]
        if len(q) > 1:
            agree = np.max([np.abs(a - q[0]).max(0) for a in q[1:]], axis=0)
            print("largest quantile difference between the seeds' chains: "
                  + ", ".join(f"{k} {x:.3f}" for k, x in zip(space.labels, agree, strict=True)))
        ref = np.vstack(chains)
        if args.save is not None:
            xr.DataArray(ref, dims=("draw", "parameter"), coords={"parameter": space.labels},
                         name="u", attrs={"config": str(args.config), "seeds": str(args.seeds)}
                         ).to_netcdf(args.save, engine="h5netcdf")
    print(f"reference: {len(ref)} draws, {region(ref).mean():.3f} in {args.region}")
    _compare(ctx, space, ref, args.compare, np.random.default_rng(7))
    for run in args.emulator_error:
        _emulator_error(ctx, space, ref, run, region, np.random.default_rng(0))
    for seed in args.seeds if args.ceiling else []:
        _ceiling(ctx, space, ref, *args.ceiling, seed, region, args.restarts)


def _region(text: str, labels: list[str]):
    """``"p8<0.6 p9>0.8"`` -> the indicator of that box of the unit cube."""
    terms = []
    for t in text.split():
        op = "<" if "<" in t else ">"
        name, value = t.split(op)
        terms.append((labels.index(name), op, float(value)))
    return lambda u: np.all([(u[..., i] < v) if op == "<" else (u[..., i] > v) for i, op, v in terms], axis=0)


def _exact(ctx, space):
    """The twin's likelihood (observation errors alone) and its model's calibration values."""
    from bayescal.operators.timeseries import SeriesLikelihood
    from bayescal.posterior.site_calibration import model_values

    op = ctx.operator("calibration")
    return SeriesLikelihood(op), model_values(ctx.calibration_simulator, space, op,
                                              arrays=ctx.calibration_arrays())


def _reference_chain(ctx, space, seed: int, particles: int, steps: int, region) -> np.ndarray:
    """Tempered SMC, then the exact chain with an independence proposal fitted to the particles;
    returns the chain's last four fifths (draws, d)."""
    from bayescal.posterior import DESubspaceMove, IndependenceMove, PosteriorSampler
    from bayescal.posterior.smc import tempered_smc

    like, values = _exact(ctx, space)
    t0 = time.perf_counter()
    smc = tempered_smc(lambda u: like(values(u)), space, n_particles=particles, n_moves=25, seed=seed)
    print(f"seed {seed}: SMC {len(smc.betas)} temperatures, {smc.n_evaluations:,d} model runs, "
          f"{time.perf_counter() - t0:.0f} s; {region(smc.particles).mean():.3f} of the particles in the "
          "region")
    q = IndependenceMove(seed=seed).fit(smc.particles)
    ps = PosteriorSampler(lambda u: like(values(u)), space, n_walkers=64, seed=seed,
                          moves=[(q, 0.5), (DESubspaceMove(), 0.5)])
    ps.run(steps, initial=smc.walkers(64, seed))
    chain = ps.sampler.get_chain()
    n = chain.shape[0]
    shares = [region(chain[k * n // 5:(k + 1) * n // 5]).mean() for k in range(5)]
    tau = np.nanmax(ps.autocorr_time())
    print(f"  chain 64 x {steps}: share in the region per fifth {np.round(shares, 3).tolist()}; max tau "
          f"{tau:.0f} ({steps / tau:.0f} tau); {time.perf_counter() - t0:.0f} s in all")
    return chain[n // 5:].reshape(-1, space.n_free)


def _compare(ctx, space, ref: np.ndarray, runs: list[Path], rng: np.random.Generator) -> None:
    """Each run's posterior against the reference: the largest 5/50/95 % quantile difference per
    value, and the held-out year's annual-NEE band (the model at 300 draws each)."""
    from bayescal.posterior import load_inference_data, unit_samples

    year = str(ctx.config["site"]["validation_years"][0])
    q_ref, b_ref = np.quantile(ref, [0.05, 0.5, 0.95], 0), _band(ctx, space, ref, rng)
    print(f"reference: {year} annual NEE 5/50/95 % {np.round(b_ref).tolist()}")
    for run in runs:
        u = np.asarray(unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), space))
        dq, b = np.abs(np.quantile(u, [0.05, 0.5, 0.95], 0) - q_ref).max(0), _band(ctx, space, u, rng)
        print(f"{run}: largest quantile difference {dq.max():.3f} ("
              + ", ".join(f"{k} {x:.2f}" for k, x in zip(space.labels, dq, strict=True))
              + f"); annual NEE {np.round(b).tolist()}, {np.abs(b - b_ref).max():.0f} off")


def _emulator_error(ctx, space, ref: np.ndarray, run: Path, region, rng: np.random.Generator) -> None:
    """The run's final output emulator (posterior/output_emulator.nc): its mean's log L minus the
    model's at 600 reference draws, quantiles in and outside the region."""
    from bayescal.emulators import SVDEmulator

    like, values = _exact(ctx, space)
    u = ref[rng.choice(len(ref), 600, replace=False)]
    err = like(SVDEmulator.load(run / "posterior" / "output_emulator.nc").predict(u)) - like(values(u))
    inside = region(u)
    for name, k in (("in the region", inside), ("outside it", ~inside)):
        q = np.round(np.quantile(err[k], [0.1, 0.5, 0.9]), 1).tolist()
        print(f"{run}: emulator log L - exact at {k.sum()} reference draws {name}: q10/q50/q90 {q} nats")


def _ceiling(ctx, space, ref: np.ndarray, n_ref: int, n_lhs: int, seed: int, region, restarts: int) -> None:
    """The site route's emulator (its SVD-GP, seeded ``seed``) fitted on an ideal design: ``n_lhs``
    Latin-hypercube runs and ``n_ref`` runs at reference draws. Printed: its log-L error at 600 other
    reference draws, then per target -- the emulator mean's log L (the route's) and the expected
    log L ``log L(mean) - 1/2 sum_i sd_i^2 / tau_i^2`` (the Gaussian log L averaged over the
    emulator's predictive sd, which falls where it has no runs) -- a tempered SMC's 2,000 particles
    against the reference: the region's share, the largest quantile difference, the held-out band
    and the exact log L at 300 of the particles."""
    from bayescal.emulators import GPEmulator, SVDEmulator
    from bayescal.parameters.design import latin_hypercube
    from bayescal.posterior.smc import tempered_smc

    op, rng = ctx.operator("calibration"), np.random.default_rng(seed)
    like, values = _exact(ctx, space)
    perm = rng.permutation(len(ref))
    test, X = ref[perm[:600]], ref[perm[600:600 + n_ref]]
    if n_lhs:
        X = np.vstack([space.to_unit(latin_hypercube(space, n_lhs, seed=seed).values), X])
    Y = values(X)
    ok = np.isfinite(Y).all(1)
    emu = SVDEmulator(variance_threshold=ctx.config["emulator"]["variance_threshold"],
                      estimator=GPEmulator(n_restarts=restarts, random_state=seed), random_state=seed,
                      residual_sd=0.2 * op.sigma).fit(X[ok], Y[ok])

    def expected(u: np.ndarray) -> np.ndarray:
        m, sd = emu.predict(u, return_std=True)
        return like(m) - 0.5 * ((sd / like.tau) ** 2).sum(1)

    targets = {"mean": lambda u: like(emu.predict(u)), "expected": expected}
    print(f"ceiling, seed {seed}, {restarts} restarts: {ok.sum()} runs ({region(X[ok]).sum()} in the "
          f"region), {emu.n_components_} components")
    exact, inside = like(values(test)), region(test)
    for name, f in targets.items():
        err = f(test) - exact
        print(f"  {name} log L - exact at reference draws, q10/q50/q90: in the region "
              f"{np.round(np.quantile(err[inside], [0.1, 0.5, 0.9]), 2).tolist()}, outside "
              f"{np.round(np.quantile(err[~inside], [0.1, 0.5, 0.9]), 2).tolist()}")
    q_ref, b_ref = np.quantile(ref, [0.05, 0.5, 0.95], 0), _band(ctx, space, ref, rng)
    for name, f in targets.items():
        p = tempered_smc(f, space, n_particles=2000, n_moves=10, seed=seed).particles
        dq, b = np.abs(np.quantile(p, [0.05, 0.5, 0.95], 0) - q_ref).max(0), _band(ctx, space, p, rng)
        at_p = np.round(np.quantile(like(values(p[:300])), [0.1, 0.5]), 1).tolist()
        at_ref = np.round(np.quantile(exact, [0.1, 0.5]), 1).tolist()
        print(f"  {name}: share in the region {region(p).mean():.3f} (reference {region(ref).mean():.3f}); "
              f"largest quantile difference {dq.max():.3f} ({space.labels[int(dq.argmax())]}); annual NEE "
              f"{np.round(b).tolist()} vs {np.round(b_ref).tolist()}, {np.abs(b - b_ref).max():.0f} off; "
              f"exact log L at the particles q10/q50 {at_p}, at reference draws {at_ref}")


def _band(ctx, space, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The held-out year's annual NEE 5/50/95 % of the model at 300 of the draws ``u``."""
    year = str(ctx.config["site"]["validation_years"][0])
    u = u[rng.choice(len(u), 300, replace=False)]
    nee = ctx.model(space.expand(space.from_unit(u)))["nee"].sel(time=year).sum("time").values
    return np.nanquantile(nee, [0.05, 0.5, 0.95])


if __name__ == "__main__":
    main()
