"""The report of a Dagon-workflow run directory: the paper's figures under its numbers. Reads only
the run directory.

Each figure's data come from a function a test checks against a hand computation
(``tests/test_dagon_figures.py``), and its plotting function draws exactly those data: parameter-effect
maps (Fig. 1) and the rank tables (Tables S3-S5), the PPE's PC scores with the observations' and
the default's (Fig. 3, :mod:`.dagon_pcs`), EOF maps (Fig. 4), the network's PC scores against the
model's on the held-out runs (Fig. 5, :mod:`.dagon_pcs`), the RMSE against the observations of
the EOF reconstruction and of the network against the model's, and the cost of Eq. 6 by the
network against the model's (Fig. 6, :mod:`.dagon_pcs`), permutation importance (Fig. 7),
partial dependence (Fig. 8), the emulated cost of the 10^7-point screen, the pair plot of its best
points (Fig. 9), the PCs of the observations, the default, the emulated and the verified optimum
(Fig. 10), the bias maps of the verified optimum and of the default against the observations
(Fig. 11, :mod:`.dagon_maps`), and the optimum against the defaults in physical units.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..emulators import load_emulator
from .dagon_maps import bias_map_data, plot_bias_maps, verified_runs
from .dagon_network import network_diagram_data, plot_network
from .dagon_pcs import (
    error_data,
    plot_errors,
    plot_ppe_pcs,
    plot_validation_pcs,
    ppe_pc_data,
    validation_pc_data,
)
from .figures import plt
from .page import png, write_page

__all__ = ["bias_map_data", "error_data", "importance_data", "optimum_values", "pair_data",
           "partial_dependence_data", "pc_comparison", "pe_maps", "plot_bias_maps", "plot_cost_histogram",
           "plot_eof_maps", "plot_errors", "plot_importance", "plot_oat_ranks", "plot_optimum", "plot_pair",
           "plot_partial_dependence", "plot_pcs", "plot_pe_maps", "plot_ppe_pcs", "plot_validation_pcs",
           "ppe_pc_data", "rank_table", "validation_pc_data", "write_dagon_report"]

#: Fig. 10's colours: observations red, default black, emulated optimum blue, model optimum green
PC_CASES = {"observed": "C3", "default (model)": "k", "optimum (emulator)": "C0", "optimum (model)": "C2"}


# --------------------------------------------------------------- Fig. 1 and Tables S3-S5
def pe_maps(ranking: xr.Dataset, units: list[str], output: str = "gpp") -> xr.DataArray:
    """Fig. 1: the parameter-effect maps ``|X(max) - X(min)|`` of ``units`` for one output (the
    calibrated units, in their rank order by effect); carbon fluxes in g m-2 d-1."""
    units = sorted((u for u in units if u in ranking["parameter"].values),
                   key=lambda u: float(ranking["pe_rank"].sel(parameter=u)))
    da = ranking["pe_map"].sel(output=output, parameter=units)
    unit = str(ranking["output_units"].sel(output=output).values) if "output_units" in ranking else ""
    if unit == "kg m-2 s-1":
        da, unit = da * 86400e3, "g m-2 d-1"
    return da.assign_attrs(units=unit, output=output)


def plot_pe_maps(maps: xr.DataArray):
    """The maps of :func:`pe_maps` on the cells' longitude and latitude, one panel a unit."""
    n = maps.sizes["parameter"]
    cols = min(n, 3)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.8 * cols, 2.5 * -(-n // cols)), squeeze=False)
    for ax, p in zip(axes.flat, maps["parameter"].values, strict=False):
        sc = ax.scatter(maps["lon"].values, maps["lat"].values, c=maps.sel(parameter=p).values, s=14,
                        cmap="viridis", vmin=0)
        ax.set_title(f"{p}: {maps.attrs['output'].upper()} PE", fontsize=8)
        ax.set(xlim=(-180, 180), ylim=(-60, 80))
        ax.tick_params(labelsize=6)
        fig.colorbar(sc, ax=ax, shrink=0.8, label=maps.attrs["units"])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def rank_table(ranking: xr.Dataset, chosen: list[str]):
    """Tables S3-S5: per unit the PE rank for each output, the mean and overall PE ranks, the
    pattern correlation and its rank, the combined rank and whether it is calibrated; by PE rank."""
    import pandas as pd

    df = pd.DataFrame({f"PE rank {o}": ranking["pe_rank_by_output"].sel(output=o).values
                       for o in ranking["output"].values}, index=ranking["parameter"].values)
    for col, var in (("mean PE rank", "pe_mean_rank"), ("PE rank", "pe_rank"), ("PC", "pc"),
                     ("PC rank", "pc_rank"), ("combined rank", "combined_rank")):
        df[col] = ranking[var].values
    df["calibrated"] = [p in chosen for p in df.index]
    return df.sort_values("PE rank")


def plot_oat_ranks(ranking: xr.Dataset, top: int = 25):
    """PE rank, PC rank and combined rank per unit, best by effect first (Tables S3-S5 as bars)."""
    order = np.argsort(ranking["pe_rank"].values)[:top]
    labels = ranking["parameter"].values[order]
    y = np.arange(order.size)
    fig, ax = plt.subplots(figsize=(7, 0.25 * order.size + 1.2))
    for i, (name, color) in enumerate((("pe_rank", "C0"), ("pc_rank", "C1"), ("combined_rank", "k"))):
        ax.barh(y + 0.27 * (i - 1), ranking[name].values[order], height=0.26, color=color,
                label=name.replace("_", " "))
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="rank (1 = most influential / least redundant)",
           title="one-at-a-time screening: parameter effect (PE) and pattern correlation (PC)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ Fig. 4
def plot_eof_maps(eof: xr.Dataset, variables: list[str], lat: np.ndarray, lon: np.ndarray):
    """The leading EOF patterns of each variable on the model's cells (Dagon Fig. 4)."""
    n_modes = max(eof.sizes[f"{v}_mode"] for v in variables)
    fig, axes = plt.subplots(len(variables), n_modes, figsize=(3.6 * n_modes, 2.4 * len(variables)),
                             squeeze=False)
    for i, v in enumerate(variables):
        cells = eof[f"{v}_cells"].values.astype(bool)
        for m in range(n_modes):
            ax = axes[i, m]
            if m >= eof.sizes[f"{v}_mode"]:
                ax.axis("off")
                continue
            pattern = eof[f"{v}_eof"].values[m] / eof[f"{v}_weight"].values
            lim = np.abs(pattern).max() or 1.0
            sc = ax.scatter(lon[cells], lat[cells], c=pattern, cmap="RdBu_r", vmin=-lim, vmax=lim, s=14)
            ax.set_title(f"{v.upper()} EOF {m + 1} ({eof[f'{v}_fraction'].values[m]:.0%})", fontsize=8)
            ax.set(xlim=(-180, 180), ylim=(-60, 80))
            ax.tick_params(labelsize=6)
            fig.colorbar(sc, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------- Figs. 7 and 8
def importance_data(interp: xr.Dataset, variable: str, mode: int = 0) -> xr.Dataset:
    """Fig. 7: the test members' MSE of one PC with each parameter shuffled, and unshuffled."""
    m = {f"{variable}_mode": mode}
    return xr.Dataset({k: interp[f"{variable}_{name}"].isel(m, drop=True)
                       for k, name in (("mse", "mse"), ("mse_sd", "mse_sd"), ("baseline", "baseline_mse"))},
                      attrs={"variable": variable, "mode": mode + 1})


def plot_importance(data: list[xr.Dataset]):
    """One panel a variable: the unshuffled MSE (orange, top) and each parameter's (blue)."""
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 0.3 * data[0].sizes["parameter"] + 1.6),
                             squeeze=False)
    for ax, d in zip(axes[0], data, strict=True):
        labels = ["no permutation", *d["parameter"].values.tolist()]
        ax.barh(np.arange(len(labels)), [float(d["baseline"]), *d["mse"].values],
                xerr=[0, *d["mse_sd"].values], color=["C1"] + ["C0"] * d.sizes["parameter"])
        ax.set_yticks(np.arange(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="mean squared error (test members)",
               title=f"{d.attrs['variable'].upper()} PC{d.attrs['mode']}")
    fig.tight_layout()
    return fig


def partial_dependence_data(interp: xr.Dataset, variables: list[str], mode: int = 0) -> xr.DataArray:
    """Fig. 8: the average emulated PC on (variable, parameter, value) with each parameter fixed."""
    pds = [interp[f"{v}_partial_dependence"].isel({f"{v}_mode": mode}, drop=True) for v in variables]
    return xr.concat(pds, dim=xr.DataArray(variables, dims="variable")).assign_attrs(mode=mode + 1)


def plot_partial_dependence(pd: xr.DataArray):
    """One panel a parameter, one line a variable (markers at the fixed values)."""
    params = pd["parameter"].values
    cols = min(len(params), 3)
    rows = -(-len(params) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.4 * rows), squeeze=False)
    for ax, p in zip(axes.flat, params, strict=False):
        for k, v in enumerate(pd["variable"].values):
            ax.plot(pd["value"].values, pd.sel(variable=v, parameter=p).values, marker="o^sv"[k % 4], ms=3,
                    color=("C3", "C0", "C2", "C4")[k % 4], label=f"{v.upper()} PC{pd.attrs['mode']}")
        ax.set_title(str(p), fontsize=8)
        ax.set_xlabel("scaling value", fontsize=7)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------- the screen: histogram, Fig. 9
