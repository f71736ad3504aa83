"""Dagon et al.'s Fig. 11: the bias maps against the observations of the model with the best
verified optimum and with its defaults. Part of :mod:`.dagon`'s report; the figure's data come
from a function ``tests/test_dagon_figures.py`` checks against a hand computation, and its plotting
function draws exactly those data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .dagon_pcs import _display
from .figures import plt

__all__ = ["BIAS_CASES", "bias_map_data", "plot_bias_maps", "verified_runs"]

#: Fig. 11's columns: the model with the optimised parameters (left) and with its defaults (right)
BIAS_CASES = {"optimized": "best verified optimum", "default": "defaults"}


def verified_runs(screen_dir: Path, optimum: dict) -> dict[str, xr.Dataset] | None:
    """The model runs of Fig. 11, each its runner's store loaded: the best verified round's
    (``verify/round<r>``, ``r`` the ``optimum_round`` of ``optimum.json``, as Fig. 10's
    :func:`~.dagon.pc_comparison`) and the default run's (``verify/default``); ``None`` when
    either is missing or its run did not finish."""
    from ..run.ensemble import EnsembleStore

    verify = Path(screen_dir) / "verify"
    paths = {"optimized": verify / f"round{optimum.get('optimum_round', 0)}", "default": verify / "default"}
    if not all(p.is_dir() for p in paths.values()):
        return None
    runs = {case: EnsembleStore(p).load() for case, p in paths.items()}
    return runs if all(str(ds["status"].values[0]) == "done" for ds in runs.values()) else None


def bias_map_data(runs: dict[str, xr.Dataset], observed: xr.Dataset, variable: str) -> xr.Dataset:
    """Fig. 11 for one variable: each run's period-mean map minus the observed one on the observed
    cells, and its area-weighted global mean.

    Only variables with observations have a bias: in the twin those are the calibrated ones
    (``observations.variables``; the stored runs keep only them), so sensible heat is drawn only
    when it is calibrated.

    Parameters
    ----------
    runs : dict case -> xarray.Dataset
        The model runs (:data:`BIAS_CASES`, from :func:`verified_runs`): ``variable`` on
        (member, time, cell), the cells those of ``observed`` in its order; the first member's
        mean over the months the products observe is its map (Dagon's "annual mean": the mean
        annual field; over the model's years where the products observe every month).
    observed : xarray.Dataset
        The ``emulate`` stage's ``rmse.nc``: ``observed`` (variable, cell), the observed
        period-mean map (the mean of the variable's products over their years; NaN where none
        observes) and ``month_weight`` (variable, cell, time), with ``area``, ``lon``, ``lat`` on
        cell and ``units`` on variable.
    variable : str
        The output variable.

    Returns
    -------
    xarray.Dataset
        ``bias`` (case, cell): model minus observed on the observed cells, with ``lon`` and
        ``lat``; ``mean_bias`` (case): ``sum_c a_c bias_c / sum_c a_c`` over them; attrs
        ``variable`` and ``units`` (carbon fluxes in g m-2 d-1, as Fig. 1).
    """
    obs = observed["observed"].sel(variable=variable).values
    cells = np.isfinite(obs)
    area = observed["area"].values[cells]
    maps = np.stack([_period_mean(ds[variable].isel(member=0), observed, variable) for ds in runs.values()])
    bias, unit = _display(maps[:, cells] - obs[cells], str(observed["units"].sel(variable=variable).values))
    return xr.Dataset({"bias": (("case", "cell"), bias), "mean_bias": ("case", bias @ area / area.sum())},
                      coords={"case": list(runs), "lon": ("cell", observed["lon"].values[cells]),
                              "lat": ("cell", observed["lat"].values[cells])},
                      attrs={"variable": variable, "units": unit})


def _period_mean(da: xr.DataArray, observed: xr.Dataset, variable: str) -> np.ndarray:
    """A run's map (cell,) over the months the products observe (``month_weight``; a run
    directory of an older bayescal has none: over all months)."""
    if "month_weight" not in observed:
        return da.mean("time").values
    w = observed["month_weight"].sel(variable=variable).transpose("cell", "time").values
    return np.einsum("ct,ct->c", da.transpose("cell", "time").values, w)


def plot_bias_maps(data: list[xr.Dataset]):
    """Fig. 11 from :func:`bias_map_data`: one row a variable, the optimised model left and the
    default right, each bias on the cells' longitude and latitude in a diverging colour map
    symmetric about 0 (one range a row) with its area-weighted global mean in the title."""
    fig, axes = plt.subplots(len(data), 2, figsize=(8.6, 2.7 * len(data)), squeeze=False)
    for row, d in zip(axes, data, strict=True):
        lim = float(np.nanmax(np.abs(d["bias"].values))) or 1.0
        for ax, case in zip(row, d["case"].values, strict=False):
            sc = ax.scatter(d["lon"].values, d["lat"].values, c=d["bias"].sel(case=case).values, s=14,
                            cmap="RdBu_r", vmin=-lim, vmax=lim)
            mean = float(d["mean_bias"].sel(case=case))
            ax.set_title(f"{d.attrs['variable'].upper()} bias, {BIAS_CASES.get(str(case), case)}: "
                         f"global mean {mean:.3g} {d.attrs['units']}", fontsize=8)
            ax.set(xlim=(-180, 180), ylim=(-60, 80))
            ax.tick_params(labelsize=6)
            fig.colorbar(sc, ax=ax, shrink=0.8, label=d.attrs["units"])
    fig.tight_layout()
    return fig
