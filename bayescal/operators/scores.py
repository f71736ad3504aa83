"""Skill scores, misfits and likelihoods of an ensemble against observation products.

The five ILAMB scores (Collier et al., 2018, J. Adv. Model. Earth Syst. 10, 2731-2754) as AMBER
computes them for CLASSIC (Seiler et al., 2021, Geosci. Model Dev. 14, 2371-2417), for every
ensemble member at once. For a variable ``v`` on cells ``c`` with area weights ``w_c`` and the
months ``t`` where the product has data:

* **bias**: ``eps = |mean_t(mod) - mean_t(ref)| / sd_t(ref)`` per cell, ``s = exp(-eps)``;
* **rmse**: centralised RMSE ``crmse = rms_t((mod - mean mod) - (ref - mean ref))``,
  ``eps = crmse / crms(ref)``, ``s = exp(-eps)``;
* **phase**: months of the maxima of the mean annual cycles, ``d`` their distance in months
  (0..6), ``s = (1 + cos(2 pi d / 12)) / 2``;
* **iav**: interannual variability ``iav = rms_t(x - annual cycle)``,
  ``eps = |iav(mod) - iav(ref)| / iav(ref)``, ``s = exp(-eps)``;
* **dist**: spatial distribution of the period means (Taylor 2001, as in ILAMB):
  ``sigma = sd_c(mod) / sd_c(ref)``, ``R`` their area-weighted correlation,
  ``S = 2 (1 + R) / (sigma + 1/sigma)**2``.

Per-cell scores are averaged over cells with area weights ("spatial integration"), and the
overall score of a variable and product is the weighted mean with ILAMB/AMBER's standard weights
``(bias, rmse, phase, iav, dist) = (1, 2, 1, 1, 1)``. As in Seiler's calibration, each product is
scored separately, the products of a variable are averaged with equal weights, and the
variables are averaged with equal weights (both configurable), giving one overall score per
member.

The misfits other methods use: ``1 - overall``; a Gaussian log-likelihood with observation sigma
and an optional model-discrepancy sigma; the residual vector of Oliver et al. (DFO-LS), one
term per region, variable and product; and the chi-squared of global NBP against GCB 2024.

Simulations and products are aligned by their ``cell`` and ``time`` coordinates, never by
position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ..observations.gcb import load_gcb2024
from ..observations.products import Observations, Product

__all__ = [
    "SCORE_NAMES",
    "DEFAULT_SCORE_WEIGHTS",
    "ScoreError",
    "score",
    "product_scores",
    "misfit",
    "gaussian_loglik",
    "residuals",
    "chi2_nbp",
]

SCORE_NAMES: tuple[str, ...] = ("bias", "rmse", "phase", "iav", "dist")
#: ILAMB / AMBER weights of the five scores in the overall score.
DEFAULT_SCORE_WEIGHTS: dict[str, float] = {"bias": 1.0, "rmse": 2.0, "phase": 1.0, "iav": 1.0, "dist": 1.0}


class ScoreError(ValueError):
    """Simulation and observations cannot be compared; the message names product and variable."""


# --------------------------------------------------------------------------- alignment
def _label(p: Product) -> str:
    return f"product {p.name!r} of variable {p.variable!r}"


def _aligned(sim: xr.Dataset, p: Product) -> tuple[xr.DataArray, xr.DataArray]:
    """The simulated variable selected at the product's coordinates, and the product data."""
    if p.variable not in sim:
        raise ScoreError(f"{_label(p)}: the simulation has no variable {p.variable!r}")
    mod = sim[p.variable]
    if "member" not in mod.dims:
        mod = mod.expand_dims("member")
    ref = p.data
    for dim in ("cell", "time"):
        if dim not in ref.dims:
            raise ScoreError(f"{_label(p)}: has no '{dim}' dimension (dims {ref.dims})")
        if dim not in mod.dims:
            raise ScoreError(f"{_label(p)}: the simulation of {p.variable!r} has no '{dim}' dimension")
        if dim not in ref.coords:
            raise ScoreError(f"{_label(p)}: '{dim}' has no coordinate to align on")
        missing = np.setdiff1d(ref[dim].values, mod[dim].values)
        if missing.size:
            show = ", ".join(str(v)[:10] for v in missing[:3])
            raise ScoreError(
                f"{_label(p)}: {missing.size} {dim} coordinate(s) not in the simulation ({show}...)"
            )
    extra = set(ref.dims) - {"cell", "time"}
    if extra:
        raise ScoreError(f"{_label(p)}: unexpected dimensions {sorted(extra)}")
    _check_monthly(p, ref["time"].values, mod["time"].values)
    sim_units = mod.attrs.get("units")
    if sim_units is not None and str(sim_units) != p.units:
        raise ScoreError(
            f"{_label(p)}: units {p.units!r} differ from the simulation's {str(sim_units)!r}"
        )
    mod = mod.sel(cell=ref["cell"].values, time=ref["time"].values).transpose("member", "cell", "time")
    return mod, ref.transpose("cell", "time")


