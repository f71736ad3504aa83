"""The site workflow's emulator route against the exact posterior of the same twin (issue 25, item 7).

    python benchmarks/bench_site_twin.py                      # examples/site_twin_puechabon.toml
    python benchmarks/bench_site_twin.py --config CFG --out /tmp/bst   # another twin
    python benchmarks/bench_site_twin.py --reuse              # the figures of finished runs
    python benchmarks/bench_site_twin.py --reuse-direct       # the emulator route again, same reference

Runs the twin config twice through the site workflow: as written (``posterior.route =
"emulator"``: design, the optimum, refinement rounds, emcee on the emulator) and on the direct
route (emcee on the model itself, ``--direct-steps`` steps at most: the exact-MCMC reference). It
prints, per calibrated value, the 5/50/95 % quantiles of both posteriors in the unit cube and
their largest difference; the 5/50/95 % quantiles of the held-out year's annual NEE over each
route's posterior draws (the model run at each draw, parameters only); model runs, wall time, the
chains' length in autocorrelation times; and the emulator route's rounds. Targets (issue 25):
quantiles within 0.05 of the cube, the annual-NEE band within 20 gC m-2 y-1, <= 300 model runs.
Wall times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]


def _run(cfg: dict, text: str, run_dir: Path) -> float:
    from bayescal.workflows import make_context

    ctx = make_context(cfg, run_dir, progress=False, config_text=text)
    t0 = time.perf_counter()
    ctx.run()
    print(ctx.summary())
    return time.perf_counter() - t0


def _posterior(run: Path) -> tuple[list[str], np.ndarray, xr.Dataset]:
    from bayescal.posterior import load_inference_data, unit_samples
    from bayescal.workflow.rundir import RunDir

    space = RunDir(run).space()
    u = np.asarray(unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), space))
    return space.labels, np.quantile(u, [0.05, 0.5, 0.95], axis=0), \
        xr.load_dataset(run / "posterior" / "diagnostics.nc")


def _annual_nee(run: Path, years: tuple[int, int]) -> np.ndarray:
    """5/50/95 % of each held-out year's annual NEE over the propagate stage's posterior draws."""
    from bayescal.run.ensemble import EnsembleStore

    ens = EnsembleStore(run / "propagate" / "ensemble").load()
    n = ens.sizes["member"] - 2  # the draws, then the optimum and the defaults
    ok = [m for m in range(n) if ens["status"].values[m] == "done"]
    ann = ens["nee"].isel(member=ok).sel(time=slice(str(years[0]), str(years[1]))).resample(time="YS").sum()
    return np.quantile(ann.values, [0.05, 0.5, 0.95], axis=0)  # (3, years)


def _runs(run: Path) -> dict[str, int]:
    records = (json.loads(p.read_text()) for p in sorted(run.glob("*/stage.json")))
    return {r["stage"]: r["runs"] for r in records}


def _truth(cfg: dict, years: tuple[int, int]) -> None:
    """The twin's truth run: is its canopy alive (mean LAI, GPP) and is the site a sink?"""
    if not cfg["observations"]["twin"]:
        return
    import tempfile

    from bayescal.workflows import make_context

    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(cfg, Path(tmp), progress=False)
        ds = ctx.model(ctx.truth_theta()[None]).isel(member=0)
    cal = slice(*map(str, cfg["site"]["calibration_years"]))
    ann = ds["nee"].sel(time=slice(str(cfg["site"]["calibration_years"][0]), str(years[1])))
    ann = ann.resample(time="YS").sum().values
    mean = {v: float(ds[v].sel(time=cal).mean()) for v in ("lai", "gpp") if v in ds}
    print("twin truth over the calibration years: " + ", ".join(f"mean {v} {x:.2f}" for v, x in mean.items())
          + f"; annual NEE to the held-out years {np.round(ann).tolist()} gC m-2 y-1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "site_twin_puechabon.toml")
    ap.add_argument("--out", type=Path, default=Path("runs") / "bench_site_twin")
    ap.add_argument("--direct-steps", type=int, default=40_000)
    ap.add_argument("--direct-n-steps", type=int, default=12_000,
                    help="the direct route's n_steps (its first half adapts the moves)")
    ap.add_argument("--reuse", action="store_true", help="only print the figures of finished runs")
    ap.add_argument("--reuse-direct", action="store_true",
                    help="run the emulator route only (the finished OUT/direct is the reference)")
    args = ap.parse_args()
    from bayescal.workflows.validate import load_config

    text = args.config.read_text()
    emu_cfg = load_config(args.config)
    direct_cfg = copy.deepcopy(emu_cfg)
    direct_cfg["posterior"].update(route="direct", max_steps=args.direct_steps, n_steps=args.direct_n_steps)
    walls = {}
    for name, cfg in (("direct", direct_cfg), ("emulator", emu_cfg)):
        run = args.out / name
        if not args.reuse and not (args.reuse_direct and name == "direct"):
            print(f"== {name} route -> {run}")
            walls[name] = _run(cfg, text, run)
    labels, q_ref, d_ref = _posterior(args.out / "direct")
    _, q_emu, d_emu = _posterior(args.out / "emulator")
    print(f"\n{'value':7s}{'exact q05/q50/q95':>26s}{'emulator q05/q50/q95':>26s}{'max |diff|':>12s}")
    for j, k in enumerate(labels):
        ref, emu = ("  ".join(f"{x:6.3f}" for x in q[:, j]) for q in (q_ref, q_emu))
        print(f"{k:7s}{ref:>26s}{emu:>26s}{np.abs(q_ref[:, j] - q_emu[:, j]).max():12.3f}")
    print(f"largest quantile difference (unit cube): {np.abs(q_ref - q_emu).max():.3f} (target 0.05)")
    years = tuple(emu_cfg["site"]["validation_years"])
    a_ref, a_emu = _annual_nee(args.out / "direct", years), _annual_nee(args.out / "emulator", years)
    for i, y in enumerate(range(years[0], years[1] + 1)):
        print(f"annual NEE {y} (gC m-2 y-1) 5/50/95 %: exact {np.round(a_ref[:, i], 1)}, emulator "
              f"{np.round(a_emu[:, i], 1)}; largest difference {np.abs(a_ref[:, i] - a_emu[:, i]).max():.1f} "
              "(target 20)")
    for name, d in (("direct", d_ref), ("emulator", d_emu)):
        a = d.attrs
        print(f"{name}: {a['n_walkers']} walkers x {a['n_steps']} steps, max tau {a['tau_max']:.0f} "
              f"({a['n_steps'] / a['tau_max']:.0f} tau), max R-hat {float(d['r_hat'].max()):.3f}, "
              f"model runs {_runs(args.out / name)}" + (f", {walls[name]:.0f} s" if name in walls else ""))
    _truth(emu_cfg, years)
    h = xr.load_dataset(args.out / "emulator" / "posterior" / "refinement.nc")
    print("emulator rounds: runs in the emulator", h["n_train"].values.tolist(), "; q90 sd[log L]",
          np.round(h["sd_loglik_q90"].values, 2).tolist(), "; converged", bool(h.attrs["converged"]))


if __name__ == "__main__":
    main()
