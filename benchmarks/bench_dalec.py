"""Benchmark: what one call of the embedded DALEC costs at a FLUXNET site (docs/site.md's figures).

Run:  python benchmarks/bench_dalec.py [--config examples/site_hainich.toml] [--members 64] [--repeat 5]

Builds the model of a site config as ``bayescal run`` does (its drivers, DALEC type and spin-up),
then times ``simulate`` on ``--members`` Latin-hypercube members of the prior (median of
``--repeat`` calls after one warm-up call that loads or compiles the kernel). Prints the machine
probe (ns per ``exp``: this VM's speed drifts), the wall time per call, and the time per member
set per simulated year (the driver years plus the spin-up's years x cycles). The direct route's
chain runs the calibration years only (plus the same spin-up): per emcee step of ``--members``
walkers it pays the per-year figure times that many years. The same members through
``output_arrays`` (the direct route's likelihood: the arrays without a Dataset) are timed beside
``simulate`` in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import qmc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from bench_simulate import machine_probe

    from bayescal.workflows.site.model import site_model
    from bayescal.workflows.validate import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_hainich.toml")
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"machine probe: {machine_probe():.2f} ns per exp, single thread")
    cfg = load_config(args.config)
    model = site_model(cfg)
    space = model.space
    u = qmc.LatinHypercube(d=space.n_free, seed=0).random(args.members)
    theta = space.expand(space.from_unit(u))
    t0 = time.perf_counter()
    model.simulate(theta[:1])
    first = time.perf_counter() - t0
    walls, fast = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ds = model.simulate(theta)
        walls.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.output_arrays(theta, ["nee", "gpp"])
        fast.append(time.perf_counter() - t0)
    wall = float(np.median(walls))
    years = len(np.unique(ds["time"].dt.year.values))
    spin = model.spinup_years * model.spinup_cycles
    print(f"{args.config.name}: DALEC-{model.kind}, {years} driver years + spin-up {model.spinup_years} "
          f"years x {model.spinup_cycles} cycles = {years + spin} simulated years per member")
    print(f"first call (kernel load or compile, 1 member): {first:.2f} s")
    print(f"{args.members} members: {wall:.4f} s per call (median of "
          f"{', '.join(f'{w:.4f}' for w in walls)}); {1e3 * wall / (years + spin):.2f} ms per "
          f"simulated year; failed members {int((ds['status'] != 'done').sum())}")
    print(f"output_arrays (nee, gpp; no Dataset): {np.median(fast):.4f} s per call, "
          f"{1e3 * np.median(fast) / (years + spin):.2f} ms per simulated year")


if __name__ == "__main__":
    main()