def _check_monthly(p: Product, ref_time: np.ndarray, sim_time: np.ndarray) -> None:
    """A warning when a product's values are further apart than months: a product of years (or
    seasons) stamped at a month of a monthly simulation is compared with that month alone."""
    if ref_time.size < 2 or sim_time.size < 2 or np.asarray(sim_time).dtype.kind != "M":
        return
    step = lambda t: np.median(np.diff(np.sort(np.asarray(t, "datetime64[D]")).astype(float)))  # noqa: E731
    if step(sim_time) <= 31 and step(ref_time) > 80:  # seasons or years (a July of each year: warned too)
        import warnings

        warnings.warn(f"{_label(p)}: its values are {step(ref_time):.0f} days apart (median), the "
                      f"simulation's {step(sim_time):.0f}: each value is compared with the simulation's "
                      "month at its time stamp alone. If a value is a year's (or a season's) mean, give "
                      "monthly values, or compare with the simulation's means over those periods",
                      UserWarning, stacklevel=4)


def _cell_weights(sim: xr.Dataset, ref: xr.DataArray) -> np.ndarray:
    if "area" in sim.coords or "area" in sim:
        return sim["area"].sel(cell=ref["cell"].values).to_numpy().astype(float)
    return np.ones(ref.sizes["cell"])


# ------------------------------------------------------------------------------- core
def _core(mod: np.ndarray, ref: np.ndarray, w: np.ndarray, month: np.ndarray) -> dict[str, np.ndarray]:
    """The five scores of every member: mod (member, cell, time), ref (cell, time)."""
    mask = np.isfinite(ref)
    n_t = mask.sum(axis=1)
    valid = n_t >= 2
    w = np.where(valid, w, 0.0)
    if w.sum() <= 0:
        raise ScoreError("no cell has two or more valid values")
    n_t = np.maximum(n_t, 1)
    refm = np.where(mask, ref, 0.0)
    modm = np.where(mask, mod, 0.0)
    mean_ref = refm.sum(axis=1) / n_t
    mean_mod = modm.sum(axis=-1) / n_t
    dref = np.where(mask, ref - mean_ref[:, None], 0.0)
    dmod = np.where(mask, mod - mean_mod[..., None], 0.0)
    crms_ref = np.sqrt((dref**2).sum(axis=1) / n_t)
    tiny = 1e-12 * (np.abs(mean_ref) + crms_ref).max() + 1e-300
    sd_ref = np.maximum(crms_ref, tiny)
    s_bias = np.exp(-np.abs(mean_mod - mean_ref) / sd_ref)
    crmse = np.sqrt(((dmod - dref) ** 2).sum(axis=-1) / n_t)
    s_rmse = np.exp(-crmse / sd_ref)
    # mean annual cycle through a (time, month) indicator matrix; gaps are skipped
    onehot = np.zeros((month.size, 12))
    onehot[np.arange(month.size), month] = 1.0
    counts = mask.astype(float) @ onehot
    has = counts > 0
    cyc_ref = np.where(has, (refm @ onehot) / np.maximum(counts, 1), -np.inf)
    cyc_mod = np.where(has, (modm @ onehot) / np.maximum(counts, 1), -np.inf)
    d = np.abs(np.argmax(cyc_mod, axis=-1) - np.argmax(cyc_ref, axis=-1)) % 12
    d = np.minimum(d, 12 - d)
    s_phase = 0.5 * (1.0 + np.cos(2.0 * np.pi * d / 12.0))
    cyc_ref = np.where(has, cyc_ref, 0.0)
    cyc_mod = np.where(has, cyc_mod, 0.0)
    iav_ref = np.sqrt((np.where(mask, ref - cyc_ref[:, month], 0.0) ** 2).sum(axis=1) / n_t)
    iav_mod = np.sqrt((np.where(mask, mod - cyc_mod[..., month], 0.0) ** 2).sum(axis=-1) / n_t)
    s_iav = np.exp(-np.abs(iav_mod - iav_ref) / np.maximum(iav_ref, tiny))
    # spatial integration
    wn = w / w.sum()
    out = {name: s @ wn for name, s in (("bias", s_bias), ("rmse", s_rmse), ("phase", s_phase),
                                         ("iav", s_iav))}
    mu_r = mean_ref @ wn
    mu_m = mean_mod @ wn
    sd_r = np.sqrt(((mean_ref - mu_r) ** 2) @ wn)
    sd_m = np.sqrt(((mean_mod - mu_m[:, None]) ** 2) @ wn)
    cov = ((mean_mod - mu_m[:, None]) * (mean_ref - mu_r)) @ wn
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(cov / (sd_m * sd_r), -1.0, 1.0)
        sigma = sd_m / sd_r
        out["dist"] = 2.0 * (1.0 + r) / (sigma + 1.0 / sigma) ** 2
    return out


