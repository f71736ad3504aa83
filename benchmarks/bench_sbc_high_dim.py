"""Simulation-based calibration of the history-matching route with every value of the embedded model free.

    python benchmarks/bench_sbc_high_dim.py [--truths 20] [--cells 30] [--max-steps 3000] [--seed 0]

Issue 25, item 4: is the route *correct*, not just narrow? A cheaper configuration of the embedded
model (``--cells`` cells, 2001-2004 after a short ramp, GPP, LAI and latent heat; every one of its
122 values free) and, for each of ``--truths`` truths drawn from the prior (uniform on the unit
cube), observations made exactly as the likelihood assumes (the twin's summaries plus Gaussian
noise of the operator's sigma). The same functions the posterior stage calls
(:func:`~bayescal.posterior.history_matching.history_match` with the stage's emulator,
:func:`~bayescal.posterior.history_matching.informed_subspace`,
:func:`~bayescal.posterior.history_matching.subspace_posterior`) give the posterior; the truth's
rank among 99 thinned draws is recorded per value (Talts et al. 2018). Prints:

* the pooled rank histogram (10 bins) over all values and truths with its chi-square p-value,
  and the same over the *informed* values (posterior sd / prior sd < 0.8), where a wrong
  posterior would show (uninformed values have posterior = prior and uniform ranks anyway);
* the fraction of truths inside their 90 % intervals, over all values and over informed ones
  (calibrated: 0.90; the issue's bound: 80-97 %);
* model runs, wall time and peak memory per truth.

A posterior too narrow by a factor 2 gives a U-shaped histogram and p < 1e-6 here; one with its
centre shifted by 1 sd gives a sloped one.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

TOML = """
[run]
name = "sbc"
output = "run"
seed = {seed}
[model]
n_cells = {cells}
grid_seed = 3
start = 2001
end = 2004
ramp_start = 1996
chunk_size = 256
[parameters]
free = ["vmax", "kn", "alpha_phtsyn", "sn", "vpd0", "gamma_w", "beta2", "rmlcoef", "grescoef", "minlvfr",
        "omega", "kappa", "lfespany", "maxage", "avertmas", "coldthrs", "bsratelt", "bsratesc", "humicfac",
        "q10_rh", "extnprob", "cmbcprm"]
[observations]
twin = true
twin_seed = 11
variables = ["gpp", "lai", "hfls"]
gcb_nbp = false
gcb_years = [2001, 2004]
[screen]
enabled = false
[optimize]
method = "none"
[design]
n_runs = {design}
[posterior]
method = "history_matching"
hm_waves = {waves}
hm_runs = {runs}
n_steps = 1000
max_steps = {max_steps}
[propagate]
table_years = [2001, 2004]
"""


def _setup(args, seed: int):
    """The context of the cheap configuration: its model, calibrated space and operator."""
    import tomllib

    from bayescal.workflows import make_context
    from bayescal.workflows.validate import validate_config

    cfg = validate_config(tomllib.loads(TOML.format(seed=seed, cells=args.cells, design=args.design,
                                                    waves=args.waves, runs=args.runs,
                                                    max_steps=args.max_steps)))
    ctx = make_context(cfg, Path(tempfile.mkdtemp()) / "run", progress=False)
    return ctx, ctx.full_space.only(cfg["parameters"]["free"])


def _one_truth(ctx, space, rng: np.random.Generator, args, k: int) -> dict:
    from bayescal.emulators.active import ActiveGPEmulator
    from bayescal.parameters.design import latin_hypercube
    from bayescal.posterior.history_matching import history_match, informed_subspace, subspace_posterior

    c = ctx.config["posterior"]
    _, sigma = ctx.observed()
    n_runs = [0]

    def summaries(u: np.ndarray) -> np.ndarray:
        n_runs[0] += len(u)
        return ctx.summaries(ctx.model(space.expand(space.from_unit(u))))

    u_true = rng.random(space.n_free)
    y = summaries(u_true[None])[0] + sigma * rng.standard_normal(len(sigma))
    X0 = space.to_unit(latin_hypercube(space, args.design, seed=int(rng.integers(2**31))).values)
    Y0 = summaries(X0)
    ok = np.isfinite(Y0).all(1)
    hm = history_match(lambda u, w: summaries(u), lambda w: ActiveGPEmulator(n_active=c["hm_active"],
                                                                             random_state=k + w),
                       X0[ok], Y0[ok], y, sigma, 0.0, n_waves=args.waves, runs_per_wave=args.runs,
                       cutoff=c["hm_cutoff"], seed=int(rng.integers(2**31)), train=c["hm_train"],
                       design=c["hm_design"])
    em = hm.emulator
    ll = -0.5 * (((y - em.predict(hm.samples)) / sigma) ** 2).sum(1)
    sub = informed_subspace(em, hm.samples[np.argsort(-ll)[:64]], sigma, 0.0, floor=c["hm_floor"],
                            max_rank=c["hm_max_rank"] or None)
    post = subspace_posterior(em, y, sigma, sub, hm.samples, 0.0, min_steps=c["n_steps"],
                              max_steps=c["max_steps"], seed=int(rng.integers(2**31)))
    u = post.u.reshape(-1, space.n_free)
    draws = u[np.linspace(0, len(u) - 1, 99).astype(int)]
    q05, q95 = np.quantile(u, [0.05, 0.95], axis=0)
    return {"rank": (draws < u_true).sum(0), "inside": (q05 <= u_true) & (u_true <= q95),
            "ratio": u.std(0) / np.sqrt(1 / 12), "runs": n_runs[0], "rank_dim": sub.rank,
            "converged": post.converged}


def _histogram(ranks: np.ndarray, label: str) -> None:
    counts = np.histogram(ranks, bins=10, range=(0, 100))[0]
    p = stats.chisquare(counts).pvalue if counts.sum() else float("nan")
    print(f"  {label:<34s} n = {counts.sum():5d}  bins {counts.tolist()}  chi-square p = {p:.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truths", type=int, default=20)
    ap.add_argument("--cells", type=int, default=30)
    ap.add_argument("--design", type=int, default=200)
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=3000, help="longest subspace chain")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ctx, space = _setup(args, args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = []
    for k in range(args.truths):
        t = time.perf_counter()
        rows.append(_one_truth(ctx, space, rng, args, k))
        r = rows[-1]
        print(f"truth {k + 1:2d}: {r['runs']} runs, subspace rank {r['rank_dim']}, inside 90 %: "
              f"{r['inside'].mean():.2f}, informed values {int((r['ratio'] < 0.8).sum())}, "
              f"{'converged' if r['converged'] else 'chain < 50 tau'}, {time.perf_counter() - t:.0f} s",
              flush=True)
    ranks = np.array([r["rank"] for r in rows])
    inside = np.array([r["inside"] for r in rows])
    informed = np.array([r["ratio"] < 0.8 for r in rows])
    print(f"\n{args.truths} truths x {space.n_free} values ({args.cells} cells, 2001-2004; design "
          f"{args.design} + {args.waves} waves x {args.runs} runs per truth)")
    _histogram(ranks.ravel(), "ranks, all values")
    _histogram(ranks[informed], "ranks, informed values (sd < 0.8)")
    print(f"  truths inside their 90 % intervals: all values {inside.mean():.3f}; informed values "
          f"{inside[informed].mean() if informed.any() else float('nan'):.3f} (of {int(informed.sum())})")
    print(f"  wall {time.perf_counter() - t0:.0f} s, peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
