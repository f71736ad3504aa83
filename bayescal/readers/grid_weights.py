"""Which boxes of a gridded product each model cell averages: sparse (cells, boxes) area weights.

A cell takes the area-weighted (cos latitude) mean of the boxes whose centres lie within
``footprint`` degrees of latitude (and ``footprint / cos(lat)`` of longitude) of its centre, or
without a footprint the nearest box -- when the cell's centre is within half a box of it, so a
regional product leaves the cells beyond its edges unobserved. Regular grids (1-D axes) and boxes
given by their centres (curvilinear, unstructured) alike.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["weights"]


def _wrap(dlon: np.ndarray) -> np.ndarray:
    return (dlon + 180.0) % 360.0 - 180.0


def _nearest(d2: np.ndarray, offset: np.ndarray) -> int:
    """The index of the smallest squared distance ``d2``; a tie (a cell centre on a box edge) goes to
    the smallest signed ``offset`` (the southern, then western box), whichever way the file's
    coordinates run -- the first index would pick the other box in a file whose latitudes descend."""
    best = np.nanmin(d2)
    ties = np.flatnonzero(d2 <= best + 1e-9 * (1.0 + best))
    return int(ties[np.argmin(offset[ties])])


def _weights_regular(lat: np.ndarray, lon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
                     footprint: float | None) -> sparse.csr_matrix:
    """Sparse (cells, lat x lon boxes, row-major) weights on a regular grid (separable distances)."""
    nlat, nlon, n = lat.size, lon.size, cell_lat.size
    rows, cols, vals = [], [], []
    coslat = np.cos(np.deg2rad(lat))
    # the nearest box only within half a box of the cell centre: a regional grid leaves the
    # cells beyond its edges without data (a one-box axis covers everything)
    half = [0.5 * np.median(np.abs(np.diff(np.sort(a)))) * (1 + 1e-9) + 1e-9 if a.size > 1 else np.inf
            for a in (lat, lon)]
    for c in range(n):
        dlat = lat - cell_lat[c]
        dlon = _wrap(lon - cell_lon[c])
        if footprint is None:
            i, j = _nearest(dlat**2, dlat), _nearest(dlon**2, dlon)
            if abs(dlat[i]) <= half[0] and abs(dlon[j]) <= half[1]:
                rows.append([c]), cols.append([i * nlon + j]), vals.append([1.0])
            continue
        ii = np.flatnonzero(np.abs(dlat) <= footprint)
        jj = np.flatnonzero(np.abs(dlon) <= footprint / max(np.cos(np.deg2rad(cell_lat[c])), 0.05))
        flat = (ii[:, None] * nlon + jj[None, :]).ravel()
        rows.append(np.full(flat.size, c)), cols.append(flat)
        vals.append(np.repeat(coslat[ii], jj.size))
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, nlat * nlon))


def _weights_points(glat: np.ndarray, glon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
                    footprint: float | None) -> sparse.csr_matrix:
    """Sparse (cells, boxes) weights for boxes given by their centres (curvilinear, unstructured)."""
    n = cell_lat.size
    rows, cols, vals = [], [], []
    reach = _box_spacing(glat, glon) if footprint is None else np.inf
    for c in range(n):
        if footprint is None:
            dlat, dlon = glat - cell_lat[c], _wrap(glon - cell_lon[c]) * np.cos(np.deg2rad(cell_lat[c]))
            k = _nearest(dlat**2 + dlon**2, dlat + 1e-6 * dlon)
            if _angle(glat[k], glon[k], cell_lat[c], cell_lon[c]) <= reach:  # else beyond the grid
                rows.append([c]), cols.append([k]), vals.append([1.0])
            continue
        near = np.flatnonzero(np.abs(glat - cell_lat[c]) <= footprint)
        dlon = _wrap(glon[near] - cell_lon[c])
        k = near[np.abs(dlon) <= footprint / max(np.cos(np.deg2rad(cell_lat[c])), 0.05)]
        rows.append(np.full(k.size, c)), cols.append(k), vals.append(np.cos(np.deg2rad(glat[k])))
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, glat.size))


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _angle(lat1, lon1, lat2, lon2) -> float:
    """The great-circle angle (degrees) between two points."""
    a, b = _xyz(np.asarray(lat1), np.asarray(lon1)), _xyz(np.asarray(lat2), np.asarray(lon2))
    chord = np.linalg.norm(a - b)
    return float(np.rad2deg(2 * np.arcsin(min(1.0, chord / 2))))


def _box_spacing(glat: np.ndarray, glon: np.ndarray) -> float:
    """How far a cell centre may lie from its nearest box centre and still be on the grid: the
    median distance (degrees) between neighbouring box centres (a cell in the middle of four boxes
    is 0.71 of it away); infinite for a single box."""
    from scipy.spatial import cKDTree

    ok = np.isfinite(glat) & np.isfinite(glon)
    if ok.sum() < 2:
        return np.inf
    xyz = _xyz(glat[ok], glon[ok])
    d, _ = cKDTree(xyz).query(xyz, k=2)
    return float(np.rad2deg(2 * np.arcsin(np.minimum(1.0, np.median(d[:, 1]) / 2)))) * (1 + 1e-9)


def weights(lat: np.ndarray, lon: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray,
             footprint: float | None, points: bool = False) -> sparse.csr_matrix:
    """(cells, boxes) area weights of the product boxes each cell averages: ``lat``, ``lon`` 1-D
    axes of a regular grid (boxes row-major), or with ``points`` the boxes' centres (any shape)."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    cell_lat, cell_lon = np.asarray(cell_lat, float), np.asarray(cell_lon, float)
    if points:
        return _weights_points(lat.ravel(), lon.ravel(), cell_lat, cell_lon, footprint)
    return _weights_regular(lat, lon, cell_lat, cell_lon, footprint)