def product_scores(
    sim: xr.Dataset,
    product: Product,
    score_weights: Mapping[str, float] | None = None,
    member_chunk: int = 64,
) -> xr.DataArray:
    """The five scores and the overall score of every member against one product.

    Parameters
    ----------
    sim : xarray.Dataset
        Simulation with ``product.variable`` on (member, cell, time) (``member`` optional) and
        optionally an ``area`` coordinate on ``cell`` for the area weights.
    product : Product
        Gridded product on (cell, time); NaN values are masked.
    score_weights : mapping, optional
        Weights of the five scores in the overall score (default ILAMB's 1, 2, 1, 1, 1).
    member_chunk : int
        Members scored together (bounds memory).

    Returns
    -------
    xarray.DataArray
        Dims (member, score) with score = bias, rmse, phase, iav, dist, overall; values in [0, 1],
        NaN for failed (NaN) members.
    """
    weights = _score_weights(score_weights)
    mod_da, ref_da = _aligned(sim, product)
    ref = ref_da.to_numpy().astype(float)
    w = _cell_weights(sim, ref_da)
    month = ref_da["time"].dt.month.to_numpy() - 1
    n_m = mod_da.sizes["member"]
    result = np.empty((n_m, len(SCORE_NAMES)))
    for lo in range(0, n_m, member_chunk):
        chunk = mod_da.isel(member=slice(lo, lo + member_chunk)).to_numpy().astype(float)
        try:
            s = _core(chunk, ref, w, month)
        except ScoreError as err:
            raise ScoreError(f"{_label(product)}: {err}") from None
        result[lo:lo + chunk.shape[0]] = np.stack([s[k] for k in SCORE_NAMES], axis=-1)
    wv = np.array([weights[k] for k in SCORE_NAMES])
    overall = result @ wv / wv.sum()
    data = np.concatenate([result, overall[:, None]], axis=1)
    return xr.DataArray(
        data,
        dims=("member", "score"),
        coords={"member": mod_da["member"].values, "score": [*SCORE_NAMES, "overall"]},
        attrs={"variable": product.variable, "product": product.name, "units": "1"},
    )


