"""GP emulator fit time, peak memory, scaling and prediction throughput (issue: emulators).

    python benchmarks/bench_emulators.py            # full table (about 15 minutes on 2 cores)
    python benchmarks/bench_emulators.py --quick    # n = 1,530, d = 165 only

Each fit runs in its own process (so peak RSS is that fit's), on a synthetic 165-parameter
function of the CLASSIC paper's shape: 15 active parameters, the rest inert. scikit-learn's
GaussianProcessRegressor (ARD Matern 5/2 + white noise, one start) runs beside it where it
finishes within the time limit (``--sklearn-limit`` seconds, default 300).

Targets (2 cores): fit at n = 1,530, d = 165 <= 60 s and <= 2 GiB; mean prediction >= 30,000
points/s; mean + sd >= 5,000 points/s. The matrix-product rate of this machine is printed for
reference (exact variance costs about 2 n^2 flops per point).

``--active-mean`` times only the sampler's call of the history-matching emulator
(``ActiveGPEmulator``: 27 outputs, 12 active inputs each, conditioned on 400 runs, the means at
41 points, the size of the main job's chain): the compiled all-outputs mean against the GPs' own
numpy predictions it replaced, and the largest difference between them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def problem(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    w = np.zeros(d)
    k = min(15, d)
    w[:k] = np.linspace(3.0, 0.5, k)
    y = np.sin(X @ w / 3.0) + (X[:, : min(5, d)] ** 2).sum(1)
    return X, y


def child(kind: str, n: int, d: int) -> None:
    X, y = problem(n, d)
    t0 = time.perf_counter()
    if kind == "bayescal":
        from bayescal.emulators import GPEmulator

        gp = GPEmulator(random_state=0).fit(X, y)
        lml = gp.log_marginal_likelihood_value_
    else:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.full(d, np.sqrt(d / 6)), (1e-2, 1e3), nu=2.5) \
            + WhiteKernel(1e-4, (1e-9, 1.0))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(X, y)
        lml = gp.log_marginal_likelihood_value_
    fit = time.perf_counter() - t0
    out = {"fit_s": fit, "lml": float(lml),
           "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if kind == "bayescal" and n == 1530 and d == 165:
        Xt = np.random.default_rng(1).random((60_000, d))
        gp.predict(Xt[:1000])
        t0 = time.perf_counter()
        gp.predict(Xt)
        out["mean_pts_s"] = len(Xt) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        gp.predict(Xt[:20_000], return_std=True)
        out["std_pts_s"] = 20_000 / (time.perf_counter() - t0)
        Xv, yv = problem(2000, d, seed=5)
        out["test_r2"] = float(1 - np.mean((gp.predict(Xv) - yv) ** 2) / np.var(yv))
        out["loo_r2"] = gp.loo().attrs["r2"]
    print(json.dumps(out))


def run(kind: str, n: int, d: int, limit: float) -> dict | None:
    cmd = [sys.executable, __file__, "--child", kind, str(n), str(d)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def gemm_rate() -> float:
    a = np.random.default_rng(0).random((2000, 2000))
    a @ a
    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2000**3 / (time.perf_counter() - t0) / 1e9


def active_mean(calls: int = 300) -> None:
    from threadpoolctl import threadpool_limits

    from bayescal.emulators.active import ActiveGPEmulator

    rng = np.random.default_rng(0)
    X = rng.random((1269, 122))
    Y = np.sin(X @ rng.standard_normal((122, 27))) + 0.1 * (X[:, :5] ** 2).sum(1, keepdims=True)
    em = ActiveGPEmulator(random_state=0).fit(X, Y)
    P = rng.random((41, 122))
    with threadpool_limits(1, user_api="blas"):  # as the sampler runs
        fast = em.predict(P)
        t0 = time.perf_counter()
        for _ in range(calls):
            em.predict(P)
        ours = (time.perf_counter() - t0) / calls * 1e3
        em._packed_ = None  # the numpy path: each GP's own block prediction
        slow = em.predict(P)
        t0 = time.perf_counter()
        for _ in range(calls):
            em.predict(P)
        peer = (time.perf_counter() - t0) / calls * 1e3
    print(f"active-subspace emulator, means of 27 outputs at 41 points: compiled {ours:.2f} ms per call, "
          f"numpy per GP {peer:.2f} ms ({peer / ours:.1f}x); largest difference "
          f"{np.abs(fast - slow).max():.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sklearn-limit", type=float, default=300.0)
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--active-mean", action="store_true")
    args = ap.parse_args()
    if args.active_mean:
        active_mean()
        return
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    print(f"numpy matrix product: {gemm_rate():.1f} GFLOP/s")
    main_fit = run("bayescal", 1530, 165, 3600)
    print(f"\nn = 1,530, d = 165: fit {main_fit['fit_s']:.1f} s (target 60), peak RSS "
          f"{main_fit['peak_gib']:.2f} GiB (target 2)")
    print(f"  predict mean: {main_fit['mean_pts_s']:,.0f} points/s (target 30,000)")
    print(f"  predict mean + sd: {main_fit['std_pts_s']:,.0f} points/s (target 5,000; "
          f"~2n^2 = {2 * 1530**2 / 1e6:.1f} MFLOP/point)")
    print(f"  held-out R2 {main_fit['test_r2']:.4f}, closed-form LOO R2 {main_fit['loo_r2']:.4f}")
    if args.quick:
        return
    head = f"{'s':>10} {'GiB':>5} {'log ML':>10}"
    print(f"\n{'n':>6} {'d':>4} | bayescal {head} | sklearn {head}")
    configs = [(n, 20) for n in (250, 500, 1000, 2000, 4000)] + [(1530, d) for d in (10, 40, 80, 165)]
    for n, d in configs:
        ours = run("bayescal", n, d, 3600)
        sk = run("sklearn", n, d, args.sklearn_limit)
        sk_txt = (f"{sk['fit_s']:10.1f} {sk['peak_gib']:5.2f} {sk['lml']:10.1f}" if sk
                  else f"{'> ' + str(int(args.sklearn_limit)):>10} {'-':>5} {'-':>10}")
        ours_txt = f"{ours['fit_s']:10.1f} {ours['peak_gib']:5.2f} {ours['lml']:10.1f}"
        print(f"{n:6d} {d:4d} |          {ours_txt} |         {sk_txt}", flush=True)


if __name__ == "__main__":
    main()
