"""The site workflow's direct route at DE-Hai: which emcee moves reach 50 autocorrelation times first.

    python benchmarks/bench_site_direct.py                       # examples/site_hainich.toml, 20,000 steps
    python benchmarks/bench_site_direct.py --steps 30000 --out /tmp/bsd
    python benchmarks/bench_site_direct.py --out /tmp/bsd --reuse   # the figures of finished runs

Issue 25 asks the direct route (emcee on the embedded DALEC itself) to reach 50 autocorrelation
times at DE-Hai within 5 minutes on 2 cores, and which sampler does it. For each move set the
site route offers (``posterior.moves``: ``de_stretch``, emcee's DE 0.8 + stretch 0.2;
``de_subspace``, :class:`bayescal.posterior.DESubspaceMove`, the default since this benchmark
measured it: docs/site.md) this runs the config's optimize and
posterior stages (``bayescal run CONFIG --until posterior``) with a chain of exactly ``--steps``
steps (``n_steps = max_steps``) into ``OUT/<moves>``, then prints per move set: walkers x steps and
model runs, the posterior stage's wall time, the acceptance, emcee's integrated autocorrelation
time (largest and median over the values) on the whole chain and on its second half, and the
wall time a 50-tau chain would take at this rate (wall x 50 tau / steps; the chain starts in a 2 %
ball around the maximum, so its first part is a transient that the whole-chain tau includes).
Wall times depend on the machine's load (the machine probe is printed).
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
MOVES = ("de_stretch", "de_subspace")


def _run(cfg: dict, run_dir: Path) -> None:
    from bayescal.workflows import make_context

    ctx = make_context(cfg, run_dir, progress=False)  # config.json holds the edited config
    ctx.run(("optimize", "posterior"))
    print(ctx.summary(), flush=True)


def _figures(run: Path) -> dict:
    stage = json.loads((run / "posterior" / "stage.json").read_text())
    with h5py.File(run / "posterior" / "chain.h5", "r") as f:
        chain = f["mcmc"]["chain"][:]
    moved = np.any(np.diff(chain, axis=0) != 0, axis=-1)
    whole, half = (integrated_time(c, tol=0) for c in (chain, chain[chain.shape[0] // 2:]))
    return {"steps": chain.shape[0], "walkers": chain.shape[1], "runs": stage["runs"], "wall": stage["wall"],
            "acceptance": float(moved.mean()), "tau": whole, "tau_half": half}


def main() -> None:
    from bench_simulate import machine_probe

    from bayescal.workflows.validate import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_hainich.toml")
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=Path("runs") / "bench_site_direct")
    ap.add_argument("--reuse", action="store_true", help="only print the figures of finished runs")
    args = ap.parse_args()
    print(f"machine probe: {machine_probe():.2f} ns per exp, single thread")
    base = load_config(args.config)
    for moves in MOVES:
        if not args.reuse:
            cfg = copy.deepcopy(base)
            cfg["posterior"].update(route="direct", moves=moves, n_steps=args.steps, max_steps=args.steps)
            print(f"== {moves} -> {args.out / moves}", flush=True)
            _run(cfg, args.out / moves)
    print(f"\n{args.config.name}, direct route")
    print(f"{'moves':12s}{'walkers x steps':>16s}{'model runs':>12s}{'wall s':>8s}{'accept':>8s}"
          f"{'tau max/median':>16s}{'2nd half':>12s}{'steps/tau':>10s}{'50 tau at this rate':>21s}")
    for moves in MOVES:
        f = _figures(args.out / moves)
        tau = f["tau"].max()
        runs = f"{f['runs']:,d}" if f["runs"] is not None else "n/a"  # not counted off the serial runner
        print(f"{moves:12s}{f['walkers']:>7d} x {f['steps']:<7d}{runs:>12s}{f['wall']:>8.0f}"
              f"{f['acceptance']:>8.3f}{tau:>9.0f} / {np.median(f['tau']):<5.0f}"
              f"{f['tau_half'].max():>7.0f} / {np.median(f['tau_half']):<4.0f}{f['steps'] / tau:>9.1f}"
              f"{f['wall'] * 50 * tau / f['steps'] / 60:>16.1f} min")


if __name__ == "__main__":
    main()
