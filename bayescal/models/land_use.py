"""Land-use change in the embedded global model: tree area converted to other land.

GCB 2024's land-use emissions E_LUC (PgC/yr) set the rate at which tree area is converted:
a fraction ``E_LUC / REFERENCE_CARBON`` of the remaining tree area per year, the same in every
cell. The converted area's vegetation carbon is emitted as ``fluc`` when it is converted; the
area joins the cell's crop and grass tiles, in proportion to their areas, and brings its litter
and soil carbon with it (their pools are mixed by area). Converted land never returns to trees,
so clearing is not undone by regrowth: the model's NBP carries the land-use source, and its land
sink (NBP + fluc) is comparable to GCB's S_LAND.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LandUse", "REFERENCE_CARBON"]

#: Carbon (PgC) of the tree tiles that E_LUC is measured against: with the default parameters
#: the model's tree land holds about this much, so its ``fluc`` is close to GCB's E_LUC.
REFERENCE_CARBON = 345.0


class LandUse:
    """Tile fractions and conversion terms month by month.

    Parameters
    ----------
    cell, frac, cell_area : ndarray of shape (n_tiles,)
        Cell of each tile, its initial fraction of the cell and the cell's area (m2).
    tree, receiver : ndarray of bool, shape (n_tiles,)
        Tiles whose area is converted, and tiles that receive it (in proportion to their area).
    luc_emission, days : ndarray of shape (n_months,)
        E_LUC (PgC/yr) and days of each month.
    """

    def __init__(self, cell: np.ndarray, frac: np.ndarray, cell_area: np.ndarray, tree: np.ndarray,
                 receiver: np.ndarray, luc_emission: np.ndarray, days: np.ndarray):
        n_cell = int(cell.max()) + 1
        tree_frac = np.bincount(cell, weights=frac * tree, minlength=n_cell)
        other_frac = np.bincount(cell, weights=frac * receiver, minlength=n_cell)
        if np.any((tree_frac > 0) & (other_frac == 0)):
            raise ValueError("LandUse: a cell with converted tiles has no tile to convert them to")
        self.frac0 = frac
        self.tree = tree
        self.cell_area = cell_area
        # converted tree area goes to the other tiles in proportion to their area
        self.share = np.where(receiver, frac / np.where(other_frac > 0, other_frac, 1.0)[cell], 0.0)
        self.gain = self.share * tree_frac[cell] / frac
        self.receiver = receiver
        rate = luc_emission / REFERENCE_CARBON  # yr-1
        #: fraction of the initial tree area left at the end of each month
        self.kept = np.exp(-np.cumsum(rate * days / 365.25))
        self.no_clear = np.zeros(frac.size)
        self.no_dilute = np.ones(frac.size)
        self.no_receive = np.zeros(frac.size)

    def fractions(self, kept: float) -> np.ndarray:
        """Tile fractions of their cells when ``kept`` of the tree area is left."""
        return self.frac0 * np.where(self.tree, kept, 1.0 + self.gain * (1.0 - kept))

    def month(self, it: int) -> tuple[np.ndarray, ...]:
        """End-of-month fractions, and the kernel's ``clear``, ``dilute`` and ``receive``."""
        frac = self.fractions(self.kept[it])
        ratio = self.fractions(self.kept[it - 1] if it else 1.0) / frac
        clear = np.where(self.tree, ratio - 1.0, 0.0)
        receive = self.share / (frac * self.cell_area)
        return frac, clear, np.where(self.receiver, ratio, 1.0), receive
