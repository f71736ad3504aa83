"""The configured site model: DALEC, a Python entry point or an external program.

A ``python`` or ``external`` model is wrapped in :class:`~bayescal.models.contract.ConformingModel`,
so every stage sees one output shape (docs/own-model.md). :func:`check_model_run` runs it once at
its defaults -- ``bayescal check`` and the first stage do -- and names what breaks the contract
before any calibration run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bayescal.workflows.own_model import external_model, file_space, python_model
from bayescal.workflows.space_file import merged_space

__all__ = ["check_model_run", "check_years_covered", "site_model"]


def site_model(cfg: dict, workdir: Path | None = None) -> Any:
    """The configured site simulator (it has a ``space`` and returns series on (member, time))."""
    from bayescal.models.contract import ConformingModel

    from .config import read_drivers

    m = cfg["model"]
    needed = sorted({p["variable"] for p in cfg["observations"]["products"]})
    space = file_space(m) if m["kind"] == "external" else None  # a program's file is its whole space
    if m["kind"] == "dalec":
        from bayescal.models.dalec import DalecModel
        from bayescal.workflows.validate import model_space

        # a DALEC file lists only what it changes: merged with DALEC's own space, as validated
        space = model_space(cfg) if m.get("parameters_file") else None

        return DalecModel(read_drivers(cfg), m["dalec_type"], space=space, diurnal_range=m["diurnal_range"],
                          spinup_years=m["spinup_years"], spinup_cycles=m["spinup_cycles"])
    if m["kind"] == "python":
        model = python_model(m)
        # the file lists what it changes; the model's own space keeps the rest (its log scales)
        space = merged_space(m, model.space, f"the model {m['entry_point']!r}", "the model") \
            if m.get("parameters_file") else None
        return ConformingModel(model, variables=needed, space=space)
    # the observed variables are read (a member whose output lacks one fails, naming it)
    ext = external_model(m, space, workdir or Path(cfg["run"]["output"]) / "external", needed)
    return ConformingModel(ext, variables=needed)


def check_model_run(model: Any, cfg: dict, years: tuple[str, ...] = ("calibration_years", "validation_years"),
                    timed: bool = True) -> dict[str, Any]:
    """One run at the defaults: the contract, the ``site.<years>`` covered by the model's days,
    and the time it took (``timed``: a run under 10 s is timed again, without its first call's
    compilation, for ``bayescal check``'s estimates). ConfigError (naming what breaks) otherwise.

    Returns ``{"seconds": float, "time": dates (datetime64 days), "calendar": the output's
    calendar, "scale": {variable: median |value|}, "series": {variable: values of the run},
    "units": {variable: units}, "unitless": [variable, ...]}``.
    """
    from bayescal.models.contract import ModelOutputError
    from bayescal.models.timing import timed_run
    from bayescal.workflows.config import ConfigError

    default = np.asarray(model.space.all_default, dtype=float)[None]
    try:  # a fast model timed again, without its first call's compilation; a program's output is kept
        again = 10.0 if timed and cfg["model"]["kind"] != "external" else 0.0
        ds, seconds = timed_run(model, default, again)
    except ModelOutputError as err:
        raise ConfigError(f"model ({cfg['model']['kind']}): {err}") from None
    kind = cfg["model"]["kind"]
    if str(ds["status"].values[0]) != "done":
        raise ConfigError(f"model ({kind}) fails at its defaults: {ds['reason'].values[0]}")
    if "time" not in ds.coords:
        raise ConfigError(f"model ({kind}): the output has no 'time' coordinate (daily dates)")
    calendar = str(ds["time"].attrs.get("model_calendar", "standard"))
    check_years_covered(ds["time"].values, cfg, years, calendar)
    scale = {str(v): float(np.nanmedian(np.abs(ds[v].values))) for v in ds.data_vars
             if v not in ("status", "reason") and np.issubdtype(ds[v].dtype, np.number)
             and np.isfinite(ds[v].values).any()}
    series = {v: np.asarray(ds[v].transpose("member", "time").values[0], float) for v in scale
              if set(ds[v].dims) == {"member", "time"}}  # a driver on time alone, a scalar: not series
    return {"seconds": seconds, "time": ds["time"].values, "calendar": calendar, "scale": scale,
            "series": series, **_output_units(model, ds)}


def say_opposite(products: list, time, series: dict[str, np.ndarray], r_max: float = -0.5) -> None:
    """A warning for each product the model at its defaults runs against: a correlation below
    ``r_max`` over the days both have (30 or more) -- a flipped sign (NEE > 0 is a source, in
    FLUXNET and bayescal) or season, which no parameter value can undo."""
    import warnings

    import pandas as pd

    days = pd.DatetimeIndex(np.asarray(time, dtype="datetime64[D]"))
    for p in products:
        if p.variable not in series:
            continue
        at = days.get_indexer(pd.DatetimeIndex(p.data["time"].values).normalize())
        obs, model = p.data.values[at >= 0], series[p.variable][at[at >= 0]]
        ok = np.isfinite(obs) & np.isfinite(model)
        if ok.sum() < 30 or np.std(obs[ok]) == 0 or np.std(model[ok]) == 0:
            continue
        r = float(np.corrcoef(obs[ok], model[ok])[0, 1])
        if r < r_max:
            src = p.data.attrs.get("source", p.name)
            warnings.warn(f"{p.variable} ({src}): the model at its defaults runs against the observations "
                          f"(correlation {r:.2f} over {int(ok.sum())} days): is its sign the observations' "
                          "(NEE > 0: a source, as FLUXNET's), and its season? No parameter value undoes "
                          "either", stacklevel=2)


def _output_units(model: Any, ds) -> dict[str, Any]:
    """``units``: each output's units, from its ``units`` attribute (a Dataset) or else the
    model's ``units`` mapping (a dict output: docs/own-model.md); ``unitless``: outputs with none."""
    from collections.abc import Mapping

    declared = getattr(model, "units", None)
    declared = {str(k): str(v) for k, v in declared.items()} if isinstance(declared, Mapping) else {}
    outputs = [str(v) for v in ds.data_vars if v not in ("status", "reason")]
    units = {v: str(ds[v].attrs.get("units") or declared.get(v, "")) for v in outputs}
    return {"units": {v: u for v, u in units.items() if u},
            "unitless": sorted(v for v, u in units.items() if not u)}


def check_years_covered(time: np.ndarray, cfg: dict, years: tuple[str, ...],
                        calendar: str = "standard") -> None:
    """ConfigError unless the model's days ``time`` cover every day of each ``site.<years>`` that
    the output's ``calendar`` has (a ``noleap`` model has no 29 February)."""
    import pandas as pd

    from bayescal.models.contract import NO_LEAP_CALENDARS
    from bayescal.workflows.config import ConfigError

    days = pd.DatetimeIndex(time)
    for key in years:
        a, b = (int(y) for y in cfg["site"][key])
        want = pd.date_range(f"{a}-01-01", f"{b}-12-31", freq="D")
        if calendar in NO_LEAP_CALENDARS:
            want = want[~((want.month == 2) & (want.day == 29))]
        have = want.isin(days)
        if not have.all():
            raise ConfigError(f"'site.{key}' {[a, b]}: the model's output covers {int(have.sum())} of their "
                              f"{want.size} days (first missing {want[~have][0].date()}; the model gives "
                              f"{days[0].date()} to {days[-1].date()})")
