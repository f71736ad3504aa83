"""Benchmark: Dagon et al.'s emulator screen, 10^7 points through a GP emulator.

Run:  python benchmarks/bench_emulator_screen.py [--n 10000000] [--d 6] [--train 150]
Fits ``GPEmulator`` to ``train`` Latin-hypercube points of an analytic cost in ``d`` dimensions
(Dagon et al. screened six parameters), then times ``emulator_screen`` (histogram and best points
of 10^7 Sobol' points, in batches of 2^18) and ``emulator_optimum`` (differential evolution on the
emulator). Target (issue 20): 10^7 points in <= 2 minutes on 2 cores.
"""

import argparse
import resource
import time

import numpy as np
from scipy.stats import qmc

from bayescal.emulators import GPEmulator, emulator_optimum, emulator_screen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--d", type=int, default=6)
    ap.add_argument("--train", type=int, default=150)
    args = ap.parse_args()
    X = qmc.LatinHypercube(d=args.d, seed=0).random(args.train)
    y = ((X - 0.35) ** 2).sum(1) + 0.3 * np.sin(4 * X[:, 0]) * X[:, 1]
    t0 = time.perf_counter()
    gp = GPEmulator(random_state=0).fit(X, y)
    print(f"GP fit on {args.train} points, d = {args.d}: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    res = emulator_screen(gp, args.d, n=args.n, seed=0)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"screen of {args.n:,} points: {wall:.1f} s ({args.n / wall:,.0f} points/s), peak memory "
          f"{peak:.2f} GiB; cost min {res.attrs['min']:.4f}, mean {res.attrs['mean']:.4f}")
    t0 = time.perf_counter()
    u, c = emulator_optimum(gp, args.d, seed=0)
    print(f"differential evolution on the emulator: {time.perf_counter() - t0:.1f} s, cost {c:.4f} "
          f"(best screened {float(res['cost'][0]):.4f})")
    print(f"target: 10^7 points <= 120 s -> {'met' if wall <= 120 * args.n / 1e7 else 'NOT met'}")


if __name__ == "__main__":
    main()
