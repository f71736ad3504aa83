"""Which boxes of a gridded product each model cell averages: sparse (cells, boxes) area weights.

A cell takes the area-weighted (cos latitude) mean of the boxes whose centres lie within
``footprint`` degrees of latitude (and ``footprint / cos(lat)`` of longitude) of its centre, or
without a footprint the nearest box -- when the cell is on the product's grid: between box centres,
or beyond the grid's outermost centres by no more than half the spacing there. So a regional
product leaves the cells beyond its edges unobserved, and a grid whose spacing varies (Gaussian
latitudes, a finer tropical band) observes every cell inside it. Regular grids (1-D axes) and
boxes given by their centres (curvilinear, unstructured) alike.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["weights"]

_TOL = 1e-9


def _wrap(dlon: np.ndarray) -> np.ndarray:
    return (dlon + 180.0) % 360.0 - 180.0


def _nearest(d2: np.ndarray, offset: np.ndarray) -> int:
    """The index of the smallest squared distance ``d2``; a tie (a cell centre on a box edge) goes to
    the smallest signed ``offset`` (the southern, then western box), whichever way the file's
    coordinates run -- the first index would pick the other box in a file whose latitudes descend."""
    best = np.nanmin(d2)
    ties = np.flatnonzero(d2 <= best + 1e-9 * (1.0 + best))
    return int(ties[np.argmin(offset[ties])])


class _Axis:
    """One axis of a regular grid: how far a cell may lie from its nearest centre on this axis."""

    def __init__(self, values: np.ndarray, cyclic: bool) -> None:
        v = np.mod(values, 360.0) if cyclic else np.asarray(values, float)
        self.rank = np.empty(v.size, dtype=int)
        self.rank[np.argsort(v, kind="stable")] = np.arange(v.size)
        s = np.sort(v)
        self.cyclic, self.n, self.ends = cyclic, v.size, (s[0], s[-1]) if v.size else (0.0, 0.0)
        self.gaps = np.diff(s)  # gaps[k]: between sorted centres k and k + 1 (cyclic: k = n - 1 wraps)
        self.open = None  # cyclic: the gap far wider than the others, the longitudes not covered
        if cyclic and v.size > 1:
            self.gaps = np.append(self.gaps, 360.0 - (s[-1] - s[0]))
            big = int(np.argmax(self.gaps))
            self.open = big if self.gaps[big] > 1.5 * np.median(self.gaps) + _TOL else None

    def reach(self, i: int, d: float) -> float | None:
        """How far a cell at signed offset ``d`` from centre ``i`` may be: unlimited between two
        centres (the nearest is within half their gap), half the spacing beyond an outermost
        centre -- to the pole where it is nearer than a spacing --; None for a one-centre axis."""
        if self.n < 2:
            return None
        r = self.rank[i]
        if self.cyclic:
            side, other = (r, r - 1) if d > 0 else (r - 1, r)
            return 0.5 * self.gaps[other] + _TOL if side % self.n == self.open else np.inf
        if not ((d > 0 and r == self.n - 1) or (d < 0 and r == 0)):
            return np.inf
        gap = self.gaps[-1] if d > 0 else self.gaps[0]
        to_pole = 90.0 - self.ends[1] if d > 0 else self.ends[0] + 90.0
        return (to_pole if to_pole <= gap else 0.5 * gap) + _TOL

    def spacing(self, i: int) -> float | None:
        """The smaller gap next to centre ``i`` (None for one centre)."""
        if self.n < 2:
            return None
        r = self.rank[i]
        return float(min(self.gaps[k] for k in (r - 1, r) if self.cyclic or 0 <= k < self.gaps.size))


def _on_grid(la: _Axis, lo: _Axis, i: int, j: int, dlat: float, dlon: float) -> bool:
    """The cell at offsets (``dlat``, ``dlon``) from box (``i``, ``j``) is on the grid; an axis of one
    centre takes the other's spacing (a transect, a row of boxes); a single box: everything."""
    ra, ro = la.reach(i, dlat), lo.reach(j, dlon)
    if ra is None and ro is None:
        return True
    ra = 0.5 * lo.spacing(j) + _TOL if ra is None else ra
    ro = 0.5 * la.spacing(i) + _TOL if ro is None else ro
    return abs(dlat) <= ra and abs(dlon) <= ro


def _matrix(rows: list, cols: list, vals: list, shape: tuple[int, int]) -> sparse.csr_matrix:
    if not rows:  # no cell on the product's grid
        return sparse.csr_matrix(shape)
    ij = (np.concatenate(rows), np.concatenate(cols))
    return sparse.csr_matrix((np.concatenate(vals), ij), shape=shape)


