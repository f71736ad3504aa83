"""Dagon et al.'s figures of the PC scores and the emulator's errors: the perturbed-parameter
ensemble's scores (Fig. 3), the network's against the model's on the held-out runs (Fig. 5), and
the RMSE against the observations of the EOF reconstruction and of the network against the
model's, with the cost of Eq. 6 (Fig. 6). Part of :mod:`.dagon`'s report; each figure's data come
from a function ``tests/test_dagon_figures.py`` checks against a hand computation, and its plotting
function draws exactly those data.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .figures import plt

__all__ = ["error_data", "plot_errors", "plot_ppe_pcs", "plot_validation_pcs", "ppe_pc_data", "regression_r2",
           "validation_pc_data"]

#: Fig. 6's rows: the EOF reconstruction's and the network's errors (then the cost)
ERROR_ROWS = {"eof": "EOF reconstruction", "emulator": "network"}


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


def _pc_panels(data: list[xr.Dataset], width: float, height: float):
    """A figure of one row a variable and one panel a PC (panels beyond a variable's PCs off), and
    the panels to draw as ``(axes, dataset, pc index)``."""
    cols = max(d.sizes["pc"] for d in data)
    fig, axes = plt.subplots(len(data), cols, figsize=(width * cols, height * len(data)), squeeze=False)
    panels = []
    for row, d in zip(axes, data, strict=True):
        for m, ax in enumerate(row):
            if m < d.sizes["pc"]:
                panels.append((ax, d, m))
                ax.tick_params(labelsize=6)
            else:
                ax.axis("off")
    return fig, axes, panels


def plot_ppe_pcs(data: list[xr.Dataset]):
    """One row a variable, one panel a PC: the histogram of :func:`ppe_pc_data`, the observations'
    score as a red line and the default run's as a black dashed one."""
    fig, axes, panels = _pc_panels(data, 3.2, 2.4)
    for ax, d, m in panels:
        edges = d["edge"].values[m]
        ax.bar(edges[:-1], d["count"].values[m], width=np.diff(edges), align="edge", color="0.6")
        ax.axvline(float(d["observed"].values[m]), color="C3", label="observed")
        if np.isfinite(d["default"].values[m]):
            ax.axvline(float(d["default"].values[m]), color="k", ls="--", label="default")
        ax.set_title(f"{d.attrs['variable'].upper()} PC{m + 1}", fontsize=8)
        ax.set_xlabel("PC score", fontsize=7)
    for row, d in zip(axes, data, strict=True):
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
    fig, _, panels = _pc_panels(data, 3.0, 2.9)
    for ax, d, m in panels:
        x, y = d["model"].values[:, m], d["emulator"].values[:, m]
        ax.scatter(x, y, s=12, color="C0")
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_title(f"{d.attrs['variable'].upper()} PC{m + 1}: R² = {d['r2'].values[m]:.2f}", fontsize=8)
        ax.set_xlabel("model", fontsize=7)
        ax.set_ylabel("emulator", fontsize=7)
    fig.suptitle(f"held-out runs ({data[0].sizes['run']})", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ Fig. 6
def regression_r2(x: np.ndarray, y: np.ndarray) -> float:
    """The r² of the least-squares line of ``y`` on ``x``: ``1 - SS_res / SS_tot`` (the squared
    correlation); NaN pairs are left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.corrcoef(x[ok], y[ok])[0, 1] ** 2) if ok.sum() > 2 else float("nan")


def _display(values, unit: str) -> tuple[np.ndarray, str]:
    """Carbon fluxes in g m-2 d-1 (as Fig. 1), the rest as stored."""
    values = np.asarray(values, dtype=float)
    return (values * 86400e3, "g m-2 d-1") if unit == "kg m-2 s-1" else (values, unit)


def error_data(rmse: xr.Dataset, optimum: dict | None = None, threshold: float | None = None) -> xr.Dataset:
    """Fig. 6: every design run's RMSE against the observations by its EOF reconstruction (a, b) and
    by the network (c, d) against the model's own, per variable, and the cost of Eq. 6 by the
    network against the model's (e), with each panel's r² and the default run's values.

    Parameters
    ----------
    rmse : xarray.Dataset
        The ``emulate`` stage's ``rmse.nc`` (:func:`bayescal.workflows.dagon.stages.run_errors`):
        ``rmse`` (variable, estimate, member) of every design run that finished -- the PPE, the
        training and the held-out runs (``test``, member) alike, as Dagon's PPE members -- with
        ``units`` (variable); ``cost_model`` and ``cost_emulator`` (member).
    optimum : dict or None
        The ``emulator_screen`` stage's ``optimum.json``: ``default_rmse[variable][estimate]`` and
        ``model_cost`` / ``emulated_cost["default"]`` are the default run's (the black x; the
        network's at each family's mean default position when the defaults are off the scaling).
        ``None`` or without them: NaN.
    threshold : float or None
        The screen's threshold, the emulated cost of its ``keep``-th best point (the magenta line
        of panel e); ``None``: NaN.

    Returns
    -------
    xarray.Dataset
        On ``panel`` (``<variable>/eof`` for each variable, then ``<variable>/emulator``, then
        ``cost``; with ``variable``, ``estimate`` and ``units``): ``x`` (panel, member), the model's
        RMSE (its cost), ``y`` the EOF reconstruction's or the network's, ``r2`` (panel)
        (:func:`regression_r2` of ``y`` on ``x``), ``default_x``, ``default_y``; ``test``
        (member); attrs ``threshold``. Carbon fluxes in g m-2 d-1.
    """
    opt = optimum or {}
    rows = []
    for est in ERROR_ROWS:
        for v in (str(v) for v in rmse["variable"].values):
            d, unit = rmse["rmse"].sel(variable=v), str(rmse["units"].sel(variable=v).values)
            default = opt.get("default_rmse", {}).get(v, {})
            (xm, shown), ym = _display(d.sel(estimate="model").values, unit), d.sel(estimate=est).values
            dxy = _display([default.get("model", np.nan), default.get(est, np.nan)], unit)[0]
            rows.append((f"{v}/{est}", v, est, shown, xm, _display(ym, unit)[0], *dxy))
    rows.append(("cost", "", "cost", "1", rmse["cost_model"].values, rmse["cost_emulator"].values,
                 opt.get("model_cost", {}).get("default", np.nan),
                 opt.get("emulated_cost", {}).get("default", np.nan)))
    names, var, est, unit, x, y, dx, dy = (list(c) for c in zip(*rows, strict=True))
    test = rmse["test"].values.astype(bool) if "test" in rmse else np.zeros(rmse.sizes["member"], bool)
    return xr.Dataset(
        {"x": (("panel", "member"), np.array(x, dtype=float)),
         "y": (("panel", "member"), np.array(y, dtype=float)),
         "r2": ("panel", [regression_r2(a, b) for a, b in zip(x, y, strict=True)]),
         "default_x": ("panel", np.array(dx, dtype=float)), "default_y": ("panel", np.array(dy, dtype=float)),
         "test": ("member", test)},
        coords={"panel": names, "variable": ("panel", var), "estimate": ("panel", est),
                "units": ("panel", unit), "member": rmse["member"].values},
        attrs={"threshold": np.nan if threshold is None else float(threshold)})


def plot_errors(data: xr.Dataset):
    """Fig. 6 from :func:`error_data`: the EOF reconstruction's errors in the top row and the
    network's below (a variable a column), the cost in the last row; in each panel the training
    runs (blue) and the held-out ones (orange), the default (black x), the 1:1 line (dashed) and
    r² in the title, and in the cost's (on log axes when every value is positive) the screen's
    threshold (vertical magenta line)."""
    cols = max(1, (data.sizes["panel"] - 1) // 2)
    fig, axes = plt.subplots(3, cols, figsize=(3.4 * cols, 8.6), squeeze=False)
    test, threshold = data["test"].values, data.attrs["threshold"]
    for k, ax in enumerate([*axes[:2].flat, axes[2, 0]]):
        x, y, est = data["x"].values[k], data["y"].values[k], str(data["estimate"].values[k])
        ax.scatter(x[~test], y[~test], s=10, color="C0", label="training runs")
        ax.scatter(x[test], y[test], s=10, color="C1", label="held-out runs")
        dx, dy = float(data["default_x"].values[k]), float(data["default_y"].values[k])
        if np.isfinite(dx) and np.isfinite(dy):
            ax.scatter([dx], [dy], marker="x", s=50, color="k", label="default")
        span = np.concatenate([x, y, [dx, dy]])
        lo, hi = np.nanmin(span), np.nanmax(span)
        ax.plot([lo, hi], [lo, hi], color="k", ls="--", lw=0.8)
        if est == "cost":
            if np.isfinite(threshold):
                ax.axvline(threshold, color="m", lw=1, label="screen's threshold")
            if lo > 0:  # costs span orders of magnitude: the threshold and the default near 0 show
                ax.set(xscale="log", yscale="log")
            ax.set_xlabel("model's cost J (Eq. 6)", fontsize=7)
            ax.set_ylabel("network's cost J", fontsize=7)
            title = "cost J"
        else:
            unit = str(data["units"].values[k])
            ax.set_xlabel(f"model's RMSE ({unit})", fontsize=7)
            ax.set_ylabel(f"{ERROR_ROWS[est]}'s RMSE ({unit})", fontsize=7)
            title = f"{str(data['variable'].values[k]).upper()} {ERROR_ROWS[est]}"
        ax.set_title(f"({chr(ord('a') + k)}) {title}: r² = {data['r2'].values[k]:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    axes[2, 0].legend(fontsize=6)
    for ax in axes[2, 1:]:
        ax.axis("off")
    fig.tight_layout()
    return fig
