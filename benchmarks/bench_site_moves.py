"""emcee moves on the exact posterior of a DALEC twin: which sampler for the site's direct route.

    python benchmarks/bench_site_twin.py --out /tmp/bst        # once: the twin's direct-route run
    python benchmarks/bench_site_moves.py --reference /tmp/bst/direct [--steps 1500] [--seeds 2]

The twin of ``examples/site_twin_puechabon.toml`` (DALEC-E at FR-Pue, 11 values free, 1,994 NEE
and GPP values): its exact posterior is a thin curved ridge through most of the cube, on which
emcee's default moves (DE 0.8 + stretch 0.2) accept about 1 % of proposals. From the last state
of the reference chain (already in equilibrium), each move set runs ``--steps`` steps with the
same 32 walkers and the exact likelihood (the direct route's); the script prints per move set and
seed the acceptance, the mean squared jump per model run in the reference posterior's whitened
coordinates (the larger, the faster the chain moves per run), emcee's autocorrelation estimate
(reliable only when ``--steps`` exceeds 50 of it) and the wall time. Move sets: ``de_stretch``
(emcee's DE 0.8 + stretch 0.2), ``de_subspace`` (:class:`bayescal.posterior.DESubspaceMove`, scale
0.5: the site route's default ``posterior.moves``) and the same at scale 0.25.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import emcee
import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _log_prob(reference: Path):
    from bayescal.posterior.site_calibration import model_values, series_log_likelihood
    from bayescal.workflows import make_context
    from bayescal.workflows.site.stages import _ErrorModel, _optimum_run
    from bayescal.workflows.validate import load_config

    cfg = load_config(ROOT / "examples" / "site_twin_puechabon.toml")
    cfg["posterior"]["route"] = "direct"
    ctx = make_context(cfg, reference, progress=False)  # reads its finished optimum run
    errors = _ErrorModel(ctx)
    errors.add(_optimum_run(ctx))
    loglik = series_log_likelihood(model_values(ctx.calibration_simulator, ctx.space(), errors.op),
                                   errors.likelihood())

    def log_prob(u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u)
        out = np.full(len(u), -np.inf)
        inside = np.all((u > 0) & (u < 1), axis=1)
        if inside.any():
            out[inside] = loglik(u[inside])
        return out

    return log_prob


def main() -> None:
    from bayescal.posterior import DESubspaceMove, default_moves

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=Path("/tmp/bst/direct"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    chain = h5py.File(args.reference / "posterior" / "chain.h5", "r")["mcmc"]["chain"]
    x0 = chain[-1]
    ref = chain[chain.shape[0] // 2::10].reshape(-1, chain.shape[-1])
    whiten = np.linalg.inv(np.linalg.cholesky(np.cov(ref.T)))
    log_prob = _log_prob(args.reference)
    sets = {"de_stretch": default_moves, "de_subspace": lambda: [(DESubspaceMove(), 1.0)],
            "de_subspace scale 0.25": lambda: [(DESubspaceMove(scale=0.25), 1.0)]}
    print(f"reference {args.reference}: {chain.shape[0]} steps x {chain.shape[1]} walkers, "
          f"{chain.shape[2]} values; {args.steps} steps per run")
    for name, make in sets.items():
        for seed in range(args.seeds):
            s = emcee.EnsembleSampler(len(x0), x0.shape[1], log_prob, moves=make(), vectorize=True)
            s.random_state = np.random.RandomState(seed).get_state()  # as PosteriorSampler seeds emcee
            t0 = time.perf_counter()
            s.run_mcmc(x0, args.steps, progress=False)
            wall = time.perf_counter() - t0
            c = s.get_chain()
            msjd = float(np.mean(np.sum((np.diff(c, axis=0) @ whiten.T) ** 2, axis=-1)))
            tau = emcee.autocorr.integrated_time(c, tol=0)
            print(f"  {name:24s} seed {seed}: acceptance {s.acceptance_fraction.mean():.3f}, mean squared "
                  f"jump per run {msjd:.4f}, tau max {np.nanmax(tau):.0f} (of {args.steps} steps), "
                  f"{wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()