def plot_cost_histogram(screen: xr.Dataset, optimum: dict):
    """The emulated cost over the screen's points, with the default and the DE optimum (the
    threshold of the best points is Dagon's magenta line of Fig. 6e)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    lo, hi, count = screen["bin_lower"].values, screen["bin_upper"].values, screen["count"].values
    ax.bar(lo, count, width=hi - lo, align="edge", color="0.6")
    e, mo = optimum["emulated_cost"], optimum["model_cost"]
    ax.axvline(e["default"], color="C0", ls="--", label=f"default: emulated {e['default']:.3g}, "
               f"model {mo['default']:.3g}")
    first = e.get("round_0", e["optimum"])  # a run directory of before: its "optimum" was round 0's
    ax.axvline(first, color="C3", label=f"DE optimum (round 0): emulated {first:.3g}; "
               f"best verified: model {mo['optimum']:.3g}")
    ax.axvline(float(screen["cost"].values.max()), color="m", lw=0.8,
               label=f"threshold of the {screen.sizes['best']} best")
    used = count > 0
    ax.set(xlabel="cost J (Eq. 6)", ylabel="points", yscale="log", xlim=(lo[used].min(), hi[used].max()),
           title=f"emulated cost at {screen.attrs['n']:,} Sobol' points")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pair_data(screen: xr.Dataset, bins: int = 10) -> xr.Dataset:
    """Fig. 9: the screen's best points (best first) and each parameter's histogram of them on
    ``bins`` equal bins of [0, 1]."""
    order = np.argsort(screen["cost"].values, kind="stable")
    u = screen["u"].isel(best=order)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.stack([np.histogram(u.values[:, j], bins=edges)[0] for j in range(u.sizes["parameter"])])
    return xr.Dataset({"u": u, "cost": screen["cost"].isel(best=order),
                       "count": (("parameter", "bin"), counts), "edge": ("edge", edges)})


def plot_pair(data: xr.Dataset, optimum_u=None):
    """Histograms on the diagonal, every pair's points below it; the DE optimum as a red star."""
    labels, u = data["parameter"].values, data["u"].values
    d = len(labels)
    fig, axes = plt.subplots(d, d, figsize=(1.7 * d + 0.6, 1.7 * d + 0.6), squeeze=False)
    edges = data["edge"].values
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.bar(edges[:-1], data["count"].values[i], width=np.diff(edges), align="edge", color="C0")
            else:
                ax.scatter(u[:, j], u[:, i], s=2, color="C0", alpha=0.4, rasterized=True)
                if optimum_u is not None:
                    ax.scatter([optimum_u[j]], [optimum_u[i]], marker="*", s=60, color="C3")
                ax.set_ylim(0, 1)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=5)
            if i == d - 1:
                ax.set_xlabel(labels[j], fontsize=7)
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i], fontsize=7)
    fig.suptitle(f"the {u.shape[0]} best of the emulated screen (scaling values)", fontsize=9)
    fig.subplots_adjust(left=0.08, bottom=0.08, right=0.98, top=0.94, wspace=0.3, hspace=0.3)
    return fig


