"""Is the direct route's posterior the whole exact posterior? An exact chain from other starts.

    python benchmarks/bench_site_twin.py --config examples/site_twin_reflex/twin_live.toml --out /tmp/bst_live
    python benchmarks/bench_site_reference.py --config examples/site_twin_reflex/twin_live.toml \\
        --direct /tmp/bst_live/direct --other /tmp/bst_live/emulator

The direct route (emcee on the model, started at the maximum-likelihood point) is the reference
the emulator route is judged against (``bench_site_twin.py``). Where an emulator route's
posterior puts mass the direct one does not, either the emulator is wrong there or the direct
chain never went there. This benchmark tells which: (1) the exact log-likelihood of the other
posterior's draws outside the direct posterior's central 99.8 % box (how many are within 15 nats of
the best exact draw), and (2) an emcee chain on the model itself (64 walkers, emcee's default
DE + stretch moves, ``--steps`` steps), half its walkers started at direct-route draws and half at
the other posterior's draws: per fifth of the chain, the fraction of its draws outside that box,
and the largest 5/50/95 % quantile difference of its second half from the direct route's, per
value; then each run given (``--direct``, ``--other``, ``--compare``) against that half: its largest
quantile difference and its held-out annual-NEE band (the model at 300 of its draws). Model runs:
64 x steps (about 2 minutes per 40,000 steps on 2 cores, the model's fast path).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_twin_reflex" / "twin_live.toml")
    ap.add_argument("--direct", type=Path, required=True, help="a finished direct-route run of the twin")
    ap.add_argument("--other", type=Path, required=True, help="a finished run whose posterior differs")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="finished runs (e.g. the emulator route as shipped) to compare with the exact chain")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from bayescal.operators.timeseries import SeriesLikelihood
    from bayescal.posterior import PosteriorSampler, load_inference_data, unit_samples
    from bayescal.posterior.site_calibration import model_values
    from bayescal.workflows import load_config, make_context

    ctx = make_context(load_config(args.config), args.direct, progress=False)
    space, op = ctx.space(), ctx.operator("calibration")
    like, values = SeriesLikelihood(op), model_values(ctx.calibration_simulator, space, op,
                                                      arrays=ctx.calibration_arrays())
    direct, other = (np.asarray(unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), space))
                     for run in (args.direct, args.other))
    lo, hi = np.quantile(direct, [0.001, 0.999], axis=0)
    outside = lambda u: ~np.all((u >= lo) & (u <= hi), axis=1)  # noqa: E731
    rng = np.random.default_rng(args.seed)
    best = like(values(direct[rng.choice(len(direct), 300, replace=False)])).max()
    out = other[outside(other)]
    print(f"{args.other}: {outside(other).mean():.3f} of its draws outside the direct posterior's "
          f"central 99.8 % box; the direct posterior's own draws: {outside(direct).mean():.3f}")
    if len(out):
        s = out[rng.choice(len(out), min(200, len(out)), replace=False)]
        drop = best - like(values(s))
        q = np.round(np.quantile(drop, [0.1, 0.5, 0.9]), 1)
        print(f"  their exact log L below the best direct draw: q10/q50/q90 {q} nats; within 15 nats: "
              f"{np.mean(drop < 15):.2f}")
    start = np.vstack([direct[rng.choice(len(direct), 32, replace=False)],
                       other[rng.choice(len(other), 32, replace=False)]])
    t0 = time.perf_counter()
    ps = PosteriorSampler(lambda u: like(values(u)), space, n_walkers=64, seed=args.seed)
    ps.run(args.steps, initial=start)
    chain = ps.sampler.get_chain()
    n = chain.shape[0]
    for k in range(5):
        part = chain[k * n // 5:(k + 1) * n // 5].reshape(-1, space.n_free)
        print(f"exact chain, steps {k * n // 5}-{(k + 1) * n // 5}: {outside(part).mean():.3f} of its draws "
              "outside the box")
    half = chain[n // 2:].reshape(-1, space.n_free)
    dq = np.abs(np.quantile(half, [0.05, 0.5, 0.95], 0) - np.quantile(direct, [0.05, 0.5, 0.95], 0)).max(0)
    print("second half against the direct route, largest quantile difference per value: "
          + ", ".join(f"{k} {x:.3f}" for k, x in zip(space.labels, dq, strict=True)))
    print(f"{time.perf_counter() - t0:.0f} s, {64 * args.steps} model runs; max tau "
          f"{np.nanmax(ps.autocorr_time()):.0f} steps")
    _compare(ctx, space, half, [args.direct, args.other, *args.compare], rng)


def _compare(ctx, space, half: np.ndarray, runs: list[Path], rng: np.random.Generator) -> None:
    """Each run's posterior against the exact chain's second half: the largest 5/50/95 % quantile
    difference per value, and the held-out year's annual-NEE band (the model at 300 draws each)."""
    from bayescal.posterior import load_inference_data, unit_samples

    year = str(ctx.config["site"]["validation_years"][0])

    def band(u: np.ndarray) -> np.ndarray:
        u = u[rng.choice(len(u), 300, replace=False)]
        nee = ctx.model(space.expand(space.from_unit(u)))["nee"].sel(time=year).sum("time").values
        return np.nanquantile(nee, [0.05, 0.5, 0.95])

    q_ref, b_ref = np.quantile(half, [0.05, 0.5, 0.95], 0), band(half)
    print(f"exact chain's second half: {year} annual NEE 5/50/95 % {np.round(b_ref).tolist()}")
    for run in runs:
        u = np.asarray(unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), space))
        dq, b = np.abs(np.quantile(u, [0.05, 0.5, 0.95], 0) - q_ref).max(0), band(u)
        print(f"{run}: largest quantile difference {dq.max():.3f} ("
              + ", ".join(f"{k} {x:.2f}" for k, x in zip(space.labels, dq, strict=True))
              + f"); annual NEE {np.round(b).tolist()}, {np.abs(b - b_ref).max():.0f} off")


if __name__ == "__main__":
    main()