def _score_weights(score_weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(DEFAULT_SCORE_WEIGHTS)
    if score_weights is not None:
        unknown = sorted(set(score_weights) - set(SCORE_NAMES))
        if unknown:
            raise ScoreError(f"unknown scores {unknown} in score_weights; known: {list(SCORE_NAMES)}")
        weights.update(score_weights)
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise ScoreError(f"score weights must be >= 0 with a positive sum, got {weights}")
    return weights


def score(
    sim: xr.Dataset,
    observations: Observations | Sequence[Product],
    score_weights: Mapping[str, float] | None = None,
    product_weights: Mapping[str, Mapping[str, float]] | None = None,
    variable_weights: Mapping[str, float] | None = None,
    member_chunk: int = 64,
    weighting: str = "variables",
) -> xr.Dataset:
    """Score every ensemble member against every product (Seiler's multi-product scoring).

    Parameters
    ----------
    sim : xarray.Dataset
        Ensemble output on (member, cell, time), e.g. from ``LandCarbonModel.simulate``.
    observations : Observations or sequence of Product
        Gridded products; each is scored separately.
    score_weights : mapping, optional
        Weights of bias, rmse, phase, iav, dist in each overall score (default 1, 2, 1, 1, 1).
    product_weights : mapping of variable to {product: weight}, optional
        Weights of the products of a variable (default equal).
    variable_weights : mapping of variable to weight, optional
        Weights of the variables in the overall score (default equal).
    member_chunk : int
        Members scored together.
    weighting : {"variables", "datasets"}, default "variables"
        ``"variables"``: the products of a variable are averaged (``product_weights``), then the
        variables (``variable_weights``); ``"datasets"``: every product counts once, whatever its
        variable (Seiler 2025: "all datasets weighted equally", so a variable with three products
        weighs three times one with a single product).

    Returns
    -------
    xarray.Dataset
        ``scores`` (member, variable, product, score) with NaN where a variable has no such
        product; ``variable_score`` (member, variable); ``overall`` (member); ``misfit``
        (member) = 1 - overall.
    """
    obs = observations if isinstance(observations, Observations) else Observations(observations)
    variables = obs.variables
    products = list(dict.fromkeys(p.name for p in obs))
    _check_weights("variable_weights", variable_weights, variables)
    per = {p.variable + "/" + p.name: product_scores(sim, p, score_weights, member_chunk) for p in obs}
    members = next(iter(per.values()))["member"].values
    arr = np.full((members.size, len(variables), len(products), len(SCORE_NAMES) + 1), np.nan)
    for p in obs:
        arr[:, variables.index(p.variable), products.index(p.name)] = per[p.variable + "/" + p.name]
    pw = np.zeros((len(variables), len(products)))
    for i, v in enumerate(variables):
        given = (product_weights or {}).get(v)
        names = [p.name for p in obs[v]]
        _check_weights(f"product_weights[{v!r}]", given, names)
        for n in names:
            pw[i, products.index(n)] = 1.0 if given is None else float(given.get(n, 0.0))
    overall_pp = arr[..., -1]  # (member, variable, product)
    # absent products have weight 0; a failed (NaN) member stays NaN
    var_score = np.where(pw > 0, overall_pp * pw, 0.0).sum(axis=2) / pw.sum(axis=1)
    vw = np.array([(variable_weights or {}).get(v, 1.0) for v in variables], dtype=float)
    if weighting == "variables":
        total = var_score @ vw / vw.sum()
    elif weighting == "datasets":
        total = np.where(pw > 0, overall_pp * pw, 0.0).sum(axis=(1, 2)) / pw.sum()
    else:
        raise ScoreError(f"weighting must be 'variables' or 'datasets', got {weighting!r}")
    ds = xr.Dataset(
        {
            "scores": (("member", "variable", "product", "score"), arr, {"units": "1"}),
            "variable_score": (("member", "variable"), var_score, {"units": "1"}),
            "overall": ("member", total, {"units": "1", "long_name": "overall skill score"}),
            "misfit": ("member", 1.0 - total, {"units": "1", "long_name": "1 - overall score"}),
        },
        coords={"member": members, "variable": variables, "product": products,
                "score": [*SCORE_NAMES, "overall"]},
        attrs={"score_weights": str(_score_weights(score_weights)),
               "reference": "Collier et al. (2018); Seiler et al. (2021)"},
    )
    return ds


def _check_weights(what: str, weights: Mapping[str, float] | None, allowed: Sequence[str]) -> None:
    if weights is None:
        return
    unknown = sorted(set(weights) - set(allowed))
    if unknown:
        raise ScoreError(f"{what}: unknown names {unknown}; known: {list(allowed)}")
    values = np.array([float(weights.get(k, 0.0)) for k in allowed])
    if np.any(values < 0) or values.sum() <= 0:
        raise ScoreError(f"{what}: weights must be >= 0 with a positive sum")


def misfit(scores: xr.Dataset) -> xr.DataArray:
    """``1 - overall score`` per member, from :func:`score`."""
    return 1.0 - scores["overall"]


# ------------------------------------------------------------------------- likelihood
def gaussian_loglik(
    sim: xr.Dataset,
    observations: Observations | Sequence[Product],
    discrepancy: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Gaussian log-likelihood of every member, with observation and model-discrepancy sigma.

    ``log L = sum_i -0.5 [ (y_i - m_i)^2 / s_i^2 + log(2 pi s_i^2) ]`` over every valid value of
    every product, with ``s_i^2 = sigma_obs,i^2 + sigma_disc,v^2``.

    Parameters
    ----------
    sim : xarray.Dataset
        Ensemble output on (member, cell, time).
    observations : Observations or sequence of Product
        Products with ``sigma``.
    discrepancy : mapping of variable to float, optional
        Model-discrepancy sigma per variable, in the variable's units.

    Returns
    -------
    xarray.Dataset
        ``loglik`` (member) and ``loglik_product`` (member, product) with product labels
        ``"variable/name"``; ``n_obs`` per product.
    """
    obs = observations if isinstance(observations, Observations) else Observations(observations)
    discrepancy = dict(discrepancy or {})
    unknown = sorted(set(discrepancy) - set(obs.variables))
    if unknown:
        raise ScoreError(f"discrepancy: unknown variables {unknown}; observed: {obs.variables}")
    labels, values, counts = [], [], []
    for p in obs:
        if p.sigma is None:
            raise ScoreError(f"{_label(p)}: has no sigma; a Gaussian likelihood needs one")
        mod_da, ref_da = _aligned(sim, p)
        sig = p.sigma.broadcast_like(ref_da).transpose("cell", "time").to_numpy()
        var = sig**2 + discrepancy.get(p.variable, 0.0) ** 2
        ref = ref_da.to_numpy()
        mask = np.isfinite(ref) & np.isfinite(var)
        if np.any(var[mask] <= 0):
            raise ScoreError(f"{_label(p)}: zero total sigma where data exist; add a discrepancy")
        y, v = ref[mask], var[mask]
        m = mod_da.to_numpy()[:, mask]
        ll = -0.5 * (((y - m) ** 2) / v).sum(axis=1) - 0.5 * np.log(2 * np.pi * v).sum()
        labels.append(f"{p.variable}/{p.name}")
        values.append(ll)
        counts.append(int(mask.sum()))
    arr = np.stack(values, axis=1)
    return xr.Dataset(
        {
            "loglik": ("member", arr.sum(axis=1)),
            "loglik_product": (("member", "product"), arr),
            "n_obs": ("product", counts),
        },
        coords={"member": mod_da["member"].values, "product": labels},
    )


# -------------------------------------------------------------------------- residuals
def residuals(
    sim: xr.Dataset,
    observations: Observations | Sequence[Product],
    regions: xr.DataArray | None = None,
) -> xr.DataArray:
    """Regionally normalised residual vector for least-squares optimisers (Oliver et al., DFO-LS).

    One term per region ``j``, variable and product::

        r_j = sqrt( (A_j / A) * sum_{i in j} (A_i / A_j) * mean_t (m_i - o_i)^2 ) / o_j

    with ``A_i`` cell areas, ``A_j`` the region's area with data, ``A`` the total, and ``o_j`` the
    area-weighted mean observation of the region. ``sum r_j^2`` is the total misfit; splitting a
    region into identical cells leaves every term unchanged.

    Parameters
    ----------
    sim : xarray.Dataset
        Ensemble output on (member, cell, time), with ``area`` on cell (else equal areas).
    observations : Observations or sequence of Product
    regions : xarray.DataArray, optional
        Region label of each cell (dim ``cell``); default the simulation's ``biome`` coordinate.

    Returns
    -------
    xarray.DataArray
        Dims (member, residual); coordinates ``region``, ``variable``, ``product`` on residual.
    """
    obs = observations if isinstance(observations, Observations) else Observations(observations)
    if regions is None:
        if "biome" not in sim.coords:
            raise ScoreError("residuals: give regions (the simulation has no 'biome' coordinate)")
        regions = sim["biome"]
    cols, meta = [], []
    for p in obs:
        mod_da, ref_da = _aligned(sim, p)
        reg = regions.sel(cell=ref_da["cell"].values).to_numpy()
        area = _cell_weights(sim, ref_da)
        ref = ref_da.to_numpy()
        mask = np.isfinite(ref)
        n_t = np.maximum(mask.sum(axis=1), 1)
        has = mask.any(axis=1)
        sq = (np.where(mask, mod_da.to_numpy() - ref, 0.0) ** 2).sum(axis=-1) / n_t
        obs_mean = np.where(mask, ref, 0.0).sum(axis=1) / n_t
        a = np.where(has, area, 0.0)
        a_tot = a.sum()
        for region in list(dict.fromkeys(reg.tolist())):
            sel = (reg == region) & has
            if not sel.any():
                continue
            a_j = a[sel].sum()
            o_j = (a[sel] @ obs_mean[sel]) / a_j
            if o_j == 0:
                raise ScoreError(f"{_label(p)}: region {region!r} has a mean observation of zero")
            r = np.sqrt((a_j / a_tot) * (sq[:, sel] @ (a[sel] / a_j))) / abs(o_j)
            cols.append(r)
            meta.append((str(region), p.variable, p.name))
    arr = np.stack(cols, axis=1)
    region, variable, product = (list(x) for x in zip(*meta, strict=True))
    return xr.DataArray(
        arr,
        dims=("member", "residual"),
        coords={"member": mod_da["member"].values, "residual": np.arange(len(meta)),
                "region": ("residual", region), "variable": ("residual", variable),
                "product": ("residual", product)},
        name="residuals",
        attrs={"reference": "Oliver et al., DFO-LS vs CMA-ES (regionally normalised misfit)"},
    )


def chi2_nbp(
    sim: xr.Dataset,
    gcb: xr.Dataset | None = None,
    years: slice | None = None,
) -> xr.DataArray:
    """Chi-squared of simulated global NBP against GCB 2024 NBP with its propagated sigma.

    ``chi2 = sum_y ((NBP_sim(y) - NBP_GCB(y)) / sigma_NBP(y))^2`` over the years both have
    (Seiler Eqs. 16-17 for the reference). ``n_years`` is stored as an attribute.

    Parameters
    ----------
    sim : xarray.Dataset
        With ``nbp_global`` on (member, year) in PgC yr-1.
    gcb : xarray.Dataset, optional
        From :func:`bayescal.observations.gcb.load_gcb2024` (default conventions if not given).
    years : slice, optional
        Years to use, e.g. ``slice(1960, 2023)``.
    """
    if "nbp_global" not in sim:
        raise ScoreError("chi2_nbp: the simulation has no 'nbp_global' variable")
    gcb = load_gcb2024() if gcb is None else gcb
    mod = sim["nbp_global"]
    units = mod.attrs.get("units")
    if units is not None and units != "PgC yr-1":
        raise ScoreError(f"chi2_nbp: nbp_global units {units!r}, expected 'PgC yr-1'")
    mod, ref, sig = xr.align(mod, gcb["nbp"], gcb["nbp_sigma"], join="inner")
    if years is not None:
        mod, ref, sig = (x.sel(year=years) for x in (mod, ref, sig))
    if mod.sizes.get("year", 0) == 0:
        raise ScoreError("chi2_nbp: the simulation and GCB 2024 share no year")
    chi2 = (((mod - ref) / sig) ** 2).sum("year", skipna=False)
    chi2.attrs = {"n_years": int(mod.sizes["year"]), "long_name": "chi-squared of global NBP vs GCB 2024"}
    return chi2.rename("chi2_nbp")
