"""Screen the embedded model's 122 parameter values with Sobol' and Morris (SALib).

    python examples/screen_parameters.py [OUT_DIR]

Runs a Morris screen of every value, a grouped Sobol' analysis of the 22 parameter families and
the one-at-a-time screen of the CLM5 paper, for four targets (global GPP, NBP, soil carbon, LAI),
on a reduced model configuration (40 cells, 2001-2005) so that it takes a few minutes; writes the
ranking and heat-map figures and prints the reduced parameter space.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from bayescal.analysis.sensitivity import (  # noqa: E402
    analyze,
    evaluate,
    one_at_a_time,
    sample,
    screen,
)
from bayescal.models import LandCarbonModel, make_drivers, make_grid  # noqa: E402
from bayescal.report import plot_heatmap, plot_ranking

TARGETS = {
    "gpp": lambda ds: ds.gpp_global.mean("year"),
    "nbp": lambda ds: ds.nbp_global.mean("year"),
    "csoil": lambda ds: ds.csoil_global.mean("year"),
    "lai": lambda ds: (ds.lai.mean("time") * ds.area).sum("cell") / ds.area.sum(),
}


def main(out: str = "runs/screening") -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = make_grid(n_cells=40, seed=0)
    model = LandCarbonModel(grid=grid, drivers=make_drivers(grid, start=2001, end=2005, ramp_start=1996),
                            chunk_size=64)
    space = model.space

    morris = sample(space, "morris", 20, seed=1)
    mor = analyze(space, morris, evaluate(model, morris, TARGETS, store=out_dir / "morris", batch_size=64),
                  on_failure="drop")
    print(f"Morris: {morris.sizes['member']} runs; top 10 by mu*: {', '.join(screen(mor, top_k=10))}")

    sob_design = sample(space, "sobol", 64, seed=2, groups=True)
    sob = analyze(space, sob_design,
                  evaluate(model, sob_design, TARGETS, store=out_dir / "sobol_groups", batch_size=64),
                  on_failure="drop")
    print(f"Sobol' (families): {sob_design.sizes['member']} runs; influential (ST lower bound > 0.05): "
          f"{', '.join(screen(sob, threshold=0.05))}")

    oat = one_at_a_time(model, space, TARGETS)
    best = oat["mean_rank"].sortby(oat["mean_rank"]).parameter.values[:10]
    print(f"one-at-a-time: {oat.attrs['runs']} runs; best mean rank: {', '.join(map(str, best))}")

    kept = screen(mor, threshold=0.1)
    reduced = space.only(kept)
    reduced.to_toml(out_dir / "screened_space.toml")
    path = out_dir / "screened_space.toml"
    print(f"reduced space: {reduced.n_free} free values of {space.n_values} -> {path}")

    plot_ranking(mor, "gpp").figure.savefig(out_dir / "morris_gpp.png", dpi=120)
    plot_heatmap(sob).figure.savefig(out_dir / "sobol_families_heatmap.png", dpi=120)
    print(f"figures in {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
