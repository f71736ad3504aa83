"""Benchmark: the embedded model, 100 members x all cells x 1959-2023 monthly, spin-up included.

Run:  python benchmarks/bench_simulate.py [n_members]
Prints wall time, member-cell-months per second and peak resident memory.
Target (issue 2): <= 20 s and <= 4 GiB on 2 cores for 100 members.
"""

import resource
import sys
import time

from scipy.stats import qmc

from bayescal.models import LandCarbonModel


def main(n_members: int = 100) -> None:
    t0 = time.perf_counter()
    model = LandCarbonModel()
    t_init = time.perf_counter() - t0
    u = qmc.LatinHypercube(d=model.space.n_free, seed=0).random(n_members)
    theta = model.space.from_unit(u)
    t0 = time.perf_counter()
    ds = model.simulate(theta)
    wall = time.perf_counter() - t0
    n_cell, n_time = ds.sizes["cell"], ds.sizes["time"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(f"model set-up (grid, drivers): {t_init:.2f} s")
    print(f"members: {n_members}, cells: {n_cell}, tiles: {model.n_tiles}, months written: {n_time}")
    print(f"simulated months per member incl. ramp from {model.drivers.attrs['ramp_start']}: "
          f"{model.drivers.sizes['time']} (+ spin-up cycles of 12 months)")
    print(f"wall time: {wall:.2f} s  ({wall / n_members:.3f} s per member)")
    print(f"member-cell-months per second: {n_members * n_cell * n_time / wall:,.0f}")
    print(f"peak resident memory: {peak:.2f} GiB")
    print(f"failed members: {int(ds.failed.sum())} of {n_members}")
    print(f"target: <= 20 s and <= 4 GiB -> {'met' if wall <= 20 and peak <= 4 else 'NOT met'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
