"""Where the design runs are decides the site emulator's error where the posterior is.

    python benchmarks/bench_site_twin.py --config examples/site_twin_reflex/twin.toml --out /tmp/bst
    python benchmarks/bench_site_emulator_design.py --config examples/site_twin_reflex/twin.toml \
        --direct /tmp/bst/direct

The site workflow's emulator route (``posterior.route = "emulator"``) emulates the model's
values on the observed days with an SVD emulator (GP components, as the route builds it) and
samples the likelihood of its mean. This benchmark measures how far that log-likelihood is from
the exact one over the exact posterior (the direct route's draws, ``--direct``: a finished run
of the same twin) when the emulator is trained on ``n`` runs placed two ways: uniformly over the
prior (what a first design does), or at draws of the exact posterior itself (an oracle: the best
any sequential design could place them). It prints, per ``n`` and placement, the median and 90th
percentile of |log L_emulator - log L_exact| over ``--test`` other posterior draws, beside the spread
of the exact log L over the posterior (how flat the posterior is). The model is the twin's
DALEC, run directly (its fast path): a few seconds per design.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_twin_reflex" / "twin.toml")
    ap.add_argument("--direct", type=Path, required=True, help="a finished direct-route run of the twin")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 280, 600])
    ap.add_argument("--test", type=int, default=300, help="posterior draws the error is measured at")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from bayescal.operators.timeseries import SeriesLikelihood
    from bayescal.posterior import load_inference_data, unit_samples
    from bayescal.posterior.site_calibration import model_values
    from bayescal.workflows import load_config, make_context
    from bayescal.workflows.site.stages import _emulator

    ctx = make_context(load_config(args.config), args.direct, progress=False)
    space, op = ctx.space(), ctx.operator("calibration")
    like = SeriesLikelihood(op)  # the twin's error model: sigma alone
    values = model_values(ctx.calibration_simulator, space, op, arrays=ctx.calibration_arrays())
    rng = np.random.default_rng(args.seed)
    post = np.asarray(unit_samples(load_inference_data(args.direct / "posterior" / "posterior.nc"), space))
    post = post[rng.permutation(post.shape[0])]
    k = args.test
    if post.shape[0] < k + max(args.sizes):
        raise SystemExit(f"{args.direct}: {post.shape[0]} posterior draws; need {k + max(args.sizes)}")
    test = post[:k]
    exact = like(values(test))
    print(f"{args.config.name}: {space.n_free} values, {op.y.size} observed values; exact log L over the "
          f"posterior: sd {exact.std():.2f}, range {np.ptp(exact):.1f} nats")
    print(f"{'runs':>6s} {'placed at':<22s}{'components':>11s}{'median |err|':>14s}{'q90 |err|':>11s} (nats)")
    for n in args.sizes:
        for name, X in (("prior (uniform)", rng.random((n, space.n_free))),
                        ("exact posterior draws", post[k:k + n])):
            Y = values(X)
            ok = np.isfinite(Y).all(axis=1)
            em = _emulator(ctx).fit(X[ok], Y[ok])
            err = np.abs(like(em.predict(test)) - exact)
            print(f"{n:>6d} {name:<22s}{em.n_components_:>11d}{np.median(err):>14.2f}"
                  f"{np.quantile(err, 0.9):>11.2f}")


if __name__ == "__main__":
    main()
