"""Seiler's figures that the default report adds when their inputs are in the run directory:
the GA's parameters (Fig. 5), the AMBER scores of the default and the optimum (Fig. 7) and of the
ensemble of the optimum and the emulator-chosen alternatives (Fig. 8)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .figures import plt

__all__ = ["plot_ga_parameters", "plot_set_scores", "plot_ensemble_scores"]


def plot_ga_parameters(history: xr.Dataset, default_u: np.ndarray):
    """(a) Default against optimised values, (b) the best chromosome so far after each generation
    (Fig. 5; elitism keeps it, so each line steps only when a better chromosome appears)."""
    labels = history["parameter"].values
    done = history["status"].values == "done"
    mis = np.where(done, history["misfit"].values, np.inf)
    gen = history["batch"].values
    gens = np.unique(gen)
    best = np.array([history["u"].values[np.argmin(np.where(gen <= g, mis, np.inf))] for g in gens])
    opt = history["u"].values[np.argmin(mis)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([0, 1], [0, 1], color="0.6", lw=0.8)
    for j, lab in enumerate(labels):
        a.plot(default_u[j], opt[j], "o", label=lab)
        b.plot(gens, best[:, j], "-o", ms=3, label=lab)
    a.set(xlabel="default (unit cube)", ylabel="optimised (unit cube)", xlim=(0, 1), ylim=(0, 1),
          title="(a) default vs optimised")
    b.set(xlabel="generation", ylabel="best chromosome's value (unit cube)", ylim=(0, 1),
          title="(b) best chromosome so far")
    b.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _grid(scores: xr.Dataset, member: int) -> np.ndarray:
    return scores["scores"].isel(member=member).sel(score="overall").values  # (variable, product)


def plot_set_scores(scores: xr.Dataset):
    """AMBER overall score per variable and product: default, optimised, difference (Fig. 7)."""
    sets = scores["set"].values
    d, o = np.flatnonzero(sets == "default")[0], np.flatnonzero(sets == "optimised")[0]
    panels = (("(a) default", _grid(scores, d), "viridis"), ("(b) optimised", _grid(scores, o), "viridis"),
              ("(c) optimised - default", _grid(scores, o) - _grid(scores, d), "RdBu"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.5 * scores.sizes["variable"] + 2.2))
    for ax, (title, z, cmap) in zip(axes, panels, strict=True):
        lim = np.nanmax(np.abs(z)) if cmap == "RdBu" else None
        im = ax.imshow(z, cmap=cmap, vmin=-lim if lim else 0, vmax=lim if lim else 1, aspect="auto")
        for (i, j), v in np.ndenumerate(z):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(scores.sizes["product"]), scores["product"].values, rotation=45, fontsize=6,
                      ha="right")
        ax.set_yticks(range(scores.sizes["variable"]), scores["variable"].values, fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_ensemble_scores(scores: xr.Dataset):
    """Optimum (ID 1) and Seiler's alternatives (ID 2...): mean, range and best ID per variable and
    product (Fig. 8)."""
    sets = scores["set"].values
    members = np.concatenate([np.flatnonzero(sets == name) for name in ("optimised", "seiler_alternative")])
    z = np.stack([_grid(scores, m) for m in members])  # (id, variable, product); NaN: no such product
    present = np.isfinite(z).all(axis=0)
    zz = np.where(present, z, 0.0)
    best = np.where(present, np.argmax(zz, axis=0) + 1.0, np.nan)
    panels = (("(a) mean score", zz.mean(axis=0)), ("(b) max - min", zz.max(0) - zz.min(0)),
              ("(c) ID of the best", best))
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.5 * scores.sizes["variable"] + 2.2))
    for ax, (title, v) in zip(axes, panels, strict=True):
        im = ax.imshow(np.where(present, v, np.nan), cmap="viridis", aspect="auto")
        ax.set_xticks(range(scores.sizes["product"]), scores["product"].values, rotation=45, fontsize=6,
                      ha="right")
        ax.set_yticks(range(scores.sizes["variable"]), scores["variable"].values, fontsize=7)
        ax.set_title(title + f" (IDs 1-{len(members)})", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
