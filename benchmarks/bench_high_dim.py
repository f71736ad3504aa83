"""Every value of the global model calibrated: the main job's numbers for issue 25.

    python benchmarks/bench_high_dim.py                           # runs examples/global_twin.toml
    python benchmarks/bench_high_dim.py --run-dir /tmp/hd_run1    # a fresh run directory
    python benchmarks/bench_high_dim.py --run-dir /tmp/hd_run1 --reuse   # numbers of a finished run

Prints, for one run of the main job (``posterior.method = "history_matching"``):

* model runs per stage and per history-matching wave, and the fraction of the prior not ruled out;
* posterior sd / prior sd per value (unit cube), with the twin truth's 90 % coverage over all
  calibrated values;
* per likelihood summary: the parameter-only 90 % predictive interval over the observational
  90 % interval (emulator at posterior samples, and the model at the propagate stage's posterior
  draws), and the standardised residual of the model run at the posterior mean;
* wall time and peak memory (this process: the embedded model runs in it).

Wall times depend on the machine's load: on a shared machine they are inflated.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

Z90 = 1.6448536


def _run(config: Path, run_dir: Path) -> float:
    from bayescal.workflows import make_context
    from bayescal.workflows.validate import load_config

    pipe = make_context(load_config(config), run_dir, progress=True, config_text=config.read_text())
    t0 = time.perf_counter()
    pipe.run()
    print("\n" + pipe.summary())
    return time.perf_counter() - t0


def _model_predictive(config: Path, run_dir: Path, sigma: np.ndarray) -> np.ndarray | None:
    """90 % interval of each summary over the propagate stage's posterior draws, in sigma units of
    the observational 90 % interval (model runs, not the emulator)."""
    from bayescal.run.ensemble import EnsembleStore
    from bayescal.workflows import make_context
    from bayescal.workflows.validate import load_config

    store = run_dir / "propagate" / "ensemble"
    if not store.exists():
        return None
    pipe = make_context(load_config(config), run_dir, progress=False)
    ens = EnsembleStore(store).load()
    sets = xr.open_dataset(run_dir / "propagate" / "outputs.nc")["set"].values  # the store's member order
    pick = np.flatnonzero((sets == "posterior") & (ens["status"].values == "done"))
    y = pipe.summaries(ens.isel(member=pick))
    y = y[np.isfinite(y).all(1)]
    q05, q95 = np.quantile(y, [0.05, 0.95], axis=0)
    return (q95 - q05) / (2 * Z90 * sigma)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path(__file__).parents[1] / "examples" / "global_twin.toml")
    p.add_argument("--run-dir", type=Path, default=Path("/tmp/bench_high_dim"))
    p.add_argument("--reuse", action="store_true", help="only read a finished run directory")
    args = p.parse_args(argv)
    wall = None if args.reuse else _run(args.config, args.run_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    _report(args.config, args.run_dir, wall, None if args.reuse else peak)
    return 0


def _report(config: Path, run_dir: Path, wall: float | None, peak: float | None) -> None:
    from bayescal.workflow.rundir import RunDir

    rd = RunDir(run_dir)
    hm = xr.load_dataset(run_dir / "posterior" / "history_matching.nc")
    sigma = xr.load_dataset(run_dir / "posterior" / "left_out.nc")["sigma"].values
    print("\n== stages (wall s, peak GiB, model runs)")
    recs = rd.records()
    for r in recs:
        print(f"  {r.name:13s} {r.wall:8.1f} {r.peak_rss_gib:6.2f} {r.runs:6d}")
    print(f"  {'total':13s} {sum(r.wall for r in recs):8.1f} {max(r.peak_rss_gib for r in recs):6.2f} "
          f"{sum(r.runs for r in recs):6d}")
    print("\n== history-matching waves")
    print("  wave  runs(total)  new  train  not-ruled-out  emulator sd/sigma  previous wave's runs kept")
    for w in hm["wave"].values:
        s = hm.sel(wave=w)
        print(f"  {int(w):4d} {int(s.n_runs):11d} {int(s.n_new):4d} {int(s.n_train):6d} "
              f"{float(s.nroy_fraction):14.3g} {float(s.emulator_sd):18.2f} {float(s.new_runs_kept):10.2f}")
    rank = hm.attrs.get("subspace_rank", hm.attrs["rank"])  # older run directories: "rank"
    print(f"  rule: {hm.attrs['rule']}; informed subspace rank {rank}; chain "
          f"{hm.attrs['n_steps']} steps, tau_max {hm.attrs['tau_max']:.0f}, "
          f"{'>=' if hm.attrs['converged'] else '<'} 50 tau")
    space = rd.space()
    post = rd.posterior_u(space).values
    ratio = post.std(0) * np.sqrt(12.0)
    print(f"\n== posterior sd / prior sd (unit cube), {space.n_free} values")
    print(f"  quantiles 0/10/50/90/100 %: {np.round(np.quantile(ratio, [0, .1, .5, .9, 1]), 3).tolist()}; "
          f"< 0.5 for {int((ratio < 0.5).sum())} values")
    theta = rd.truth_theta()
    truth = space.to_unit(space.reduce(theta))
    q05, q95 = np.quantile(post, [0.05, 0.95], axis=0)
    inside = (q05 <= truth) & (truth <= q95)
    order = np.argsort(ratio)
    for j in order:
        print(f"  {space.labels[j]:24s} sd ratio {ratio[j]:.3f}  90 % [{q05[j]:.3f}, {q95[j]:.3f}]  "
              f"truth {truth[j]:.3f}{'' if inside[j] else '  OUTSIDE'}")
    print(f"  twin truth inside the 90 % interval: {inside.sum()} of {inside.size} values "
          f"({inside.mean():.0%}; target 80-97 %)")
    model_ratio = _model_predictive(config, run_dir, sigma)
    res = hm["residual"].values
    print("\n== per summary: 90 % predictive interval / observational 90 % interval; residual (sigma)")
    print("  summary  emulator  model  residual  complement sd")
    for k in range(sigma.size):
        mr = f"{model_ratio[k]:6.2f}" if model_ratio is not None else "     -"
        print(f"  {k:7d} {hm['predictive_ratio'].values[k]:9.2f} {mr} {res[k]:9.2f} "
              f"{hm['complement_sd'].values[k]:13.2f}")
    print(f"  median ratio: emulator {np.median(hm['predictive_ratio'].values):.2f}"
          + (f", model {np.median(model_ratio):.2f}" if model_ratio is not None else "")
          + f" (target <= 1); residual mean square at the posterior mean {np.mean(res**2):.2f} "
          "(target 0.5-2)")
    summary = json.loads((run_dir / "propagate" / "summary.json").read_text())
    print(f"\n== propagation: truth inside the 90 % band {summary.get('truth_coverage')}")
    if wall is not None:
        print(f"\n== wall {wall:.0f} s, peak memory {peak:.2f} GiB (on a shared machine the times are "
              "inflated by its load)")


if __name__ == "__main__":
    sys.exit(main())
