"""Benchmark: Lu & Ricciuto's surrogate from 20 runs -- SVD (K = 5) + a TPE-tuned network -- like for like.

Run:  python benchmarks/bench_lu_ricciuto.py [--trials N] [--runs 20] [--large-cells 324] [--figure PNG]

The embedded model, eight parameters that move GPP, ``--runs`` Latin-hypercube training runs and
1,000 held-out test runs, in two cases:

- small: 24 cells, 2000-2010, annual GPP per cell and year (264 outputs);
- large: ``--large-cells`` cells, 2000-2010, monthly GPP per cell and month (324 x 132 = 42,768
  outputs, Lu & Ricciuto had 42,660: annual GPP of 1,422 cells over 30 years); the SVD keeps
  K = 5 modes, so the networks are those of the small case (0 skips the case).

For each, the test R2 of the field, both uniform over outputs (the mean of the outputs' R2, as Lu &
Ricciuto's 0.93: their Figs. 9 and 11 average it over locations and years) and variance-weighted
(1 - all squared errors / all variance), of: GP per mode (``SVDEmulator``); in the small case
scikit-learn's MLP per mode, Dagon's network with its defaults and bayescal's TPE search
(``tune_network``: ReLU-tanh, RMSprop, 5-fold CV, 60 trials); in both, Lu & Ricciuto's search
(``search="lu_ricciuto"``: 2-3 ReLU layers of <= 100 nodes, Adam, 30 % validation, 100 trials)
and the network that search selected in their paper (10, 10 nodes; learning rate 0.08).
Each tuned network is scored alone (one seed: Lu & Ricciuto's setting) and as the average of five
seeds. Also printed: the test R2 of all of Lu & Ricciuto's trials (their Fig. 8) and the learning
curves of the selected networks (their Fig. 6a; drawn into ``--figure``). ``--trials N`` sets both
searches' trials (shorter runs). Needs ``pip install "bayescal[tune]"``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from bayescal.emulators import DagonNetwork, SVDEmulator
from bayescal.emulators.tuning import LU_RICCIUTO_FIXED, network_params, tune_network
from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.parameters.design import latin_hypercube

PARAMETERS = ["vmax[BDL-EVG]", "vmax[GRASS-C3]", "vmax[NDL-EVG]", "kn[BDL-EVG]", "alpha_phtsyn[BDL-EVG]",
              "gamma_w", "beta2", "sn[GRASS-C3]"]
K = 5
N_SEEDS = 5


def runs(model, space, n, seed, monthly):
    """Unit-cube parameters and GPP (per cell and year, or per cell and month) of ``n`` LHS runs."""
    d = latin_hypercube(space, n, seed=seed)
    ds = model.simulate(space.expand(d.values), variables=["gpp"])
    ok = ds.status.values == "done"
    gpp = ds.gpp if monthly else ds.gpp.groupby("time.year").mean()
    gpp = gpp.transpose("member", "cell", ...).isel(member=ok)
    return space.to_unit(d.values)[ok], gpp.values.reshape(int(ok.sum()), -1) * 86400 * 365.25


def r2(Yt, P):
    """Test R2 of a field: uniform over outputs (those that vary in the test set) and variance-weighted."""
    ss_res = ((Yt - P) ** 2).sum(0)
    ss_tot = ((Yt - Yt.mean(0)) ** 2).sum(0)
    vary = ss_tot > 1e-12 * ss_tot.max()
    return float(np.mean(1 - ss_res[vary] / ss_tot[vary])), float(1 - ss_res.sum() / ss_tot.sum())


class Case:
    """One field: training and test runs, the SVD of the training field, a table of R2."""

    def __init__(self, name, n_cells, monthly, n_runs, n_test):
        grid = make_grid(n_cells=n_cells, seed=3)
        model = LandCarbonModel(grid=grid, drivers=make_drivers(grid, start=2000, end=2010, ramp_start=1995,
                                                                seed=3))
        space = model.space.only(PARAMETERS)
        t = time.perf_counter()
        self.U, self.Y = runs(model, space, n_runs, 7, monthly)
        self.Ut, self.Yt = runs(model, space, n_test, 99, monthly)
        self.name, self.rows = name, []
        self.mean = self.Y.mean(0)
        _, s, Vt = np.linalg.svd(self.Y - self.mean, full_matrices=False)
        self.s, self.Vt = s[:K], Vt[:K]
        self.scores = (self.Y - self.mean) @ self.Vt.T
        ss_tot = ((self.Yt - self.Yt.mean(0)) ** 2).sum(0)
        n_const = int((ss_tot <= 1e-12 * ss_tot.max()).sum())
        print(f"\n== {name}: {len(self.U)} training runs, {len(self.Ut)} test runs, "
              f"{self.Y.shape[1]:,} outputs ({n_const} constant in the test runs, left out of the uniform "
              f"R2); {K} modes keep {np.sum(s[:K]**2) / np.sum(s**2):.4f} of the training variance; runs "
              f"{time.perf_counter() - t:.0f} s", flush=True)

    def field(self, mode_scores):
        return self.mean + mode_scores @ self.Vt

    def add(self, label, pred, seconds):
        u, w = r2(self.Yt, pred)
        self.rows.append((label, u, w))
        print(f"  {label:66s} R2 uniform {u:.3f}  variance-weighted {w:.3f}  ({seconds:.1f} s)", flush=True)

    def table(self):
        print(f"\n{self.name}: test R2 of the field\n  {'method':66s} uniform  var-weighted")
        for label, u, w in self.rows:
            print(f"  {label:66s} {u:7.3f}  {w:12.3f}")


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def baselines(case, small):
    """GP per mode; in the small case also scikit-learn's MLP per mode and Dagon's default network."""
    gp = SVDEmulator(n_components=K, random_state=0)
    pred, sec = timed(lambda: gp.fit(case.U, case.Y).predict(case.Ut))
    case.add("GP per mode (SVDEmulator, K = 5)", pred, sec)
    if small:
        pred, sec = timed(lambda: SVDEmulator(n_components=K, estimator="mlp", random_state=0)
                          .fit(case.U, case.Y).predict(case.Ut))
        case.add("scikit-learn MLP per mode", pred, sec)
        net, sec = timed(lambda: DagonNetwork(random_state=0).fit(case.U, case.scores))
        case.add("network, defaults (Dagon: ReLU-tanh, RMSprop)", case.field(net.predict(case.Ut)), sec)


def papers_network(case):
    """The network Lu & Ricciuto's search selected on sELM: 2 ReLU layers of 10 nodes, Adam at 0.08."""
    params = {**LU_RICCIUTO_FIXED, "hidden": (10, 10), "learning_rate": 0.08}
    for n, label in ((1, "Lu & Ricciuto's selected network (10, 10; lr 0.08): one"),
                     (N_SEEDS, f"  the same, {N_SEEDS} seeds averaged")):
        net, sec = timed(lambda n=n: DagonNetwork(**params, n_ensemble=n).fit(case.U, case.scores))
        case.add(label, case.field(net.predict(case.Ut)), sec)


