"""The site workflow's direct route at DE-Hai: which emcee moves reach 50 autocorrelation times first.

    python benchmarks/bench_site_direct.py                    # examples/site_hainich.toml, to 50 tau
    python benchmarks/bench_site_direct.py --moves independence --out /tmp/bsd
    python benchmarks/bench_site_direct.py --out /tmp/bsd --reuse   # the figures of finished runs
    python benchmarks/bench_site_direct.py --moves independence --start optimum   # the example's start

Issue 25 asks the direct route (emcee on the embedded DALEC itself) to reach 50 autocorrelation
times at DE-Hai within 5 minutes on 2 cores, and which sampler does it. For each move set the
site route offers (``posterior.moves``): ``independence``, the default (the first
``n_steps / 2`` steps adapt: a DE-subspace pilot of ``n_steps / 16``, then
:class:`bayescal.posterior.IndependenceMove` 1:1 with DE-subspace, refitted to the chain's second
half at doubling lengths, fixed after); ``de_subspace``, :class:`bayescal.posterior.DESubspaceMove`
throughout (the default before); ``de_stretch``, emcee's DE 0.8 + stretch 0.2 -- this runs the
config's optimize and posterior stages (``bayescal run CONFIG --until posterior``) into
``OUT/<moves>`` with the config's ``n_steps`` and ``max_steps = --max-steps``, so each chain stops
where the route itself stops: at 50 autocorrelation times (counted after the adaptation) or at
``--max-steps``. It prints per move set: walkers x steps (adapting), model runs, the optimize and
posterior stages' wall times, the acceptance after the adaptation, emcee's integrated
autocorrelation time after it (largest and median over the values), steps / tau, whether
the chain reached 50 tau, and the time 50 tau takes at this rate (the adaptation included). Wall times
depend on the machine's load (the machine probe is printed). ``--start`` sets ``posterior.start``
(default ``tempered``: the tempered SMC's model runs are printed and counted in the 50-tau time;
the example itself sets ``optimum``); the runs go to ``OUT/<moves>-<start>``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import h5py
import numpy as np
from emcee.autocorr import integrated_time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
MOVES = ("independence", "de_subspace", "de_stretch")


def _run(cfg: dict, run_dir: Path) -> None:
    from bayescal.workflows import make_context

    ctx = make_context(cfg, run_dir, progress=False)  # config.json holds the edited config
    ctx.run(("optimize", "posterior"))
    print(ctx.summary(), flush=True)


def _figures(run: Path) -> dict:
    import xarray as xr

    stage = json.loads((run / "posterior" / "stage.json").read_text())
    optimize = json.loads((run / "optimize" / "stage.json").read_text())
    with xr.open_dataset(run / "posterior" / "posterior.nc", group="posterior", engine="h5netcdf") as ds:
        adapting = int(ds.attrs.get("adaptation_steps", 0))
    with h5py.File(run / "posterior" / "chain.h5", "r") as f:
        chain = f["mcmc"]["chain"][:]
    moved = np.any(np.diff(chain[adapting:], axis=0) != 0, axis=-1)
    tau = integrated_time(chain[adapting:], tol=0)
    smc = 0
    if (run / "posterior" / "tempered.nc").exists():
        with xr.open_dataset(run / "posterior" / "tempered.nc", engine="h5netcdf") as ds:
            smc = int(ds.attrs["n_evaluations"])
    # the stage's wall per model run (the optimum run and the draws' runs included)
    per_run = stage["wall"] / (smc + chain.shape[0] * chain.shape[1])
    return {"steps": chain.shape[0], "adapting": adapting, "walkers": chain.shape[1], "runs": stage["runs"],
            "wall": stage["wall"], "optimize_wall": optimize["wall"], "acceptance": float(moved.mean()),
            "tau": tau, "reached": chain.shape[0] - adapting >= 50 * tau.max(), "smc": smc,
            "wall_50tau": per_run * (smc + chain.shape[1] * (adapting + 50 * tau.max()))}


def main() -> None:
    from bench_simulate import machine_probe

    from bayescal.workflows.validate import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_hainich.toml")
    ap.add_argument("--max-steps", type=int, default=30_000, help="posterior.max_steps of every run")
    ap.add_argument("--moves", nargs="+", choices=MOVES, default=MOVES[:2])
    ap.add_argument("--out", type=Path, default=Path("runs") / "bench_site_direct")
    ap.add_argument("--reuse", action="store_true", help="only print the figures of finished runs")
    ap.add_argument("--start", choices=("tempered", "optimum"), default="tempered",
                    help="posterior.start: a tempered SMC first (the default) or a ball at the optimum")
    args = ap.parse_args()
    print(f"machine probe: {machine_probe():.2f} ns per exp, single thread")
    base = load_config(args.config)
    for moves in args.moves:
        if not args.reuse:
            cfg = copy.deepcopy(base)
            cfg["posterior"].update(route="direct", moves=moves, max_steps=args.max_steps, start=args.start)
            print(f"== {moves}, start {args.start} -> {args.out / f'{moves}-{args.start}'}", flush=True)
            _run(cfg, args.out / f"{moves}-{args.start}")
    print(f"\n{args.config.name}, direct route, start {args.start}, n_steps {base['posterior']['n_steps']}, "
          f"max_steps {args.max_steps}")
    print(f"{'moves':13s}{'walkers x steps (adapting)':>28s}{'model runs':>12s}{'optimize s':>11s}"
          f"{'posterior s':>12s}{'accept':>8s}{'tau max/median':>16s}{'steps/tau':>10s}{'50 tau':>7s}"
          f"{'50 tau takes':>14s}")
    for moves in args.moves:
        f = _figures(args.out / f"{moves}-{args.start}")
        tau = f["tau"].max()
        runs = f"{f['runs']:,d}" if f["runs"] is not None else "n/a"  # not counted off the serial runner
        print(f"{moves:13s}{f['walkers']:>12d} x {f['steps']:<6d} ({f['adapting']:>5d}){runs:>12s}"
              f"{f['optimize_wall']:>11.0f}{f['wall']:>12.0f}{f['acceptance']:>8.3f}"
              f"{tau:>9.0f} / {np.median(f['tau']):<5.0f}{(f['steps'] - f['adapting']) / tau:>9.1f}"
              f"{'yes' if f['reached'] else 'no':>7s}{f['wall_50tau'] / 60:>10.1f} min")
        if f["smc"]:
            print(f"{'':13s}the tempered SMC before the chain: {f['smc']:,d} model runs")


if __name__ == "__main__":
    main()