def _weights_regular(lat: np.ndarray, lon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
                     footprint: float | None) -> sparse.csr_matrix:
    """Sparse (cells, lat x lon boxes, row-major) weights on a regular grid (separable distances)."""
    nlat, nlon, n = lat.size, lon.size, cell_lat.size
    rows, cols, vals = [], [], []
    coslat = np.cos(np.deg2rad(lat))
    la, lo = _Axis(lat, cyclic=False), _Axis(lon, cyclic=True)
    for c in range(n):
        dlat = lat - cell_lat[c]
        dlon = _wrap(lon - cell_lon[c])
        if footprint is None:
            i, j = _nearest(dlat**2, dlat), _nearest(dlon**2, dlon)
            if _on_grid(la, lo, i, j, -dlat[i], -dlon[j]):  # offsets of the cell from the centre
                rows.append([c]), cols.append([i * nlon + j]), vals.append([1.0])
            continue
        ii = np.flatnonzero(np.abs(dlat) <= footprint)
        jj = np.flatnonzero(np.abs(dlon) <= footprint / max(np.cos(np.deg2rad(cell_lat[c])), 0.05))
        flat = (ii[:, None] * nlon + jj[None, :]).ravel()
        rows.append(np.full(flat.size, c)), cols.append(flat)
        vals.append(np.repeat(coslat[ii], jj.size))
    return _matrix(rows, cols, vals, (n, nlat * nlon))


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _on_points(glat: np.ndarray, glon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
               nearest: np.ndarray) -> np.ndarray:
    """Which cells (with their ``nearest`` boxes) are on a grid given by box centres. In the plane
    of the nearest box (east = dlon cos(lat), north = dlat): a cell towards one of the box's 8
    nearest neighbours (within 60 degrees of its direction) lies between centres; one towards none
    is beyond the grid's edge there and is on it within half the spacing behind it (to the
    neighbour most opposite its direction). A single box: every cell."""
    from scipy.spatial import cKDTree

    ok = np.flatnonzero(np.isfinite(glat) & np.isfinite(glon))
    if ok.size < 2 or nearest.size == 0:
        return np.ones(nearest.size, dtype=bool)
    k = min(9, ok.size)
    _, idx = cKDTree(_xyz(glat[ok], glon[ok])).query(_xyz(glat[nearest], glon[nearest]), k=k)
    nb = ok[idx[:, 1:]]  # the neighbours (the first is the box itself)
    cos = np.cos(np.deg2rad(glat[nearest]))[:, None]
    n_vec = np.stack([_wrap(glon[nb] - glon[nearest][:, None]) * cos, glat[nb] - glat[nearest][:, None]], -1)
    v = np.stack([_wrap(cell_lon - glon[nearest]) * cos[:, 0], cell_lat - glat[nearest]], -1)
    vn, nn = np.linalg.norm(v, axis=-1), np.linalg.norm(n_vec, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.einsum("ij,ikj->ik", v, n_vec) / (vn[:, None] * nn)
    between = (c >= 0.5).any(axis=1) | (vn <= _TOL)
    behind = nn[np.arange(nn.shape[0]), np.argmin(np.nan_to_num(c, nan=1.0), axis=1)]
    return between | (vn <= 0.5 * behind + _TOL)


def _weights_points(glat: np.ndarray, glon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
                    footprint: float | None) -> sparse.csr_matrix:
    """Sparse (cells, boxes) weights for boxes given by their centres (curvilinear, unstructured)."""
    n = cell_lat.size
    rows, cols, vals = [], [], []
    if footprint is None:
        nearest = np.empty(n, dtype=int)
        for c in range(n):
            dlat, dlon = glat - cell_lat[c], _wrap(glon - cell_lon[c]) * np.cos(np.deg2rad(cell_lat[c]))
            nearest[c] = _nearest(dlat**2 + dlon**2, dlat + 1e-6 * dlon)
        on = _on_points(glat, glon, cell_lat, cell_lon, nearest)
        cells = np.flatnonzero(on)
        return sparse.csr_matrix((np.ones(cells.size), (cells, nearest[cells])), shape=(n, glat.size))
    for c in range(n):
        near = np.flatnonzero(np.abs(glat - cell_lat[c]) <= footprint)
        dlon = _wrap(glon[near] - cell_lon[c])
        k = near[np.abs(dlon) <= footprint / max(np.cos(np.deg2rad(cell_lat[c])), 0.05)]
        rows.append(np.full(k.size, c)), cols.append(k), vals.append(np.cos(np.deg2rad(glat[k])))
    return _matrix(rows, cols, vals, (n, glat.size))


def weights(lat: np.ndarray, lon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
            footprint: float | None, points: bool = False) -> sparse.csr_matrix:
    """(cells, boxes) area weights of the product boxes each cell averages: ``lat``, ``lon`` 1-D
    axes of a regular grid (boxes row-major), or with ``points`` the boxes' centres (any shape)."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    cell_lat, cell_lon = np.asarray(cell_lat, float), np.asarray(cell_lon, float)
    if points:
        return _weights_points(lat.ravel(), lon.ravel(), cell_lat, cell_lon, footprint)
    return _weights_regular(lat, lon, cell_lat, cell_lon, footprint)