# ---------------------------------------------------------------- Fig. 10 and the optimum
def pc_comparison(eof: xr.Dataset, optimum: dict, variable: str) -> xr.Dataset:
    """Fig. 10: one variable's PCs (case, mode) -- observed (Eq. 5), the default run's, the network's
    at the best verified optimum and the model's there -- with the observed PCs' sigma of Eq. 6."""
    best = next(r for r in optimum["rounds"] if r["round"] == optimum.get("optimum_round", 0))
    rows = [eof[f"{variable}_obs_pc"].values, optimum["default_pcs"]["model"][variable],
            best["emulated_pcs"][variable], best["model_pcs"][variable]]
    mode = np.arange(1, len(rows[0]) + 1)
    return xr.Dataset({"pc": (("case", "mode"), np.array(rows, dtype=float)),
                       "obs_sd": ("mode", eof[f"{variable}_obs_sd"].values)},
                      coords={"case": list(PC_CASES), "mode": mode}).assign_attrs(variable=variable)


def plot_pcs(data: list[xr.Dataset]):
    """Grouped bars per mode, one panel a variable, in Fig. 10's colours."""
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 3.2), squeeze=False)
    for ax, d in zip(axes[0], data, strict=True):
        x = np.arange(d.sizes["mode"])
        for k, (case, color) in enumerate(PC_CASES.items()):
            err = d["obs_sd"].values if case == "observed" else None
            ax.bar(x + 0.2 * (k - 1.5), d["pc"].sel(case=case).values, width=0.2, color=color, yerr=err,
                   label=case)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_xticks(x, [f"PC{m}" for m in d["mode"].values])
        ax.set_title(d.attrs["variable"].upper(), fontsize=9)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def optimum_values(optimum: dict) -> xr.Dataset:
    """The calibrated values at the defaults and at the best verified optimum, in physical units,
    with their bounds and positions in the range (0 lower, 1 upper)."""
    v = optimum["values"]
    ds = xr.Dataset({k: ("value", np.asarray(v[k], dtype=float))
                     for k in ("default", "optimum", "lower", "upper")},
                    coords={"value": v["labels"], "units": ("value", v["units"])})
    span = ds["upper"] - ds["lower"]
    return ds.assign(default_position=(ds["default"] - ds["lower"]) / span,
                     optimum_position=(ds["optimum"] - ds["lower"]) / span)


