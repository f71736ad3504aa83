"""Benchmark the ensemble runner: parallel efficiency on Dask and per-member bookkeeping.

Run:  python benchmarks/bench_runner.py [n_sleep_members] [n_embedded_members]

1. ``n_sleep_members`` (default 1,000) members of a simulator that sleeps 50 ms, one member per
   task, on a 2-worker Dask LocalCluster: wall time against the ideal n * 0.05 / 2 s.
2. ``n_embedded_members`` (default 10,000) members of the embedded model in-process, 50 members
   per call. The full model costs ~0.45 s a member on this machine, so this uses a reduced
   configuration (20 cells, 2001-2005 after a 5-year ramp) to keep the benchmark minutes long;
   the runner's own cost per member (store writes, failure checks, progress) does not depend on
   the model. Stored variables: the global annual totals. Reports the bookkeeping overhead per
   member (wall time minus time inside the simulator) and the peak memory of the process.
3. The store's check of its finished members (done on every resume and load): each file of 2.
   read by scipy's netCDF-3 reader (bayescal) against opening and loading it with xarray (the
   check it replaced), on the same files.
Targets (issue 4): >= 85 % parallel efficiency; bookkeeping <= 5 ms per member.
"""

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.parameters.design import latin_hypercube
from bayescal.run.ensemble import run_ensemble


class Sleeper:
    def __init__(self, seconds):
        self.seconds = seconds

    def __call__(self, theta):
        time.sleep(self.seconds * theta.shape[0])
        return xr.Dataset({"y": ("member", theta.sum(axis=1))}, coords={"member": np.arange(theta.shape[0])})


class Timed:
    """Wraps a simulator and accumulates the time spent inside it."""

    def __init__(self, sim):
        self.sim, self.inside = sim, 0.0

    def __call__(self, theta):
        t0 = time.perf_counter()
        try:
            return self.sim(theta)
        finally:
            self.inside += time.perf_counter() - t0


def dask_efficiency(n: int, tmp: Path) -> None:
    from distributed import Client, LocalCluster

    design = xr.DataArray(np.random.default_rng(0).random((n, 3)), dims=("member", "parameter"),
                          coords={"member": np.arange(n), "parameter": ["a", "b", "c"]})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        summary = run_ensemble(Sleeper(0.05), design, tmp / "sleep", executor=client, progress=False)
        wall = time.perf_counter() - t0
    ideal = n * 0.05 / 2
    print(f"[dask] {n} members x 50 ms on 2 workers: wall {wall:.1f} s, ideal {ideal:.1f} s, "
          f"parallel efficiency {ideal / wall:.1%} (target >= 85 %), done {summary.done}")


def embedded_overhead(n: int, tmp: Path) -> None:
    grid = make_grid(n_cells=20, seed=0)
    drivers = make_drivers(grid, start=2001, end=2005, ramp_start=1996)
    model = LandCarbonModel(grid=grid, drivers=drivers, chunk_size=50)
    space = model.space
    design = space.to_dataarray(space.expand(latin_hypercube(space, n, seed=1).values), full=True)
    timed = Timed(model)
    t0 = time.perf_counter()
    summary = run_ensemble(timed, design, tmp / "embedded", batch_size=50,
                           keep=["gpp_global", "nbp_global", "cveg_global"], progress=False)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    overhead = (wall - timed.inside) / n * 1e3
    print(f"[in-process] {n} embedded members (reduced grid): wall {wall:.1f} s, in simulator "
          f"{timed.inside:.1f} s, bookkeeping {overhead:.2f} ms per member (target <= 5 ms); "
          f"done {summary.done}, failed {summary.failed}")
    print(f"[in-process] peak resident memory of the process: {peak:.0f} MiB")


def store_check(tmp: Path, n_files: int = 2000) -> None:
    from bayescal.run.member_file import member_file_problem

    files = sorted((tmp / "embedded" / "members").glob("member_*.nc"))[:n_files]
    t0 = time.perf_counter()
    problems = [member_file_problem(p) for p in files]
    ours = (time.perf_counter() - t0) / len(files) * 1e3
    t0 = time.perf_counter()
    for p in files:
        with xr.open_dataset(p, engine="scipy") as ds:
            ds.load()
    peer = (time.perf_counter() - t0) / len(files) * 1e3
    print(f"[store check] {len(files)} member files: bayescal {ours:.2f} ms per file, xarray open + "
          f"load {peer:.2f} ms per file ({peer / ours:.0f}x); problems found {sum(map(bool, problems))}")


if __name__ == "__main__":
    n_sleep = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    n_emb = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    tmp = Path(tempfile.mkdtemp(prefix="bayescal-bench-"))
    try:
        dask_efficiency(n_sleep, tmp)
        embedded_overhead(n_emb, tmp)
        store_check(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
