"""Benchmark: the embedded model, 100 members x all cells x 1959-2023 monthly, spin-up included.

Run:  python benchmarks/bench_simulate.py [n_members] [--threads N] [--repeat R (default 3)]
Prints wall time (each of R runs and their median: this VM's speed drifts by a third between
minutes, and the first large run in a process also pays for the host backing fresh guest memory,
~6 s for the 2 GiB of outputs), member-cell-months per second and peak resident memory of
``simulate``, then
one month of the compiled kernel against the plain-numpy step it replaced
(``tests/reference_step.py``), both on the same 100 members, to show why the kernel is
hand-written.
Target (issue 2): <= 20 s and <= 4 GiB on 2 cores for 100 members.

``--scaling``: 1, 2, 32 and 256 members on 24 cells, 2000-2010, with the automatic thread count
(``_kernel.auto_threads``), with one thread and with all threads (median of 3 each), to show that
no member count runs slower than single-threaded.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import numba
import numpy as np
from scipy.stats import qmc

from bayescal.models import LandCarbonModel, _kernel
from bayescal.models.landcarbon import _NO_BUDGET

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_step import reference_step  # noqa: E402


def _best(fn, repeat=5, number=20) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return min(times)


def one_month(model: LandCarbonModel, theta: np.ndarray) -> None:
    """Seconds for one month of all members: compiled kernel against the numpy reference."""
    n_m = theta.shape[0]
    t = model._tiles
    P = model._pft_params(theta)
    const = model._constants(P)
    par = _kernel.pack_parameters(P, const)
    state = model._initial_state(n_m)
    clim = model._climate({k: v[800] for k, v in model._monthly_met().items()}, 340.0)
    rows = np.arange(len(_kernel.OUT_ROWS))
    grid = np.zeros((rows.size, n_m, 1, model.grid.sizes["cell"]))
    glob = np.zeros((_kernel.N_GLOBAL, n_m, 1))
    lai, bad, active = np.empty((n_m, model.n_tiles)), np.zeros(n_m, bool), np.ones(n_m, bool)

    def kernel():
        # the numpy step's clearing (0.002 of each tile's carbon) as the kernel's per-tile rate;
        # no area moves between tiles (dilute 1, receive 0), as in the numpy step
        lu = model._land_use
        _kernel.month(state, par, t.pft_start, clim, 340.0, np.full(model.n_tiles, 0.002), lu.no_dilute,
                      lu.no_receive, 31 / 365.25, active, _NO_BUDGET, _NO_BUDGET, t.cell, t.frac,
                      model._tile_area, 1 / (31 * 86400.0), grid, rows, glob, 0, 0, lai, bad)

    tile = {k: v[:, t.pft] for k, v in P.items()}
    ctile = {k: (v[:, t.pft] if np.ndim(v) == 2 else v[t.pft]) for k, v in const.items()}
    cl = {name: clim[i] for i, name in enumerate(_kernel.CLIMATE_ROWS)}
    ref_state = dict(zip(_kernel.POOLS, model._initial_state(n_m), strict=True))
    to_cell = np.zeros((model.n_tiles, model.grid.sizes["cell"]))
    to_cell[np.arange(model.n_tiles), t.cell] = t.frac

    def reference():  # the step and the aggregation to cells and the globe, as the numpy model did
        flux = reference_step(ref_state, tile, ctile, cl, 340.0, 0.002, 31 / 365.25)
        stack = np.stack([flux[v] for v in ("gpp", "ra", "rh", "fire", "fluc", "nbp", "lai", "hfls")])
        cells = stack @ to_cell
        cells @ model.grid["area"].to_numpy()

    kernel()
    tk, tr = _best(kernel), _best(reference)
    print(f"one month, {n_m} members x {model.n_tiles} tiles: compiled kernel {tk * 1e3:.2f} ms "
          f"({numba.get_num_threads()} threads), numpy step {tr * 1e3:.2f} ms (1 thread) "
          f"-> {tr / tk:.1f}x")


def machine_probe() -> float:
    """ns per scalar exp in a compiled loop: how fast this machine is right now (~3.5 quiet)."""
    @numba.njit(cache=False)
    def loop(x):
        s = 0.0
        for v in x:
            s += np.exp(-v)
        return s

    x = np.random.default_rng(0).random(2_000_000)
    loop(x)
    return _best(lambda: loop(x), repeat=5, number=3) / x.size * 1e9


def scaling() -> None:
    """Wall time per call for 1, 2, 32, 256 members: automatic threads vs 1 vs all."""
    from bayescal.models import make_drivers, make_grid

    grid = make_grid(n_cells=24, seed=3)
    drivers = make_drivers(grid, start=2000, end=2010, ramp_start=1995, seed=3)
    all_threads = numba.get_num_threads()
    models = {"auto": LandCarbonModel(grid=grid, drivers=drivers),
              "1 thread": LandCarbonModel(grid=grid, drivers=drivers, n_threads=1),
              f"{all_threads} threads": LandCarbonModel(grid=grid, drivers=drivers, n_threads=all_threads)}
    print(f"24 cells, 2000-2010 monthly after a ramp from 1995; {all_threads} cores available")
    print(f"{'members':>8s} " + " ".join(f"{k:>12s}" for k in models) + "   auto threads")
    for n in (1, 2, 32, 256):
        space = models["auto"].space
        theta = space.from_unit(qmc.LatinHypercube(d=space.n_free, seed=0).random(n))
        row = []
        for m in models.values():
            m.simulate(theta[:1])  # compiled / warm
            walls = []
            for _ in range(3):
                t0 = time.perf_counter()
                m.simulate(theta)
                walls.append(time.perf_counter() - t0)
            row.append(float(np.median(walls)))
        print(f"{n:8d} " + " ".join(f"{w:11.3f}s" for w in row) + f"   {_kernel.auto_threads(n)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n_members", nargs="?", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default all cores)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (median reported)")
    ap.add_argument("--scaling", action="store_true", help="1, 2, 32, 256 members: threads vs members")
    args = ap.parse_args()
    if args.scaling:
        scaling()
        return
    print(f"machine probe: {machine_probe():.2f} ns per exp, single thread "
          "(the VM's speed drifts: compare runs by it)")
    t0 = time.perf_counter()
    model = LandCarbonModel(n_threads=args.threads)
    t_init = time.perf_counter() - t0
    u = qmc.LatinHypercube(d=model.space.n_free, seed=0).random(args.n_members)
    theta = model.space.from_unit(u)
    t0 = time.perf_counter()
    model.simulate(model.space.all_default)  # compiles the kernel on a fresh install
    t_first = time.perf_counter() - t0
    walls = []
    for _ in range(args.repeat):
        ds = None  # the previous run's outputs go before the next is allocated
        t0 = time.perf_counter()
        ds = model.simulate(theta)
        walls.append(time.perf_counter() - t0)
    wall = float(np.median(walls))
    n_cell, n_time = ds.sizes["cell"], ds.sizes["time"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(f"model set-up (grid, drivers): {t_init:.2f} s; first call (kernel compile or cache "
          f"load, 1 member): {t_first:.2f} s")
    print(f"members: {args.n_members}, cells: {n_cell}, tiles: {model.n_tiles}, months written: {n_time}, "
          f"kernel threads: {args.threads or numba.get_num_threads()}")
    print(f"simulated months per member incl. ramp from {model.drivers.attrs['ramp_start']}: "
          f"{model.drivers.sizes['time']} (+ spin-up cycles of 12 months)")
    print(f"wall time: {wall:.2f} s  ({wall / args.n_members:.3f} s per member)"
          + (f"; median of {', '.join(f'{w:.2f}' for w in walls)}" if len(walls) > 1 else ""))
    print(f"member-cell-months per second: {args.n_members * n_cell * n_time / wall:,.0f}")
    print(f"peak resident memory: {peak:.2f} GiB")
    print(f"failed members: {int((ds.status != 'done').sum())} of {args.n_members}")
    print(f"target: <= 20 s and <= 4 GiB -> {'met' if wall <= 20 and peak <= 4 else 'NOT met'}")
    del ds
    if args.threads:
        numba.set_num_threads(args.threads)
    one_month(model, theta)


if __name__ == "__main__":
    main()