def plot_optimum(vals: xr.Dataset):
    """Each value's range as a line, its default (blue) and optimum (red) on it, both written out
    in physical units."""
    n = vals.sizes["value"]
    y = np.arange(n)
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * n + 1.3))
    ax.hlines(y, 0, 1, color="0.8", lw=3)
    ax.scatter(vals["default_position"].values, y, color="C0", s=18, label="default", zorder=3)
    ax.scatter(vals["optimum_position"].values, y, color="C3", marker="D", s=18, label="optimum", zorder=3)
    for k in range(n):
        ax.text(1.02, y[k], f"{vals['default'].values[k]:.3g} → {vals['optimum'].values[k]:.3g} "
                f"{vals['units'].values[k]}", va="center", fontsize=6)
    ax.set_yticks(y, vals["value"].values, fontsize=6)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="position in the range (0 = lower, 1 = upper bound)",
           title="best verified optimum vs default (physical values at the right)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _tables(df, vals: xr.Dataset | None, optimum: dict) -> list[str]:
    """The rank table and the optimum's rounds and values as HTML."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["unit", *df.columns])
    rows = "".join("<tr><td>" + html.escape(str(i)) + "</td>" + "".join(
        f"<td>{x:.3g}</td>" if isinstance(x, float) else f"<td>{x}</td>" for x in r) + "</tr>"
        for i, r in zip(df.index, df.itertuples(index=False), strict=True))
    e, m = optimum["emulated_cost"], optimum["model_cost"]
    n_out = sum(str(c).startswith("PE rank ") for c in df.columns)
    out = [f"<h2>One-at-a-time screen (Tables S3-S5)</h2><table class='t'><tr>{head}</tr>{rows}</table>",
           f"<p>PC: the pattern correlation summed over the {n_out} outputs (lower is more distinct); a "
           "unit without any effect on an output has no pattern there and scores the worst, 1, so a unit "
           f"without any effect has PC {n_out}.</p>",
           "<h2>Optimum</h2>",
           f"<p>Cost J (Eq. 6): default {m['default']:.3g} by the model ({e['default']:.3g} emulated"
           + ("" if optimum.get("default_u_exact", True) else " at each family's factor nearest its "
              "defaults, their mean position in the ranges: the defaults are not on the scaling") + "); "
           f"best verified optimum {m['optimum']:.3g} by the model; round 0 is Dagon's (the DE optimum "
           f"on the emulator, {e.get('round_0', e['optimum']):.3g} emulated), later rounds add each verified "
           "run to the networks' training and search again.</p>",
           "<table class='t'><tr><th>round</th><th>emulated J</th><th>model J</th></tr>",
           *[f"<tr><td>{r['round']}</td><td>{r['emulated_cost']:.3g}</td><td>{r['model_cost']:.3g}</td></tr>"
             for r in optimum["rounds"]], "</table>"]
    if vals is not None:
        cells = ("default", "optimum", "lower", "upper")
        rows = "".join(
            f"<tr><td>{lab}</td>" + "".join(f"<td>{float(vals[k].values[i]):.4g}</td>" for k in cells)
            + f"<td>{vals['units'].values[i]}</td></tr>" for i, lab in enumerate(vals["value"].values))
        out.append("<table class='t'><tr><th>value</th>" + "".join(f"<th>{k}</th>" for k in cells)
                   + f"<th>units</th></tr>{rows}</table>")
    return out


def optimum_positions(vals: xr.Dataset, space) -> dict[str, float]:
    """Each calibrated value's optimum as a position on its own scale in ``space`` (the model's
    full space: a log-scaled value's position is log-uniform, as ``observations.truth``'s are)."""
    full = space.unfix()
    theta = np.asarray(full.all_default, dtype=float).copy()
    labels = [str(x) for x in vals["value"].values]
    theta[[full.all_labels.index(lab) for lab in labels]] = vals["optimum"].values
    u = full.to_unit(theta)
    return {lab: float(u[full.all_labels.index(lab)]) for lab in labels}


def twin_paragraph(obs: dict, positions: dict[str, float] | None) -> str:
    """A twin's truth against the calibration: each value ``observations.truth`` moves, its
    position in its range and the best verified optimum's (``positions``: :func:`optimum_positions`),
    and the moved values not calibrated (no optimum can reach the truth in them); "" for real
    products or without the optimum's values."""
    if not obs.get("twin") or not obs.get("truth") or positions is None:
        return ""
    truth = obs["truth"].items()
    moved = [f"{html.escape(k)} {float(v):.2f} (optimum {positions[k]:.2f})"
             for k, v in truth if k in positions]
    left = [f"{html.escape(k)} {float(v):.2f}" for k, v in truth if k not in positions]
    n = len(obs["truth"])
    out = (f"<p>Twin: the truth moves {n} value{'s' * (n != 1)} from the defaults (positions in the "
           "ranges on each value's scale, 0 lower, 1 upper bound)"
           f"{'; calibrated: ' + ', '.join(moved) if moved else ''}.")
    if left:
        out += (f" <b>Not calibrated: {', '.join(left)}</b> -- the screen did not keep them, so no optimum "
                "reaches the truth in them (raise <code>oat.top_k</code> or name them in "
                "<code>parameters.free</code>).")
    return out + "</p>"


