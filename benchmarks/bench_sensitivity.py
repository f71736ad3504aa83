"""Benchmark: Sobol' screening of every embedded-model parameter value for 5 targets.

Run:  python benchmarks/bench_sensitivity.py [N_max] [full]

For N = 16, 32, ... N_max (Saltelli base sizes; N (D + 2) model runs with D = 122 values) runs the
design through the ensemble runner (in-process, 64 members a call), computes S1/ST for five
targets (global GPP, NBP, vegetation and soil carbon, 2001-2005 means, and LAI), and prints the
number of runs, the wall time and the top-10 set by the largest ST over targets, and the N from
which the top-10 set stops changing.

By default the model runs a reduced configuration (40 cells, 2001-2005 after a 5-year ramp, ~10 ms
a member) so the benchmark takes minutes; pass ``full`` for the 300-cell, 1959-2023 model
(~0.45 s a member: N = 16 alone is ~15 minutes).
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from bayescal.analysis.sensitivity import analyze, evaluate, sample, screen
from bayescal.models import LandCarbonModel, make_drivers, make_grid

TARGETS = {
    "gpp": lambda ds: ds.gpp_global.mean("year"),
    "nbp": lambda ds: ds.nbp_global.mean("year"),
    "cveg": lambda ds: ds.cveg_global.mean("year"),
    "csoil": lambda ds: ds.csoil_global.mean("year"),
    "lai": lambda ds: (ds.lai.mean("time") * ds.area).sum("cell") / ds.area.sum(),
}


def main(n_max: int = 128, full: bool = False) -> None:
    if full:
        model = LandCarbonModel(chunk_size=64)
    else:
        grid = make_grid(n_cells=40, seed=0)
        model = LandCarbonModel(grid=grid, drivers=make_drivers(grid, start=2001, end=2005, ramp_start=1996),
                                chunk_size=64)
    space = model.space
    tmp = Path(tempfile.mkdtemp(prefix="bayescal-sobol-"))
    previous, previous_n, stable_from = None, 0, None
    try:
        n = 16
        while n <= n_max:
            design = sample(space, "sobol", n, seed=0)
            t0 = time.perf_counter()
            res = evaluate(model, design, TARGETS, store=tmp / f"n{n}", batch_size=64)
            ind = analyze(space, design, res, on_failure="drop", num_resamples=100)
            wall = time.perf_counter() - t0
            top = screen(ind, top_k=10)
            print(f"N={n:4d}: {design.sizes['member']:6d} runs ({int((res.status != 'done').sum())} failed, "
                  f"{ind.attrs['blocks_dropped']} blocks dropped), {wall:7.1f} s; top-10: {', '.join(top)}")
            if previous is not None and set(top) == set(previous):
                stable_from = stable_from or previous_n
            else:
                stable_from = None
            previous, previous_n = top, n
            n *= 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if stable_from:
        print(f"top-10 set unchanged from N={stable_from} on (up to N={n_max})")
    else:
        print(f"top-10 set still changing at N={n_max}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 128, len(args) > 1 and args[1] == "full")