def tuned(case, search, trials, label):
    """TPE search, then the selected network alone and five seeds of its hyper-parameters averaged."""
    # the modes' variance shares weight a trial's error: that of the reconstructed field
    (net, info), sec = timed(lambda: tune_network(case.U, case.scores, n_trials=trials, seed=0,
                                                  weights=case.s**2, n_ensemble=1, search=search))
    case.add(f"{label}: one network", case.field(net.predict(case.Ut)), sec)
    params = {k: v for k, v in net.get_params().items() if k != "n_ensemble"}
    five, sec = timed(lambda: DagonNetwork(**params, n_ensemble=N_SEEDS).fit(case.U, case.scores))
    case.add(f"  the same hyper-parameters, {N_SEEDS} seeds averaged", case.field(five.predict(case.Ut)), sec)
    print(f"    best {info['best_params']}; its score {info['best_value']:.3f}"
          + (f" (defaults {info['default_cv_mse']:.3f})" if "default_cv_mse" in info else ""))
    return net, info


def trials_on_test(case, info):
    """Lu & Ricciuto's Fig. 8: every trial's network (refitted: fits are deterministic) on the test runs."""
    t = time.perf_counter()
    scores = []
    for trial in info["trials"]:
        net = DagonNetwork(**network_params("lu_ricciuto", trial["params"]), random_state=0)
        scores.append(r2(case.Yt, case.field(net.fit(case.U, case.scores).predict(case.Ut))))
    u = np.array(scores)[:, 0]
    values = np.array([tr["value"] for tr in info["trials"]])
    chosen = u[np.argmin(values)]
    print(f"  Fig. 8: the {len(u)} trials' test R2 (uniform) {u.min():.3f} to {u.max():.3f}, median "
          f"{np.median(u):.3f}, {np.sum(u > 0.9)} above 0.90; the selected (lowest validation MSE) "
          f"{chosen:.3f}, rank {int(np.sum(u > chosen)) + 1} of {len(u)} on the test runs "
          f"({time.perf_counter() - t:.0f} s)")