def _network_figure(rd, variables: list[str], units: list[str]):
    """Fig. 2 from the saved networks (``emulate/network_<v>.nc``), or None without them."""
    nets = [rd.stage("emulate") / f"network_{v}.nc" for v in variables]
    if not all(p.is_file() for p in nets):
        return None
    return ("The emulator network of each output: the calibrated units in, the hidden layers with their "
            "activations, the PC scores out; line width: the mean |weight| over the ensemble (Dagon Fig. 2).",
            plot_network([network_diagram_data(load_emulator(p), units, v)
                          for p, v in zip(nets, variables, strict=True)]))


def write_dagon_report(run_dir) -> Path:
    """Figures and ``report.html`` of a Dagon-workflow run directory; returns the page's path."""
    from ..workflow.rundir import RunDir

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    cfg = rd.config()
    variables = cfg["observations"]["variables"]
    ranking = xr.load_dataset(rd.stage("oat") / "ranking.nc")
    selected = json.loads((rd.stage("oat") / "selected.json").read_text())
    units = list(selected.get("groups") or selected["parameters"])
    eof = xr.load_dataset(rd.stage("emulate") / "eof.nc")
    interp_path = rd.stage("emulate") / "interpretation.nc"
    interp = xr.load_dataset(interp_path) if interp_path.exists() else None
    val_path = rd.stage("emulate") / "validation_pcs.nc"  # not in runs from before it was written
    val = xr.load_dataset(val_path) if val_path.exists() else None
    rmse_path = rd.stage("emulate") / "rmse.nc"  # not in runs from before it was written
    rmse = xr.load_dataset(rmse_path) if rmse_path.exists() else None
    screen = xr.load_dataset(rd.stage("emulator_screen") / "screen.nc")
    optimum = json.loads((rd.stage("emulator_screen") / "optimum.json").read_text())
    vals = optimum_values(optimum) if "values" in optimum else None
    _, truth = rd.twin()
    figs = {}
    if "pe_map" in ranking and "lon" in ranking.coords:
        out = "gpp" if "gpp" in ranking["output"].values else str(ranking["output"].values[0])
        figs["pe_maps"] = (f"Annual mean parameter effect on {out.upper()} of the calibrated units "
                           "(Dagon Fig. 1).", plot_pe_maps(pe_maps(ranking, units, out)))
    figs["oat_ranks"] = ("One-at-a-time screen: each unit's rank by effect, by pattern and combined "
                         "(Dagon Tables S3-S5; the table above).", plot_oat_ranks(ranking))
    figs["ppe_pcs"] = ("The PPE's PC scores (histograms), the observations' (red) and the default run's "
                       "(black dashed) (Dagon Fig. 3).",
                       plot_ppe_pcs([ppe_pc_data(eof, optimum, v) for v in variables]))
    if (fig2 := _network_figure(rd, variables, units)) is not None:
        figs["network"] = fig2
    figs["eof_maps"] = ("Leading EOF modes of each output (Dagon Fig. 4).",
                        plot_eof_maps(eof, variables, truth["lat"].values, truth["lon"].values))
    if val is not None:
        figs["validation_pcs"] = ("The network's PC scores against the model's on its held-out test runs, "
                                  "with the 1:1 line and R² (Dagon Fig. 5).",
                                  plot_validation_pcs([validation_pc_data(val, v) for v in variables]))
    if rmse is not None:
        figs["errors"] = ("RMSE against the observations of every design run's EOF reconstruction (a, b) "
                          "and of the network (c, d) against the model's, and the cost J of Eq. 6 by the "
                          "network against the model's (e); held-out runs orange, the default a black x, the "
                          "1:1 line dashed, the screen's threshold magenta (Dagon Fig. 6).",
                          plot_errors(error_data(rmse, optimum, float(screen["cost"].values.max()))))
    if interp is not None:
        figs["importance"] = ("Permutation importance of PC1: the test members' MSE with each parameter "
                              "shuffled (Dagon Fig. 7).", plot_importance([importance_data(interp, v)
                                                                            for v in variables]))
        figs["partial_dependence"] = ("Partial dependence of PC1 on each parameter (Dagon Fig. 8).",
                                      plot_partial_dependence(partial_dependence_data(interp, variables)))
    figs["cost_histogram"] = ("Emulated cost J of the screen against the default's and the optimum's "
                              "(the threshold of the best points: Dagon Fig. 6e's magenta line).",
                              plot_cost_histogram(screen, optimum))
    figs["pair_plot"] = (f"The {screen.sizes['best']} best points of the emulated screen (Dagon Fig. 9); "
                         "red star: the best verified DE optimum.",
                         plot_pair(pair_data(screen), optimum["optimum_u"]))
    if "default_pcs" in optimum:
        figs["pcs"] = ("PCs of the observations, the default, the emulated and the verified optimum "
                       "(Dagon Fig. 10; observed ± the sigma of Eq. 6).",
                       plot_pcs([pc_comparison(eof, optimum, v) for v in variables]))
    runs = verified_runs(rd.stage("emulator_screen"), optimum) if rmse is not None else None
    if runs is not None:
        figs["bias_maps"] = ("Bias of the period-mean maps against the observations: the model at the best "
                             "verified optimum (left) and at its defaults (right), with the area-weighted "
                             "global mean (Dagon Fig. 11; the observed variables only).",
                             plot_bias_maps([bias_map_data(runs, rmse, v) for v in variables]))
    if vals is not None:
        figs["optimum"] = ("The best verified optimum against the defaults in physical units.",
                           plot_optimum(vals))
    rd.figures.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(cfg['report']['title'])}</h1>", "<h2>Emulator (test members)</h2><ul>"]
    for v in variables:
        r2 = ", ".join(f"{x:.2f}" for x in eof[f"{v}_test_r2"].values)
        parts.append(f"<li>{v}: {eof.sizes[f'{v}_mode']} EOF modes, "
                     f"{eof[f'{v}_fraction'].values.sum():.1%} of the variance; test R² per mode {r2}</li>")
    parts += ["</ul>", *_tables(rank_table(ranking, units), vals, optimum),
              twin_paragraph(cfg["observations"],
                             None if vals is None else optimum_positions(vals, rd.full_space()))]
    imgs = [(name, caption, png(fig, rd.figures / f"{name}.png")) for name, (caption, fig) in figs.items()]
    return write_page(rd, cfg["report"]["title"], parts, imgs)
