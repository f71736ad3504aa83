"""Benchmark: Lu & Ricciuto's surrogate from 20 runs -- SVD (K = 5) + a TPE-tuned network -- against GP modes.

Run:  python benchmarks/bench_lu_ricciuto.py [--trials 60] [--runs 20]

The embedded model in the test suite's twin setting (24 cells, 2000-2010), eight parameters that
move GPP, annual GPP per cell and year as the output field. Training: ``--runs`` Latin-hypercube
runs; test: 1,000 held-out runs. Prints the variance-weighted test R2 of the field for:
GP per mode (``SVDEmulator``), scikit-learn's MLP per mode, Dagon's network with its defaults, and
the same network with hyper-parameters tuned by TPE (Optuna) on 5-fold cross-validation -- Lu &
Ricciuto's recipe; they report R2 ~ 0.93 from 20 runs of ELM -- alone and as the average of five
networks from different seeds (``tune_network``'s default). Needs ``pip install "bayescal[tune]"``.
"""

import argparse
import time

import numpy as np
from sklearn.metrics import r2_score

from bayescal.emulators import DagonNetwork, SVDEmulator
from bayescal.emulators.tuning import tune_network
from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.parameters.design import latin_hypercube

PARAMETERS = ["vmax[BDL-EVG]", "vmax[GRASS-C3]", "vmax[NDL-EVG]", "kn[BDL-EVG]", "alpha_phtsyn[BDL-EVG]",
              "gamma_w", "beta2", "sn[GRASS-C3]"]
K = 5


def runs(model, space, n, seed):
    d = latin_hypercube(space, n, seed=seed)
    ds = model.simulate(space.expand(d.values), variables=["gpp"])
    ok = ds.status.values == "done"
    annual = ds.gpp.groupby("time.year").mean().transpose("member", "cell", "year").isel(member=ok)
    return space.to_unit(d.values)[ok], annual.values.reshape(int(ok.sum()), -1) * 86400 * 365.25


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    grid = make_grid(n_cells=24, seed=3)
    drivers = make_drivers(grid, start=2000, end=2010, ramp_start=1995, seed=3)
    model = LandCarbonModel(grid=grid, drivers=drivers)
    space = model.space.only(PARAMETERS)
    U, Y = runs(model, space, args.runs, 7)
    Ut, Yt = runs(model, space, 1000, 99)
    mean = Y.mean(0)
    _, s, Vt = np.linalg.svd(Y - mean, full_matrices=False)
    scores = (Y - mean) @ Vt[:K].T
    print(f"{len(U)} training runs, {len(Ut)} test runs, {Y.shape[1]} outputs; "
          f"{K} modes keep {np.sum(s[:K]**2) / np.sum(s**2):.4f} of the training variance")

    def report(name, pred, seconds):
        r2 = r2_score(Yt, pred, multioutput="variance_weighted")
        print(f"{name:34s} test R2 {r2:.3f}  ({seconds:.1f} s)")

    t = time.perf_counter()
    report("GP per mode (SVDEmulator, K=5)",
           SVDEmulator(n_components=K, random_state=0).fit(U, Y).predict(Ut), time.perf_counter() - t)
    t = time.perf_counter()
    report("scikit-learn MLP per mode", SVDEmulator(n_components=K, estimator="mlp", random_state=0)
           .fit(U, Y).predict(Ut), time.perf_counter() - t)
    t = time.perf_counter()
    net = DagonNetwork(random_state=0).fit(U, scores)
    report("network, default hyper-parameters", mean + net.predict(Ut) @ Vt[:K], time.perf_counter() - t)
    t = time.perf_counter()
    # the modes' variance shares weight the cross-validated error: that of the reconstructed field
    net, info = tune_network(U, scores, n_trials=args.trials, seed=0, weights=s[:K] ** 2, n_ensemble=1)
    report(f"network, TPE-tuned ({args.trials} trials)", mean + net.predict(Ut) @ Vt[:K],
           time.perf_counter() - t)
    t = time.perf_counter()
    five = DagonNetwork(**{k: v for k, v in net.get_params().items() if k != "n_ensemble"}, n_ensemble=5)
    report("  the same, 5 seeds averaged", mean + five.fit(U, scores).predict(Ut) @ Vt[:K],
           time.perf_counter() - t)
    print(f"  best hyper-parameters {info['best_params']}; 5-fold CV MSE (variance-weighted modes): "
          f"tuned {info['best_cv_mse']:.3f}, defaults {info['default_cv_mse']:.3f}")
    print(f"  the field's floor with {K} exact modes: test R2 "
          f"{r2_score(Yt, mean + ((Yt - mean) @ Vt[:K].T) @ Vt[:K], multioutput='variance_weighted'):.3f}")


if __name__ == "__main__":
    main()
