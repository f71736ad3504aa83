"""The report of a Dagon-workflow run directory: OAT ranks, EOF maps, the 10^7-point cost histogram,
the DE optimum against the default. Reads only the run directory."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import xarray as xr

from .figures import plt
from .page import png, write_page

__all__ = ["plot_eof_maps", "plot_oat_ranks", "plot_cost_histogram", "write_dagon_report"]


def plot_oat_ranks(ranking: xr.Dataset, top: int = 25):
    """PE rank, PC rank and combined rank per parameter, best first (Dagon Figs. 1-2)."""
    order = np.argsort(ranking["combined_rank"].values)[:top]
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


def plot_cost_histogram(screen: xr.Dataset, optimum: dict):
    """The emulated cost over the screen's points, with the default and the DE optimum (Dagon Fig. 6e)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    lo, hi, count = screen["bin_lower"].values, screen["bin_upper"].values, screen["count"].values
    ax.bar(lo, count, width=hi - lo, align="edge", color="0.6")
    e, mo = optimum["emulated_cost"], optimum["model_cost"]
    ax.axvline(e["default"], color="C0", ls="--", label=f"default: emulated {e['default']:.3g}, "
               f"model {mo['default']:.3g}")
    ax.axvline(e["optimum"], color="C3", label=f"DE optimum (round 0): emulated {e['optimum']:.3g}; "
               f"best verified: model {mo['optimum']:.3g}")
    ax.axvline(float(screen["cost"].values.max()), color="m", lw=0.8,
               label=f"threshold of the {screen.sizes['best']} best")
    used = count > 0
    ax.set(xlabel="cost J (Eq. 6)", ylabel="points", yscale="log", xlim=(lo[used].min(), hi[used].max()),
           title=f"emulated cost at {screen.attrs['n']:,} Sobol' points")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_optimum(optimum: dict):
    """Unit-cube values of the DE optimum against the defaults."""
    labels = optimum["parameters"]
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(labels) + 1.2))
    ax.barh(y - 0.2, optimum["default_u"], height=0.4, color="C0", label="default")
    ax.barh(y + 0.2, optimum["optimum_u"], height=0.4, color="C3", label="DE optimum")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set(xlim=(0, 1), xlabel="unit-cube value", title="optimum on the emulator vs default")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_dagon_report(run_dir) -> Path:
    """Figures and ``report.html`` of a Dagon-workflow run directory; returns the page's path."""
    from ..workflow.rundir import RunDir

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    cfg = rd.config()
    variables = cfg["observations"]["variables"]
    eof = xr.load_dataset(rd.stage("emulate") / "eof.nc")
    screen = xr.load_dataset(rd.stage("emulator_screen") / "screen.nc")
    optimum = json.loads((rd.stage("emulator_screen") / "optimum.json").read_text())
    _, truth = rd.twin()
    figs = {
        "oat_ranks": ("One-at-a-time screen: each parameter's rank by effect and by pattern (Dagon Fig. 3).",
                      plot_oat_ranks(xr.load_dataset(rd.stage("oat") / "ranking.nc"))),
        "eof_maps": ("Leading EOF modes of each output (Dagon Fig. 5).",
                     plot_eof_maps(eof, variables, truth["lat"].values, truth["lon"].values)),
        "cost_histogram": ("Emulated cost J of the sample against the default's and the optimum's.",
                           plot_cost_histogram(screen, optimum)),
        "optimum": ("The optimum on the emulator against the defaults (unit cube).", plot_optimum(optimum)),
    }
    rd.figures.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(cfg['report']['title'])}</h1>", "<h2>Emulator (test members)</h2><ul>"]
    for v in variables:
        r2 = ", ".join(f"{x:.2f}" for x in eof[f"{v}_test_r2"].values)
        parts.append(f"<li>{v}: {eof.sizes[f'{v}_mode']} EOF modes, "
                     f"{eof[f'{v}_fraction'].values.sum():.1%} of the variance; test R² per mode {r2}</li>")
    e, m = optimum["emulated_cost"], optimum["model_cost"]
    parts += ["</ul><h2>Optimum</h2>",
              f"<p>Cost J (Eq. 6): default {m['default']:.3g} by the model ({e['default']:.3g} emulated); "
              f"best verified optimum {m['optimum']:.3g} by the model; round 0 is Dagon's (the DE optimum "
              f"on the emulator, {e['optimum']:.3g} emulated), later rounds add each verified run to the "
              "networks' training and search again.</p>",
              "<table class='t'><tr><th>round</th><th>emulated J</th><th>model J</th></tr>",
              *[f"<tr><td>{r['round']}</td><td>{r['emulated_cost']:.3g}</td><td>{r['model_cost']:.3g}</td></tr>"
                for r in optimum["rounds"]],
              "</table>"]
    imgs = [(name, caption, png(fig, rd.figures / f"{name}.png")) for name, (caption, fig) in figs.items()]
    return write_page(rd, cfg["report"]["title"], parts, imgs)