def curves(case, net):
    """Lu & Ricciuto's Fig. 6a in numbers: training and validation MSE (standardised modes) per epoch."""
    tr, va = net.loss_curve_, net.validation_loss_curve_
    best = int(np.argmin(va))
    at = sorted({0, 9, 49, 99, best, len(tr) - 1} & set(range(len(tr))))
    print(f"  learning curves of the selected network ({len(tr)} epochs, the best validation at epoch "
          f"{best + 1}; kept weights): " + "; ".join(f"epoch {i + 1} {tr[i]:.3f}/{va[i]:.3f}" for i in at)
          + " (training/validation MSE)")


def figure(path, nets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(nets), figsize=(5 * len(nets), 3.6), squeeze=False)
    for ax, (title, net) in zip(axes[0], nets, strict=True):
        epochs = np.arange(1, len(net.loss_curve_) + 1)
        ax.semilogy(epochs, net.loss_curve_, label="training (70 %)")
        ax.semilogy(epochs, net.validation_loss_curve_, label="validation (30 %)")
        ax.axvline(np.argmin(net.validation_loss_curve_) + 1, color="0.6", ls=":", label="kept weights")
        ax.set(title=title, xlabel="epoch", ylabel="MSE of the standardised modes")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nlearning curves drawn into {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=None,
                    help="TPE trials of both searches (default 60 for bayescal's, 100 for Lu & Ricciuto's)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--test-runs", type=int, default=1000)
    ap.add_argument("--large-cells", type=int, default=324, help="cells of the large case (0: skip it)")
    ap.add_argument("--figure", type=Path, default=Path("/tmp/bench_lu_ricciuto/learning_curves.png"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    lr_label = f"Lu & Ricciuto's search ({args.trials or 100} trials, 30 % validation)"
    small = Case("small: annual GPP, 24 cells x 11 years", 24, False, args.runs, args.test_runs)
    baselines(small, True)
    papers_network(small)
    tuned(small, "bayescal", args.trials or 60, f"bayescal's search ({args.trials or 60} trials, 5-fold CV)")
    net, info = tuned(small, "lu_ricciuto", args.trials, lr_label)
    curves(small, net)
    trials_on_test(small, info)
    nets, cases = [("annual GPP, 264 outputs", net)], [small]
    if args.large_cells:
        large = Case(f"large: monthly GPP, {args.large_cells} cells x 132 months", args.large_cells, True,
                     args.runs, args.test_runs)
        baselines(large, False)
        papers_network(large)
        net, _ = tuned(large, "lu_ricciuto", args.trials, lr_label)
        curves(large, net)
        nets.append((f"monthly GPP, {large.Y.shape[1]:,} outputs", net))
        cases.append(large)
    for case in cases:
        case.rows.append((f"{K} exact modes (the floor of the SVD)", *r2(case.Yt, case.field(
            (case.Yt - case.mean) @ case.Vt.T))))
        case.table()
    figure(args.figure, nets)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
