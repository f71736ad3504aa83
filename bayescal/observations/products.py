"""Observation products: several named products per variable, with uncertainties and gaps.

A :class:`Product` is one data set of one variable (``gpp`` from a GOSIF-like product, say): an
:class:`xarray.DataArray` with a ``units`` attribute and named dimensions (``cell`` and ``time``
for gridded products, ``year`` for global series), an optional 1-sigma DataArray of the same
shape, and missing data as NaN. :class:`Observations` holds the products of a calibration and
finds them by variable.

:func:`make_twin` builds a twin experiment: products simulated at a chosen "true" parameter set
with product-specific multiplicative bias, noise, gaps and periods, reproducible from a seed
(by default two GPP products that disagree by ~10 % like GOSIF and FLUXCOM, three LAI and two
latent-heat products, as in Seiler's Table 2). :func:`gcb_nbp` wraps the real GCB 2024 NBP with
its propagated sigma as a product.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr

from .gcb import load_gcb2024

__all__ = [
    "Product",
    "Observations",
    "ProductSpec",
    "DEFAULT_TWIN_PRODUCTS",
    "twin_specs",
    "make_twin",
    "gcb_nbp",
    "regional_means",
    "observed_regional_means",
    "say_products_disagree",
]


class ObservationError(ValueError):
    """Invalid observation product; the message names the product and variable."""


@dataclass
class Product:
    """One observation product of one variable.

    Parameters
    ----------
    name : str
        Product name, e.g. ``"GOSIF"``.
    variable : str
        Model variable it observes, e.g. ``"gpp"``.
    data : xarray.DataArray
        Values with a ``units`` attribute; NaN where data are missing.
    sigma : xarray.DataArray, optional
        1-sigma uncertainty, same dimensions as ``data``, non-negative.

    Raises
    ------
    ObservationError
        If ``data`` has no units, is entirely NaN, or ``sigma`` does not match.
    """

    name: str
    variable: str
    data: xr.DataArray
    sigma: xr.DataArray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"product {self.name!r} of variable {self.variable!r}"
        if not isinstance(self.data, xr.DataArray):
            raise ObservationError(f"{label}: data must be an xarray.DataArray")
        if "units" not in self.data.attrs:
            raise ObservationError(f"{label}: data has no 'units' attribute")
        if not bool(self.data.notnull().any()):
            raise ObservationError(f"{label}: every value is missing (all NaN)")
        if self.sigma is not None:
            if not isinstance(self.sigma, xr.DataArray):
                raise ObservationError(f"{label}: sigma must be an xarray.DataArray")
            if set(self.sigma.dims) - set(self.data.dims):
                raise ObservationError(
                    f"{label}: sigma dims {self.sigma.dims} are not among data dims {self.data.dims}"
                )
            if bool((self.sigma < 0).any()):
                raise ObservationError(f"{label}: sigma has negative values")

    @property
    def units(self) -> str:
        """Units of the data."""
        return str(self.data.attrs["units"])

    @property
    def mask(self) -> xr.DataArray:
        """True where the product has data."""
        return self.data.notnull()

    def __repr__(self) -> str:
        dims = ", ".join(f"{d}: {n}" for d, n in self.data.sizes.items())
        return f"<Product {self.variable}/{self.name} ({dims}) [{self.units}]>"


class Observations:
    """The observation products of a calibration, grouped by variable.

    Parameters
    ----------
    products : iterable of Product
        Each (variable, name) pair must be unique.
    """

    def __init__(self, products: Iterable[Product]):
        self._products = list(products)
        seen = set()
        for p in self._products:
            if not isinstance(p, Product):
                raise ObservationError(f"Observations takes Product objects, got {type(p).__name__}")
            key = (p.variable, p.name)
            if key in seen:
                raise ObservationError(f"duplicate product {p.name!r} for variable {p.variable!r}")
            seen.add(key)
        if not self._products:
            raise ObservationError("Observations needs at least one product")

    @property
    def variables(self) -> list[str]:
        """Observed variables, in first-seen order."""
        return list(dict.fromkeys(p.variable for p in self._products))

    def __getitem__(self, variable: str) -> list[Product]:
        found = [p for p in self._products if p.variable == variable]
        if not found:
            raise KeyError(f"no product observes {variable!r}; observed: {self.variables}")
        return found

    def product(self, variable: str, name: str) -> Product:
        """One product by variable and name."""
        for p in self[variable]:
            if p.name == name:
                return p
        raise KeyError(f"variable {variable!r} has no product {name!r}")

    def __iter__(self) -> Iterator[Product]:
        return iter(self._products)

    def __len__(self) -> int:
        return len(self._products)

    def to_netcdf(self, path: str | Path) -> None:
        """Write every product to one netCDF-4 file, a group per product (``variable/name``).

        Written to a temporary name and renamed, so a killed write leaves no half file.
        """
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        index = []
        for k, p in enumerate(self._products):
            ds = xr.Dataset({"data": p.data})
            if p.sigma is not None:
                ds["sigma"] = p.sigma
            ds.attrs = {"name": p.name, "variable": p.variable, "attrs": json.dumps(p.attrs, default=str),
                        "names": json.dumps([p.data.name, None if p.sigma is None else p.sigma.name])}
            ds.to_netcdf(tmp, group=f"product{k}", mode="a" if k else "w", engine="h5netcdf")
            index.append(f"product{k}")
        xr.Dataset(attrs={"products": json.dumps(index)}).to_netcdf(tmp, mode="a", engine="h5netcdf")
        os.replace(tmp, path)

    @classmethod
    def from_netcdf(cls, path: str | Path) -> Observations:
        """Read products written by :meth:`to_netcdf` (errors name the file)."""
        path = Path(path)
        try:
            with xr.open_dataset(path, engine="h5netcdf") as root:
                groups = json.loads(root.attrs["products"])
            products = []
            for g in groups:
                ds = xr.load_dataset(path, group=g, engine="h5netcdf")
                data_name, sigma_name = json.loads(ds.attrs["names"])
                sigma = ds["sigma"].rename(sigma_name) if "sigma" in ds else None
                products.append(Product(str(ds.attrs["name"]), str(ds.attrs["variable"]),
                                        ds["data"].rename(data_name), sigma, json.loads(ds.attrs["attrs"])))
        except (OSError, KeyError, ValueError) as err:
            raise ObservationError(f"cannot read observation products from {path}: {err}") from None
        return cls(products)

    def __repr__(self) -> str:
        lines = [f"<Observations: {len(self)} products of {len(self.variables)} variables>"]
        lines += [f"  {p!r}" for p in self._products]
        return "\n".join(lines)


@dataclass(frozen=True)
class ProductSpec:
    """How a twin product departs from the truth.

    Parameters
    ----------
    variable, name : str
        Observed model variable and product name.
    bias : float, default 1.0
        Multiplicative bias of the product.
    noise : float, default 0.05
        Standard deviation of additive Gaussian noise as a fraction of each cell's mean
        absolute value (plus 5 % of the field's mean absolute value).
    gaps : float, default 0.05
        Fraction of values removed at random.
    start, end : int, optional
        First and last year the product covers.
    sigma : float, optional
        Reported 1-sigma as a fraction of each cell's mean absolute value (default: ``noise``).
    """

    variable: str
    name: str
    bias: float = 1.0
    noise: float = 0.05
    gaps: float = 0.05
    start: int | None = None
    end: int | None = None
    sigma: float | None = None


#: Twin products after Seiler's Table 2: two GPP products about 10 % apart (GOSIF, FLUXCOM),
#: three LAI products and two latent-heat products, with their periods.
DEFAULT_TWIN_PRODUCTS: tuple[ProductSpec, ...] = (
    ProductSpec("gpp", "GOSIF-like", bias=1.05, noise=0.05, start=2000, end=2017),
    ProductSpec("gpp", "FLUXCOM-like", bias=0.95, noise=0.05, start=1980, end=2013),
    ProductSpec("lai", "AVHRR-like", bias=0.93, noise=0.10, start=1982, end=2010),
    ProductSpec("lai", "Copernicus-like", bias=1.00, noise=0.08, start=1999, end=2019),
    ProductSpec("lai", "MODIS-like", bias=1.07, noise=0.08, start=2000, end=2017),
    ProductSpec("hfls", "CLASSr-like", bias=1.03, noise=0.06, start=2003, end=2009),
    ProductSpec("hfls", "FLUXCOM-like", bias=0.97, noise=0.06, start=2001, end=2013),
    ProductSpec("hfss", "FLUXCOM-H-like", bias=1.04, noise=0.08, start=2001, end=2013),
)



def twin_specs(variables: Sequence[str], start: int, end: int) -> list[ProductSpec]:
    """The twin's products of ``variables`` for a model of years ``start``..``end``.

    Parameters
    ----------
    variables : sequence of str
        The observed variables.
    start, end : int
        The model's first and last years.

    Returns
    -------
    list of ProductSpec
        In :data:`DEFAULT_TWIN_PRODUCTS`' order (the twin's noise is drawn product by product
        from one stream): each variable's defaults that overlap those years (clipped to them by
        :func:`make_twin`), or where none of a variable's does (a model of another era) its
        defaults over the model's years; then, sorted, a ``<VARIABLE>-twin`` product for each
        variable without defaults.
    """
    def meets(s: ProductSpec) -> bool:
        return not ((s.start or start) > end or (s.end or end) < start)

    wanted = [s for s in DEFAULT_TWIN_PRODUCTS if s.variable in set(variables)]
    met = {s.variable for s in wanted if meets(s)}
    specs = [s if s.variable in met else replace(s, start=None, end=None) for s in wanted
             if meets(s) or s.variable not in met]
    have = {s.variable for s in wanted}
    return specs + [ProductSpec(v, f"{v.upper()}-twin") for v in sorted(set(variables) - have)]


_NON_NEGATIVE = {"gpp", "lai", "hfls", "cveg", "csoil", "clitter", "ra", "rh", "fire"}


def make_twin(
    model,
    theta_true: np.ndarray,
    products: Sequence[ProductSpec] = DEFAULT_TWIN_PRODUCTS,
    seed: int | np.random.Generator = 0,
) -> tuple[Observations, xr.Dataset]:
    """Simulate observation products at a known parameter set.

    Parameters
    ----------
    model : LandCarbonModel or compatible
        A callable returning (member, cell, time) output (your own model through
        :class:`~bayescal.models.contract.ConformingModel`); a ``simulate(theta, variables=...)``
        of the model's own (the embedded model's) is called instead, for only ``variables``.
    theta_true : array_like, shape (n_values,)
        Full "true" parameter vector.
    products : sequence of ProductSpec
        The products to make.
    seed : int or numpy.random.Generator
        Source of the noise and the gaps.

    Returns
    -------
    observations : Observations
    truth : xarray.Dataset
        The noise-free simulation at ``theta_true`` (member dimension dropped).

    Raises
    ------
    ValueError
        If the true run fails in the model, or a spec names a variable the model lacks.
    """
    rng = np.random.default_rng(seed)
    variables = sorted({s.variable for s in products})
    simulate = getattr(model, "simulate", None)  # the embedded model computes only what is asked
    takes = simulate is not None and "variables" in inspect.signature(simulate).parameters
    theta = np.atleast_2d(theta_true)
    run = simulate(theta, variables=variables) if takes else model(theta)
    truth = run.isel(member=0, drop=True)
    if "cell" in truth.dims and "cell" not in truth.coords:  # your own model's cells, by position
        truth = truth.assign_coords(cell=np.arange(truth.sizes["cell"]))
    if str(truth["status"].values) != "done":
        raise ValueError(f"make_twin: the true parameter set fails in the model: {truth['reason'].item()}")
    out = []
    for spec in products:
        if spec.variable not in truth:
            raise ValueError(f"make_twin: product {spec.name!r}: model has no variable {spec.variable!r}")
        true = truth[spec.variable]
        if "time" in true.dims and (spec.start is not None or spec.end is not None):
            true = true.sel(time=slice(str(spec.start) if spec.start else None,
                                       str(spec.end) if spec.end else None))
        if true.size == 0:
            raise ValueError(f"make_twin: product {spec.name!r} covers no simulated time")
        scale = np.abs(true).mean("time") if "time" in true.dims else np.abs(true)
        # floor: 5 % of the field's mean magnitude, so near-empty cells are not infinitely precise
        scale = scale + 0.05 * float(np.abs(true).mean()) + 1e-30
        noise = rng.standard_normal(true.shape) * spec.noise * scale.broadcast_like(true).to_numpy()
        values = spec.bias * true.to_numpy() + noise
        if spec.variable in _NON_NEGATIVE:
            values = np.maximum(values, 0.0)
        values[rng.random(values.shape) < spec.gaps] = np.nan
        data = true.copy(data=values)
        data.attrs = {**true.attrs, "product": spec.name, "bias": spec.bias, "noise": spec.noise}
        rel = spec.noise if spec.sigma is None else spec.sigma
        sigma = (rel * scale).broadcast_like(true).where(data.notnull())
        sigma.attrs = {"units": true.attrs.get("units", ""), "long_name": "1-sigma uncertainty"}
        out.append(Product(spec.name, spec.variable, data, sigma, attrs={"twin": True}))
    return Observations(out), truth


def gcb_nbp(**sigma_options) -> Product:
    """GCB 2024 global NBP (Seiler Eq. 16) with its propagated 1-sigma (Eq. 17) as a product.

    Keyword arguments go to :func:`bayescal.observations.gcb.load_gcb2024` (sigma conventions).
    The variable is ``nbp_global`` on dimension ``year``, in PgC yr-1.
    """
    gcb = load_gcb2024(**sigma_options)
    return Product("GCB2024", "nbp_global", gcb["nbp"], gcb["nbp_sigma"],
                   attrs={"citation": gcb.attrs["citation"]})


def regional_means(
    sim: xr.Dataset, variables: Sequence[str], regions: xr.DataArray | None = None, log: bool = True
) -> xr.DataArray:
    """Area-weighted period means of each variable over the cells of each region.

    A compact, smooth summary of gridded output for Gaussian likelihoods on emulated outputs.

    Parameters
    ----------
    sim : xarray.Dataset
        Output with each variable on (..., cell, time), an ``area`` coordinate on ``cell``.
    variables : sequence of str
    regions : xarray.DataArray, optional
        Region label per cell (default: the ``biome`` coordinate).
    log : bool
        Return natural logarithms (relative errors become additive; default).

    Returns
    -------
    xarray.DataArray
        On (..., summary) with ``summary`` labelled ``"<variable>:<region>"``.
    """
    regions = sim["biome"] if regions is None else regions
    area = sim["area"] if "area" in sim.coords else xr.ones_like(regions, dtype=float)
    labels = np.unique(regions.values)
    parts, names = [], []
    for v in variables:
        if v not in sim:
            raise ObservationError(f"regional_means: variable {v!r} is not in the simulation")
        mean = sim[v].mean("time", skipna=True)
        for r in labels:
            k = (regions == r).values
            w = area.values[k] / area.values[k].sum()
            parts.append((mean.isel(cell=k) * w).sum("cell"))
            names.append(f"{v}:{r}")
    out = xr.concat(parts, dim="summary").assign_coords(summary=names)
    out = out.transpose(..., "summary")
    return np.log(out) if log else out


def observed_regional_means(
    observations: Observations, variables: Sequence[str], regions: xr.DataArray, area: xr.DataArray,
    floor: float = 0.03,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Log regional means of the products and their uncertainty, for :func:`regional_means`.

    The observed value of each variable and region is the mean over that variable's products
    (their multiplicative biases average out); its sigma (log units, i.e. relative) combines the
    spread between products (sample sd; structural uncertainty) with a ``floor`` in quadrature.
    A variable with a single product gets its reported sigma (relative) plus the floor.
    """
    obs_list, sig_list = [], []
    for v in variables:
        prods = observations[v]
        vals = []
        for p in prods:
            ds = xr.Dataset({v: p.data}).assign_coords(area=area.sel(cell=p.data["cell"]))
            vals.append(regional_means(ds, [v], regions.sel(cell=p.data["cell"]), log=True))
        stack = xr.concat(vals, dim="product")
        obs_list.append(stack.mean("product"))
        if len(prods) > 1:
            spread = stack.std("product", ddof=1)
        else:
            p = prods[0]
            rel = (p.sigma / np.abs(p.data)).median() if p.sigma is not None else 0.0
            spread = xr.full_like(stack.isel(product=0), float(rel))
        sig_list.append(np.sqrt(spread**2 + floor**2))
    return xr.concat(obs_list, dim="summary"), xr.concat(sig_list, dim="summary")


