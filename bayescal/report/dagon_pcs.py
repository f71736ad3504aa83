"""Dagon et al.'s figures of the PC scores: the perturbed-parameter ensemble's (Fig. 3) and the
network's against the model's on the held-out runs (Fig. 5). Part of :mod:`.dagon`'s report; each
figure's data come from a function ``tests/test_dagon.py`` checks against a hand computation, and
its plotting function draws exactly those data.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .figures import plt

__all__ = ["plot_ppe_pcs", "plot_validation_pcs", "ppe_pc_data", "validation_pc_data"]


# ------------------------------------------------------------------------------ Fig. 3
def ppe_pc_data(eof: xr.Dataset, optimum: dict | None, variable: str, bins: int = 10) -> xr.Dataset:
    """Fig. 3: the PPE's PC scores of one variable, their histograms, and the observations' and the
    default run's scores.

    Parameters
    ----------
    eof : xarray.Dataset
        The ``emulate`` stage's ``eof.nc``: ``<variable>_pc`` (member, mode), the design runs' PCs,
        and ``<variable>_obs_pc`` (mode), the observations' (Eq. 5).
    optimum : dict or None
        The ``emulator_screen`` stage's ``optimum.json``; its ``default_pcs["model"][variable]`` are
        the default run's PCs in the same EOFs. ``None`` (or without them): NaN.
    variable : str
        The output variable.
    bins : int
        Equal bins from each mode's least to its greatest PPE score.

    Returns
    -------
    xarray.Dataset
        ``ppe`` (member, pc), ``observed`` and ``default`` (pc), ``count`` (pc, bin) of the PPE's
        scores on ``edge`` (pc, edge); ``pc`` is 1 for the leading mode.
    """
    ppe = eof[f"{variable}_pc"].values
    n_modes = ppe.shape[1]
    pcs = (optimum or {}).get("default_pcs", {}).get("model", {})
    default = np.asarray(pcs.get(variable, np.full(n_modes, np.nan)), dtype=float)
    edges = np.stack([np.linspace(ppe[:, m].min(), ppe[:, m].max(), bins + 1) for m in range(n_modes)])
    counts = np.stack([np.histogram(ppe[:, m], bins=edges[m])[0] for m in range(n_modes)])
    return xr.Dataset({"ppe": (("member", "pc"), ppe), "observed": ("pc", eof[f"{variable}_obs_pc"].values),
                       "default": ("pc", default), "count": (("pc", "bin"), counts),
                       "edge": (("pc", "edge"), edges)},
                      coords={"member": eof["member"].values, "pc": np.arange(1, n_modes + 1)},
                      attrs={"variable": variable})


def plot_ppe_pcs(data: list[xr.Dataset]):
    """One row a variable, one panel a PC: the histogram of :func:`ppe_pc_data`, the observations'
    score as a red line and the default run's as a black dashed one."""
    cols = max(d.sizes["pc"] for d in data)
    fig, axes = plt.subplots(len(data), cols, figsize=(3.2 * cols, 2.4 * len(data)), squeeze=False)
    for row, d in zip(axes, data, strict=True):
        for m, ax in enumerate(row):
            if m >= d.sizes["pc"]:
                ax.axis("off")
                continue
            edges = d["edge"].values[m]
            ax.bar(edges[:-1], d["count"].values[m], width=np.diff(edges), align="edge", color="0.6")
            ax.axvline(float(d["observed"].values[m]), color="C3", label="observed")
            if np.isfinite(d["default"].values[m]):
                ax.axvline(float(d["default"].values[m]), color="k", ls="--", label="default")
            ax.set_title(f"{d.attrs['variable'].upper()} PC{m + 1}", fontsize=8)
            ax.set_xlabel("PC score", fontsize=7)
            ax.tick_params(labelsize=6)
        row[0].set_ylabel(f"PPE runs (of {d.sizes['member']})", fontsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ Fig. 5
def validation_pc_data(val: xr.Dataset, variable: str) -> xr.Dataset:
    """Fig. 5: the network's predicted PC scores against the model's on its held-out runs, and the
    coefficient of determination of each PC.

    Parameters
    ----------
    val : xarray.Dataset
        The ``emulate`` stage's ``validation_pcs.nc``: ``model`` and ``emulator`` (variable, run, pc),
        the test runs' PCs by the model and by the network (NaN beyond a variable's modes).
    variable : str
        The output variable.

    Returns
    -------
    xarray.Dataset
        ``model`` and ``emulator`` (run, pc) and ``r2`` (pc): ``1 - sum (emulator - model)^2 /
        sum (model - mean model)^2`` over the test runs (the ``<variable>_test_r2`` of ``eof.nc``).
    """
    d = val[["model", "emulator"]].sel(variable=variable, drop=True).dropna("pc", how="all")
    model, emul = d["model"].values, d["emulator"].values
    r2 = 1 - ((emul - model) ** 2).sum(axis=0) / ((model - model.mean(axis=0)) ** 2).sum(axis=0)
    return d.assign(r2=("pc", r2)).assign_attrs(variable=variable)


def plot_validation_pcs(data: list[xr.Dataset]):
    """One row a variable, one panel a PC: the network's scores against the model's on the test
    runs of :func:`validation_pc_data`, the 1:1 line, and the R² in the title."""
    cols = max(d.sizes["pc"] for d in data)
    fig, axes = plt.subplots(len(data), cols, figsize=(3.0 * cols, 2.9 * len(data)), squeeze=False)
    for row, d in zip(axes, data, strict=True):
        for m, ax in enumerate(row):
            if m >= d.sizes["pc"]:
                ax.axis("off")
                continue
            x, y = d["model"].values[:, m], d["emulator"].values[:, m]
            ax.scatter(x, y, s=12, color="C0")
            lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            ax.set_title(f"{d.attrs['variable'].upper()} PC{m + 1}: R² = {d['r2'].values[m]:.2f}", fontsize=8)
            ax.set_xlabel("model", fontsize=7)
            ax.set_ylabel("emulator", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"held-out runs ({data[0].sizes['run']})", fontsize=8)
    fig.tight_layout()
    return fig
