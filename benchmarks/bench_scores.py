"""Benchmark: score 1,000 members of the embedded model against the full twin product set.

Run:  python benchmarks/bench_scores.py [n_members]
Simulates 25 distinct members (Latin hypercube), repeats them to n_members (scoring cost does
not depend on the values), and times `bayescal.operators.scores.score` over the 7 twin products (2 GPP,
3 LAI, 2 latent heat; 1980-2019). Prints members per second and peak resident memory.
Target (issue 3): <= 30 s for 1,000 members on 2 cores.
"""

import resource
import sys
import time

import numpy as np
import xarray as xr
from scipy.stats import qmc

from bayescal.models import LandCarbonModel
from bayescal.observations.products import make_twin
from bayescal.operators.scores import score


def main(n_members: int = 1000) -> None:
    model = LandCarbonModel()
    obs, _ = make_twin(model, model.space.all_default, seed=0)
    u = qmc.LatinHypercube(d=model.space.n_free, seed=0).random(25)
    sim = model.simulate(model.space.from_unit(u), variables=["gpp", "lai", "hfls"])
    sim = sim[["gpp", "lai", "hfls"]].sel(time=slice("1980", "2019")).astype("float32")
    reps = int(np.ceil(n_members / sim.sizes["member"]))
    big = xr.concat([sim] * reps, dim="member").isel(member=slice(0, n_members))
    big = big.assign_coords(member=np.arange(n_members))
    gib = sum(v.nbytes for v in big.data_vars.values()) / 1024**3
    t0 = time.perf_counter()
    s = score(big, obs)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"members: {n_members}, products: {len(obs)}, cells: {big.sizes['cell']}, "
          f"months: {big.sizes['time']} (simulation held as float32: {gib:.2f} GiB)")
    print(f"scoring wall time: {wall:.2f} s  -> {n_members / wall:,.0f} members per second")
    print(f"peak resident memory (whole process): {peak:.2f} GiB")
    print(f"overall score range: {float(s.overall.min()):.3f} .. {float(s.overall.max()):.3f}")
    print(f"target: <= 30 s -> {'met' if wall <= 30 else 'NOT met'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