def say_products_disagree(products: list, keys: list[str], factor: float = 10.0) -> None:
    """A warning for a variable whose products' median magnitudes differ more than ``factor``-fold
    (``keys``: each product's name in messages):
    units mislabelled in a file (gC m-2 d-1 written as kg m-2 s-1 reads 86.4 million times too
    large), and the products' spread -- the likelihood's sigma of the variable -- would then leave it
    constraining nothing."""
    by_variable: dict[str, list[tuple[str, float, str]]] = {}
    for key, p in zip(keys, products, strict=True):
        m = float(np.nanmedian(np.abs(p.data.values))) if np.isfinite(p.data.values).any() else np.nan
        by_variable.setdefault(p.variable, []).append((key, m, str(p.data.attrs.get("units", ""))))
    for v, rows in by_variable.items():
        rows = [r for r in rows if np.isfinite(r[1]) and r[1] > 0]
        if len(rows) < 2:
            continue
        lo, hi = min(rows, key=lambda r: r[1]), max(rows, key=lambda r: r[1])
        if hi[1] > factor * lo[1]:
            warnings.warn(f"the products of {v!r} differ {hi[1] / lo[1]:.3g}-fold in their median values "
                          f"('{hi[0]}' {hi[1]:.3g} {hi[2]}, '{lo[0]}' {lo[1]:.3g} {lo[2]}, in the model's "
                          "units): a file's units mislabelled (its 'units' key replaces them)? The products' "
                          f"spread is the likelihood's sigma of {v!r}, which would then constrain almost "
                          "nothing",
                          UserWarning, stacklevel=3)
